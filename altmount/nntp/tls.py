"""TLS for provider connections: one verifying client context per provider, and a refused
certificate told in words a person can act on.

Certificates are verified by default against the system store (OpenSSL's default paths,
so `SSL_CERT_FILE`/`SSL_CERT_DIR` are honoured), or against the provider's `ca_file`
alone when it has one; `insecure_tls` turns verification off. The host name is checked
by service_identity (RFC 6125) at the leaf certificate. A failed check ends the handshake
with a `ProviderTLSError` that names the provider, host:port and the cause (unknown CA,
host name mismatch, expired), which is what the connection reports as its close reason.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import idna
from cryptography import x509
from OpenSSL import SSL, crypto
from service_identity import VerificationError
from service_identity.cryptography import extract_patterns
from service_identity.hazmat import DNS_ID, IPAddress_ID, verify_service_identity
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.python.failure import Failure
from zope.interface import implementer

from altmount.config import ProviderConfig
from altmount.errors import ProviderTLSError

__all__ = ["ProviderTLS", "provider_tls"]

#: OpenSSL's X509_V_ERR_* codes that a provider's operator meets, in plain words.
_UNKNOWN_CA = frozenset({2, 18, 19, 20, 21, 24, 27})
_SELF_SIGNED = frozenset({18, 19})
_NOT_YET_VALID, _EXPIRED = 9, 10


def _common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(values[0].value) if values else name.rfc4514_string() or "?"


def _names(cert: x509.Certificate) -> str:
    """The DNS names and addresses a certificate is valid for (its CN when it has no SAN)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return _common_name(cert.subject)
    names = [*san.get_values_for_type(x509.DNSName)]
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return ", ".join(names) or "no name at all"


def _cause(errno: int, depth: int, cert: x509.Certificate) -> str:
    """Why OpenSSL refused `cert` (found at `depth` of the chain), for the operator."""
    subject = _common_name(cert.subject)
    if errno in _UNKNOWN_CA:
        issuer = subject if errno in _SELF_SIGNED else _common_name(cert.issuer)
        return (
            f"unknown CA: the certificate is signed by {issuer!r}, which is not trusted "
            "(give that CA's certificate as ca_file, or add it to the system store)"
        )
    if errno == _EXPIRED:
        which = "the server's certificate" if depth == 0 else f"the CA certificate {subject!r}"
        return f"expired certificate: {which} expired on {cert.not_valid_after_utc:%Y-%m-%d}"
    if errno == _NOT_YET_VALID:
        return (
            f"certificate not yet valid: {subject!r} is valid from "
            f"{cert.not_valid_before_utc:%Y-%m-%d} (is this machine's clock right?)"
        )
    return f"certificate refused by OpenSSL (X509 verify error {errno}) at depth {depth}"


def _context(provider: ProviderConfig) -> SSL.Context:
    """The provider's shared client context: TLS 1.2 or newer, its trust store loaded once."""
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION)
    if provider.insecure_tls:
        context.set_verify(SSL.VERIFY_NONE)
    elif provider.ca_file:
        context.load_verify_locations(provider.ca_file)
    else:
        context.set_default_verify_paths()
    return context


@implementer(IOpenSSLClientConnectionCreator)
class ProviderTLS:
    """Makes the pyOpenSSL connection of each TLS connection to one provider."""

    def __init__(self, provider: ProviderConfig) -> None:
        self._where = f"provider {provider.name or provider.host} ({provider.host}:{provider.port})"
        self._host = provider.host
        self._verify = not provider.insecure_tls
        self._context = _context(provider)
        if isIPAddress(provider.host) or isIPv6Address(provider.host):
            self._server_id: Any = IPAddress_ID(provider.host)
            self._sni: bytes | None = None  # RFC 6066 3: no literal addresses in SNI
        else:
            self._server_id = DNS_ID(provider.host)
            self._sni = idna.encode(provider.host, uts46=True)

    def clientConnectionForTLS(self, tls_protocol: Any) -> SSL.Connection:
        """A fresh client connection, verifying the peer unless insecure_tls is set."""
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tls_protocol)
        if self._sni is not None:
            connection.set_tlsext_host_name(self._sni)
        if self._verify:
            connection.set_verify(
                SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self._verifier(tls_protocol)
            )
        return connection

    def _verifier(self, tls_protocol: Any) -> Callable[..., bool]:
        def verify(
            connection: SSL.Connection, certificate: crypto.X509, errno: int, depth: int, ok: int
        ) -> bool:
            # An exception raised inside an OpenSSL callback is lost: every path returns.
            try:
                cert = certificate.to_cryptography()
                cause = None if ok else _cause(errno, depth, cert)
                if cause is None and depth == 0:
                    cause = self._host_mismatch(cert)
            except Exception as exc:  # noqa: BLE001 - reported as the refusal's cause
                cause = f"certificate could not be checked: {exc}"
            if cause is None:
                return True
            error = ProviderTLSError(f"{self._where}: TLS certificate refused: {cause}")
            tls_protocol.failVerification(Failure(error))
            return False

        return verify

    def _host_mismatch(self, cert: x509.Certificate) -> str | None:
        try:
            verify_service_identity(extract_patterns(cert), [self._server_id], [])
        except VerificationError:
            return (
                f"host name mismatch: the certificate is for {_names(cert)}, "
                f"not {self._host}"
            )
        return None


@functools.lru_cache(maxsize=64)
def provider_tls(provider: ProviderConfig) -> ProviderTLS:
    """The provider's connection creator, made once (its trust store is loaded once)."""
    return ProviderTLS(provider)
