"""Certificates for tests and benchmarks: a private CA and the server certificates it signs.

Made in memory with `cryptography` (EC P-256 keys: fast to generate), so a test can
serve TLS from the fake NNTP server with a certificate that is trusted, for the wrong
name, expired, or signed by a CA nobody trusts.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLContextFactory
from zope.interface import implementer

__all__ = ["TestCA", "server_options"]

_DAY = datetime.timedelta(days=1)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _alt_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


@dataclass(frozen=True)
class TestCA:
    """A self-signed CA; `issue` signs server certificates with it."""

    __test__ = False  # not a pytest test class, whatever its name

    name: str
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def make(cls, name: str = "altmount test CA") -> TestCA:
        """A new CA valid from yesterday for a year."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + 365 * _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(name, key, certificate)

    @property
    def pem(self) -> bytes:
        """The CA certificate in PEM (what `ca_file` holds)."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(
        self, names: Sequence[str] = ("localhost", "127.0.0.1"), *, expired: bool = False
    ) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) of a server certificate for `names` (DNS names or
        addresses); `expired` makes one that ended yesterday."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        start, end = (now - 30 * _DAY, now - _DAY) if expired else (now - _DAY, now + 30 * _DAY)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(
                x509.SubjectAlternativeName([_alt_name(n) for n in names]), critical=False
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        return certificate.public_bytes(serialization.Encoding.PEM), _key_pem(key)


@implementer(IOpenSSLContextFactory)
class _ServerTLS:
    """Server TLS options for `reactor.listenSSL`: one context serving one certificate."""

    def __init__(self, certificate_pem: bytes, key_pem: bytes) -> None:
        self._context = SSL.Context(SSL.TLS_SERVER_METHOD)
        self._context.use_certificate(x509.load_pem_x509_certificate(certificate_pem))
        self._context.use_privatekey(serialization.load_pem_private_key(key_pem, None))

    def getContext(self) -> SSL.Context:  # noqa: N802 - Twisted's context factory interface
        """The context every accepted connection uses."""
        return self._context


def server_options(certificate_pem: bytes, key_pem: bytes) -> _ServerTLS:
    """Server TLS options serving this certificate (for `reactor.listenSSL`)."""
    return _ServerTLS(certificate_pem, key_pem)
