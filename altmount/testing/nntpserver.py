"""A fake NNTP server with fault injection, for tests, benchmarks and the demo provider.

Stateless like SABnzbd's `tests/sabnews.py`: the answer depends only on the command and
the article map (message-id → dot-stuffed body, as `post_release` makes), plus the
faults, which tests may change while the server runs. Pipelined commands are answered
strictly in order. Delays use the reactor's clock, never sleeps, so the same server
runs on a real reactor over 127.0.0.1 and on `MemoryNetReactor` in unit tests.
"""

from __future__ import annotations

import random
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.internet.protocol import ClientFactory, Protocol, ServerFactory, connectionDone
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test import iosim

__all__ = ["Faults", "NNTPServerFactory", "NNTPServerProtocol", "listen", "MemoryNetReactor"]

#: Longest command line accepted (RFC 3977 3.1 says 512; be lenient, then hang up).
MAX_LINE = 4096


@dataclass(slots=True)
class Faults:
    """What the server does wrong. Mutable on purpose: tests change it mid-run.

    Rates are probabilities per article request (ARTICLE, BODY, HEAD, STAT); the
    message-ids in `corrupt` are always served with one data byte changed.
    `bandwidth` is bytes/s per connection (0: unlimited); `max_connections` 0: no limit.
    Counters count down per article request, server-wide: `forget_login` requests are
    answered 480 by a logged-in session, which then forgets its login (an expired
    session); `refuse_next` are answered `refuse_code` (400 or 502) and the connection
    is closed (an overloaded server).
    """

    missing: set[str] = field(default_factory=set)
    missing_rate: float = 0.0
    disconnect_rate: float = 0.0
    latency: float = 0.0
    bandwidth: int = 0
    stall_rate: float = 0.0
    corrupt_rate: float = 0.0
    corrupt: set[str] = field(default_factory=set)
    garbage_rate: float = 0.0
    max_connections: int = 0
    auth_fail: bool = False
    forget_login: int = 0
    refuse_next: int = 0
    refuse_code: int = 400


class NNTPServerFactory(ServerFactory):
    """Holds the articles, the faults, the counters tests read, and a seeded RNG."""

    def __init__(
        self,
        reactor: Any,
        articles: Mapping[str, bytes],
        faults: Faults | None = None,
        *,
        username: str = "",
        password: str = "",
        seed: int = 0,
    ) -> None:
        self.reactor = reactor
        self.articles = articles
        self.faults = faults or Faults()
        self.username = username
        self.password = password
        self.random = random.Random(seed)
        self.current_connections = 0
        self.peak_connections = 0
        self.connections_total = 0
        self.connections_rejected = 0
        self.commands: Counter[str] = Counter()
        self.bytes_sent = 0
        self._idle_waiters: list[defer.Deferred[None]] = []

    def buildProtocol(self, addr: Any) -> NNTPServerProtocol:
        """One protocol per accepted connection."""
        protocol = NNTPServerProtocol(self)
        protocol.factory = self
        return protocol

    def chance(self, rate: float) -> bool:
        """True with probability `rate`; draws from the RNG only when rate > 0."""
        return rate > 0 and self.random.random() < rate

    def when_idle(self) -> defer.Deferred[None]:
        """Fires once no client connection is open (to end tests with a clean reactor)."""
        if not self.current_connections:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._idle_waiters.append(waiter)
        return waiter

    def connection_opened(self) -> bool:
        """Count a new connection; False when it is beyond `faults.max_connections`."""
        self.current_connections += 1
        self.connections_total += 1
        self.peak_connections = max(self.peak_connections, self.current_connections)
        limit = self.faults.max_connections
        if limit and self.current_connections > limit:
            self.connections_rejected += 1
            return False
        return True

    def connection_closed(self) -> None:
        """Count a closed connection and wake `when_idle` waiters."""
        self.current_connections -= 1
        if not self.current_connections:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)


