"""A Twisted TCP client transport whose socket speaks TLS through the stdlib `ssl` module.

Twisted's own TLS (pyOpenSSL over a memory BIO) decrypts in 32 KiB `recv` calls made
from Python, each a new bytes object and a `dataReceived`: about 45 of each per 700 KB
article, which cost more than the decryption itself (benchmarks/RESULTS.md). Here
OpenSSL reads the socket itself and `sabctools.unlocked_ssl_recv_into` drains every
decrypted record into one large buffer in C with the GIL released, so the protocol gets
one `dataReceived` per wake-up, as over plain TCP.

Only bytes move here: the TCP connect, its timeout and address handling are
`twisted.internet.tcp.Client`'s; once connected, the handshake runs non-blocking in the
reactor, and the protocol is built only when it has succeeded. A failed handshake is a
failed connection (`ClientFactory.clientConnectionFailed`) whose reason is a
`ProviderTLSError` naming provider, host:port and cause (`altmount.nntp.tls`).
"""

from __future__ import annotations

import ssl
from typing import Any

import sabctools
from twisted.internet import main, tcp, threads
from twisted.internet.interfaces import IConnector
from twisted.internet.posixbase import PosixReactorBase

from altmount.errors import ProviderTLSError, ProviderUnavailable
from altmount.nntp.tls import ProviderTLS, describe_refusal

__all__ = ["READ_BUFFER_SIZE", "connect_tls"]

#: Bytes drained from OpenSSL per call: more than one article, so that a wake-up
#: usually hands the protocol everything that has arrived.
READ_BUFFER_SIZE = 1 << 20
#: How long fetching a refused certificate (to name the cause) may take, in seconds.
DESCRIBE_TIMEOUT = 5.0


class _TLSClient(tcp.Client):
    """tcp.Client whose socket is wrapped in TLS once the TCP connect succeeds."""

    socket: Any
    #: One read buffer for every connection: reads run on the reactor thread only, and
    #: each is copied out before the next, so 20 connections do not hold 20 MiB.
    _buffer = bytearray(READ_BUFFER_SIZE)
    _view = memoryview(_buffer)

    def __init__(
        self, host: str, port: int, bindAddress: Any, tls: ProviderTLS, connector: Any, reactor: Any
    ) -> None:
        self._tls = tls
        self._session_saved = False
        super().__init__(host, port, bindAddress, connector, reactor)

    # -- handshake -----------------------------------------------------------------

    def _connectDone(self) -> None:
        try:
            self.socket = self._tls.wrap(self.socket)
        except (ssl.SSLError, OSError, ValueError) as exc:
            self.failIfNotConnected(self._handshake_error(exc))
            return
        self.fileno = self.socket.fileno
        self.doRead = self.doWrite = self._handshake  # type: ignore[method-assign]
        self.startReading()
        self._handshake()

    def _handshake(self) -> None:
        try:
            self.socket.do_handshake()
        except ssl.SSLWantReadError:
            self.stopWriting()
            return
        except ssl.SSLWantWriteError:
            self.startWriting()
            return
        except ssl.SSLCertVerificationError as exc:
            self._refused(exc)
            return
        except (ssl.SSLError, OSError) as exc:
            self.failIfNotConnected(self._handshake_error(exc))
            return
        del self.doRead, self.doWrite
        self.stopWriting()
        tcp.Client._connectDone(self)

    def _handshake_error(self, exc: Exception) -> ProviderUnavailable:
        tls = self._tls
        return ProviderUnavailable(
            f"{tls.where}: TLS handshake failed ({exc}); is it a TLS port? "
            "(tls: false for plain NNTP)"
        )

    def _refused(self, exc: ssl.SSLCertVerificationError) -> None:
        """Fail the connect with the refusal in words, once the certificate is described."""
        self._stopReadingAndWriting()
        described = threads.deferToThread(describe_refusal, self._tls, exc, DESCRIBE_TIMEOUT)
        described.addErrback(lambda failure: f"{self._tls.where}: TLS certificate refused: {exc}")
        described.addCallback(lambda text: self.failIfNotConnected(ProviderTLSError(text)))

    # -- data ------------------------------------------------------------------------

    def doRead(self) -> Any:
        """Hand the protocol everything OpenSSL has decrypted, one large read at a time."""
        view, size = self._view, len(self._buffer)
        while True:
            try:
                count = sabctools.unlocked_ssl_recv_into(self.socket, view)
            except ssl.SSLWantReadError:
                return None
            except (ssl.SSLError, OSError):
                return main.CONNECTION_LOST
            if count == 0:
                return main.CONNECTION_DONE
            if not self._session_saved:
                # TLS 1.3 tickets arrive after the handshake, before the first data.
                self._tls.session = self.socket.session
                self._session_saved = True
            self.protocol.dataReceived(bytes(view[:count]))
            if count < size or self.disconnected or self._aborting:
                return None

    def writeSomeData(self, data: Any) -> Any:
        """Encrypt and send what the socket takes now (TLS writes whole records)."""
        try:
            return self.socket.send(memoryview(data)[: self.SEND_LIMIT])
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
            return 0
        except (ssl.SSLError, OSError):
            return main.CONNECTION_LOST

    def _closeWriteConnection(self) -> None:
        # No half-close under TLS: a close_notify would end the session both ways.
        pass

    @property
    def session_reused(self) -> bool:
        """True when the handshake resumed the provider's previous TLS session."""
        return bool(getattr(self.socket, "session_reused", False))


class _TLSConnector(tcp.Connector):
    """A tcp.Connector that makes `_TLSClient` transports."""

    def __init__(
        self, host: str, port: int, factory: Any, tls: ProviderTLS, timeout: float, reactor: Any
    ) -> None:
        self._tls = tls
        super().__init__(host, port, factory, timeout, None, reactor)

    def _makeTransport(self) -> _TLSClient:
        return _TLSClient(self.host, self.port, self.bindAddress, self._tls, self, self.reactor)


def connect_tls(
    reactor: Any, host: str, port: int, factory: Any, tls: ProviderTLS, timeout: float
) -> IConnector:
    """Connect `factory` to host:port over TLS.

    A reactor without file descriptors (the in-memory network of the unit tests,
    `altmount.testing.nntpserver.MemoryNetReactor`) carries the connection unencrypted
    through its `connectSSL`.
    """
    if not isinstance(reactor, PosixReactorBase):
        return reactor.connectSSL(host, port, factory, tls, timeout=timeout)
    connector = _TLSConnector(host, port, factory, tls, timeout, reactor)
    connector.connect()
    return connector
