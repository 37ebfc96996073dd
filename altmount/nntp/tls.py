"""TLS for provider connections: one verifying stdlib `ssl` context per provider, the
session kept for resumption, and a refused certificate told in words a person can act on.

Certificates are verified by default against the system store (OpenSSL's default paths,
so `SSL_CERT_FILE`/`SSL_CERT_DIR` are honoured), or against the provider's `ca_file`
alone when it has one; `insecure_tls` turns verification off. OpenSSL checks the host
name (RFC 6125) during the handshake. The stdlib reports a refusal only as a code, so
`describe_refusal` fetches the refused certificate once more without verifying it (a
short blocking handshake, run off the reactor thread) to name the cause: unknown CA,
host name mismatch, expired. The bytes themselves move in `altmount.nntp.tlssocket`.
"""

from __future__ import annotations

import datetime
import functools
import socket
import ssl

from cryptography import x509

from altmount.config import ProviderConfig

__all__ = ["ProviderTLS", "describe_refusal", "provider_tls"]

#: OpenSSL's X509_V_ERR_* codes that a provider's operator meets, in plain words.
_UNKNOWN_CA = frozenset({2, 18, 19, 20, 21, 24, 27})
_SELF_SIGNED = frozenset({18, 19})
_NOT_YET_VALID, _EXPIRED = 9, 10
_HOST_MISMATCH = frozenset({62, 64})  # X509_V_ERR_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH


class ProviderTLS:
    """One provider's client context, its server name and its last TLS session."""

    def __init__(self, provider: ProviderConfig) -> None:
        self.where = f"provider {provider.name or provider.host} ({provider.host}:{provider.port})"
        self.host, self.port = provider.host, provider.port
        self.verify = not provider.insecure_tls
        self.context = _context(provider)
        # CPython sends no SNI for an address (RFC 6066 3) but still checks it against the SAN.
        self.server_hostname = provider.host
        #: The session of the last handshake, offered on the next connection (resumption).
        self.session: ssl.SSLSession | None = None

    def wrap(self, sock: socket.socket) -> ssl.SSLSocket:
        """The client side of a connected socket, handshake not yet done."""
        return self.context.wrap_socket(
            sock,
            server_hostname=self.server_hostname,
            do_handshake_on_connect=False,
            session=self.session,
        )


def _context(provider: ProviderConfig) -> ssl.SSLContext:
    """The provider's shared client context: TLS 1.2 or newer, its trust store loaded once."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    if provider.insecure_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif provider.ca_file:
        context.load_verify_locations(provider.ca_file)
    else:
        context.set_default_verify_paths()
    return context


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


def refusal_cause(
    code: int, message: str, host: str, cert: x509.Certificate | None, now: datetime.datetime
) -> str:
    """Why OpenSSL refused the server's certificate `cert` (None: not available), for the
    operator. `code` and `message` are the stdlib's verify_code and verify_message."""
    if cert is None:
        return f"certificate refused by OpenSSL: {message} (X509 verify error {code})"
    subject = _common_name(cert.subject)
    if code in _UNKNOWN_CA:
        issuer = subject if code in _SELF_SIGNED else _common_name(cert.issuer)
        return (
            f"unknown CA: the certificate is signed by {issuer!r}, which is not trusted "
            "(give that CA's certificate as ca_file, or add it to the system store)"
        )
    if code in _HOST_MISMATCH:
        return f"host name mismatch: the certificate is for {_names(cert)}, not {host}"
    if code == _EXPIRED:
        if cert.not_valid_after_utc < now:
            return f"expired certificate: the server's certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}"
        return f"expired certificate: a CA certificate of the chain of {subject!r} has expired"
    if code == _NOT_YET_VALID:
        return (
            f"certificate not yet valid: {subject!r} is valid from "
            f"{cert.not_valid_before_utc:%Y-%m-%d} (is this machine's clock right?)"
        )
    return f"certificate refused by OpenSSL: {message} (X509 verify error {code})"


def _peer_certificate(tls: ProviderTLS, timeout: float) -> x509.Certificate | None:
    """The server's certificate, fetched without verifying it (blocking; None on failure)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((tls.host, tls.port), timeout) as raw:
            with context.wrap_socket(raw, server_hostname=tls.server_hostname) as sock:
                der = sock.getpeercert(binary_form=True)
    except (OSError, ValueError):
        return None
    return x509.load_der_x509_certificate(der) if der else None


def describe_refusal(tls: ProviderTLS, error: ssl.SSLCertVerificationError, timeout: float) -> str:
    """The one-line refusal of `error` naming provider, host:port and cause (blocking)."""
    cert = _peer_certificate(tls, timeout)
    now = datetime.datetime.now(datetime.UTC)
    cause = refusal_cause(error.verify_code, error.verify_message, tls.host, cert, now)
    return f"{tls.where}: TLS certificate refused: {cause}"


@functools.lru_cache(maxsize=64)
def provider_tls(provider: ProviderConfig) -> ProviderTLS:
    """The provider's TLS state, made once (its trust store is loaded once)."""
    return ProviderTLS(provider)