class NNTPServerProtocol(Protocol):
    """One client connection: commands queued, answered one at a time in order.

    Registered as a streaming producer on its transport, so a client that reads
    slowly pauses the answering instead of growing the server's send buffer.
    """

    def __init__(self, factory: NNTPServerFactory) -> None:
        self.server = factory
        self._buffer = bytearray()
        self._commands: deque[bytes] = deque()
        self._busy = False
        self._paused = False
        self._running = False
        self._done = False  # closed or stalled: answer nothing more
        self._user = ""
        self._authenticated = not factory.username and not factory.faults.auth_fail
        self._call: IDelayedCall | None = None

    # -- Twisted hooks -------------------------------------------------------------

    def connectionMade(self) -> None:
        """Greet, or refuse with 502 beyond the connection limit."""
        assert self.transport is not None
        self.transport.registerProducer(self, True)
        if not self.server.connection_opened():
            self._write(b"502 too many connections\r\n")
            self._done = True
            self.transport.loseConnection()
            return
        self._write(b"200 altmount fake news server ready\r\n")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Stop timers and update the counters."""
        self._done = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self.server.connection_closed()

    def dataReceived(self, data: bytes) -> None:
        """Queue complete command lines, then answer what can be answered."""
        self._buffer += data
        while (end := self._buffer.find(b"\r\n")) >= 0:
            self._commands.append(bytes(self._buffer[:end]))
            del self._buffer[: end + 2]
        if len(self._buffer) > MAX_LINE:
            self._finish([b"501 command line too long\r\n"], "close")
            return
        self._run()

    def pauseProducing(self) -> None:
        """The transport's buffer is full: stop answering for now."""
        self._paused = True

    def resumeProducing(self) -> None:
        """The transport drained: carry on."""
        self._paused = False
        self._run()

    def stopProducing(self) -> None:
        """The connection is going away."""
        self._done = True

    # -- answering -----------------------------------------------------------------

    def _run(self) -> None:
        if self._running:
            return  # the loop below is already on the stack
        self._running = True
        try:
            while self._commands and not (self._busy or self._paused or self._done):
                line = self._commands.popleft()
                self._busy = True
                latency = self.server.faults.latency
                if latency > 0:
                    self._call = self.server.reactor.callLater(latency, self._execute, line)
                else:
                    self._execute(line)
        finally:
            self._running = False

    def _execute(self, line: bytes) -> None:
        self._call = None
        if self._done:
            return
        chunks, then = self._answer(line.decode("utf-8", "replace"))
        bandwidth = self.server.faults.bandwidth
        if bandwidth > 0 and chunks:
            self._paced(b"".join(chunks), 0, bandwidth, then)
        else:
            self._finish(chunks, then)

    def _paced(self, data: bytes, offset: int, bandwidth: int, then: str) -> None:
        self._call = None
        if self._done:
            return
        step = max(1, bandwidth // 20)  # 20 writes a second
        if offset + step >= len(data):
            self._finish([data[offset:]], then)
            return
        self._write(data[offset : offset + step])
        self._call = self.server.reactor.callLater(
            step / bandwidth, self._paced, data, offset + step, bandwidth, then
        )

    def _finish(self, chunks: list[bytes], then: str) -> None:
        for chunk in chunks:
            self._write(chunk)
        assert self.transport is not None
        if then == "close":
            self._done = True
            self.transport.loseConnection()
        elif then == "abort":
            self._done = True
            self.transport.abortConnection()
        elif then == "stall":
            self._done = True  # a hung server: reads on, answers nothing
        else:
            self._busy = False
            self._run()

    def _write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)
        self.server.bytes_sent += len(data)

    def _answer(self, line: str) -> tuple[list[bytes], str]:
        """The reply chunks for one command and what to do after sending them."""
        verb, _, arg = line.strip().partition(" ")
        verb = verb.upper()
        self.server.commands[verb] += 1
        if verb == "QUIT":
            return [b"205 bye\r\n"], "close"
        if verb == "AUTHINFO":
            return self._authinfo(arg), "continue"
        if verb == "CAPABILITIES":
            return [
                b"101 capabilities\r\nVERSION 2\r\nREADER\r\nAUTHINFO USER\r\n.\r\n"
            ], "continue"
        if verb == "MODE" and arg.upper() == "READER":
            return [b"201 posting prohibited\r\n"], "continue"
        if verb == "DATE":
            stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(self.server.reactor.seconds()))
            return [f"111 {stamp}\r\n".encode()], "continue"
        faults = self.server.faults
        if verb in ("ARTICLE", "BODY", "HEAD", "STAT") and faults.refuse_next > 0:
            faults.refuse_next -= 1
            return [f"{faults.refuse_code} service unavailable\r\n".encode()], "close"
        if verb in ("ARTICLE", "BODY", "HEAD", "STAT") and faults.forget_login > 0:
            if self._authenticated and self.server.username:
                faults.forget_login -= 1
                self._authenticated = False
        if verb in ("GROUP", "ARTICLE", "BODY", "HEAD", "STAT") and not self._authenticated:
            return [b"480 authentication required\r\n"], "continue"
        if verb == "GROUP":
            count = len(self.server.articles)
            return [f"211 {count} 1 {count} {arg}\r\n".encode()], "continue"
        if verb in ("ARTICLE", "BODY", "HEAD", "STAT"):
            return self._article(verb, arg)
        return [b"500 unknown command\r\n"], "continue"

    def _authinfo(self, arg: str) -> list[bytes]:
        kind, _, value = arg.partition(" ")
        kind = kind.upper()
        if kind == "USER":
            self._user = value
            return [b"381 password required\r\n"]
        if kind != "PASS":
            return [b"501 AUTHINFO USER or PASS\r\n"]
        if not self._user:
            return [b"482 authentication commands issued out of sequence\r\n"]
        server = self.server
        if server.faults.auth_fail or (self._user, value) != (server.username, server.password):
            return [b"481 authentication failed\r\n"]
        self._authenticated = True
        return [b"281 authentication accepted\r\n"]

    def _article(self, verb: str, arg: str) -> tuple[list[bytes], str]:
        if not (arg.startswith("<") and arg.endswith(">") and len(arg) > 2):
            return [b"501 only <message-id> arguments are supported\r\n"], "continue"
        message_id = arg[1:-1]
        server, faults = self.server, self.server.faults
        body = server.articles.get(message_id)
        if body is None or message_id in faults.missing or server.chance(faults.missing_rate):
            return [b"430 no such article\r\n"], "continue"
        if server.chance(faults.stall_rate):
            return [], "stall"
        if server.chance(faults.garbage_rate):
            return [b"garbage where a status line belongs\r\n"], "continue"
        wire_id = arg.encode()
        if verb == "STAT":
            return [b"223 0 " + wire_id + b"\r\n"], "continue"
        if message_id in faults.corrupt or server.chance(faults.corrupt_rate):
            body = corrupt(body)
        if not body.endswith(b"\r\n") and body:
            body += b"\r\n"
        headers = (
            f"Message-ID: {arg}\r\nFrom: altmount <altmount@altmount.test>\r\n"
            f"Newsgroups: alt.binaries.test\r\nSubject: {message_id}\r\nBytes: {len(body)}\r\n"
        ).encode()
        if verb == "HEAD":
            return [b"221 0 " + wire_id + b"\r\n", headers, b".\r\n"], "continue"
        code = b"222 0 " if verb == "BODY" else b"220 0 "
        data = [body] if verb == "BODY" else [headers, b"\r\n", body]
        if server.chance(faults.disconnect_rate):
            partial = b"".join(data)
            return [code + wire_id + b"\r\n", partial[: len(partial) // 2]], "abort"
        return [code + wire_id + b"\r\n", *data, b".\r\n"], "continue"


def corrupt(body: bytes) -> bytes:
    """Change one encoded byte near the middle so that the yEnc CRC no longer matches.

    Line starts, CR, LF, '.', '=' and escaped bytes are skipped so the framing and the
    dot-stuffing stay valid.
    """
    data = bytearray(body)
    at = len(data) // 2
    while at < len(data) and (data[at] in b"\r\n.=" or data[at - 1] in b"\n="):
        at += 1
    if at < len(data):
        data[at] = ord("A") if data[at] != ord("A") else ord("B")
    return bytes(data)


def listen(
    reactor: Any,
    articles: Mapping[str, bytes],
    faults: Faults | None = None,
    port: int = 0,
    tls: Any = None,
    **options: Any,
) -> tuple[IListeningPort, NNTPServerFactory]:
    """Serve `articles` on 127.0.0.1 (port 0: any free port; read it from getHost().port).

    With `tls` (server TLS options, e.g. `altmount.testing.certs.server_options`) the
    server speaks TLS on connect, as providers do on port 563. `options` go to
    NNTPServerFactory (username, password, seed).
    """
    factory = NNTPServerFactory(reactor, articles, faults, **options)
    if tls is not None:
        listening = reactor.listenSSL(port, factory, tls, interface="127.0.0.1")
    else:
        listening = reactor.listenTCP(port, factory, interface="127.0.0.1")
    return listening, factory


class _PendingConnector:
    """The IConnector MemoryNetReactor hands out for a connection not yet made."""

    def __init__(self, host: str, port: int, factory: ClientFactory, tls: Any) -> None:
        self.host = host
        self.port = port
        self.factory = factory
        self.tls = tls
        self.stopped = False

    def stopConnecting(self) -> None:
        """Give up before the connection is made."""
        self.stopped = True

    def disconnect(self) -> None:
        """Same as stopConnecting while not connected."""
        self.stopped = True

    def connect(self) -> None:
        """Not supported: clients here never reconnect a connector."""
        raise NotImplementedError("MemoryNetReactor connectors do not reconnect")


class MemoryNetReactor(MemoryReactorClock):
    """A `MemoryReactorClock` whose outgoing TCP/TLS connections reach in-memory servers.

    `servers` maps a host name to a server factory; `flush()` completes pending
    connections and moves bytes both ways until nothing moves. Hosts in `refused`
    (or not in `servers`) refuse connections. TLS options are recorded, not used.
    """

    def __init__(self, servers: Mapping[str, ServerFactory] | None = None) -> None:
        super().__init__()
        self.servers: dict[str, ServerFactory] = dict(servers or {})
        self.refused: set[str] = set()
        self.pending: list[_PendingConnector] = []
        self.made: list[_PendingConnector] = []
        self._pumps: list[iosim.IOPump] = []

    def connectTCP(
        self,
        host: str,
        port: int,
        factory: ClientFactory,
        timeout: float = 30,
        bindAddress: Any = None,
    ) -> _PendingConnector:
        """Record a plain connection attempt."""
        connector = _PendingConnector(host, port, factory, None)
        self.pending.append(connector)
        return connector

    def connectSSL(
        self,
        host: str,
        port: int,
        factory: ClientFactory,
        contextFactory: Any,
        timeout: float = 30,
        bindAddress: Any = None,
    ) -> _PendingConnector:
        """Record a TLS connection attempt (the in-memory link itself is not encrypted)."""
        connector = _PendingConnector(host, port, factory, contextFactory)
        self.pending.append(connector)
        return connector

    @property
    def open_connections(self) -> int:
        """Connections made and not yet closed on both sides."""
        return len(self._pumps)

    def flush(self, rounds: int = 10_000) -> None:
        """Connect what is pending and deliver bytes until the network is quiet."""
        for _ in range(rounds):
            if not self.step():
                return
        raise RuntimeError(f"network still busy after {rounds} rounds")

    def step(self) -> bool:
        """One round: connect what is pending, move each connection's bytes once."""
        moved = self._connect_pending()
        for pump in list(self._pumps):
            moved = pump.pump() or moved
            client, server = pump.clientIO, pump.serverIO
            # A close reaches both ends in the same round, as it would through a
            # kernel, so that a reconnect never overlaps the connection it replaces.
            for _ in range(2):
                if client.disconnected != server.disconnected:
                    pump.pump()
            if client.disconnected and server.disconnected:
                self._pumps.remove(pump)
        return moved

    def _connect_pending(self) -> bool:
        pending, self.pending = self.pending, []
        for connector in pending:
            if connector.stopped:
                continue
            server = self.servers.get(connector.host)
            if server is None or connector.host in self.refused:
                connector.factory.clientConnectionFailed(
                    connector, Failure(ConnectionRefusedError(connector.host))
                )
                continue
            client = connector.factory.buildProtocol(None)
            served = server.buildProtocol(None)
            assert client is not None and served is not None
            self.made.append(connector)
            self._pumps.append(
                iosim.connect(
                    served,
                    iosim.makeFakeServer(served),
                    client,
                    iosim.makeFakeClient(client),
                    greet=False,
                    clock=self,
                )
            )
        return bool(pending)
