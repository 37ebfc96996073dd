"""One pipelined NNTP connection: the Twisted shell around `protocol.ResponseParser`.

`connect` opens a connection (TCP or TLS) through the reactor it is given, reads the
greeting, logs in with AUTHINFO USER/PASS (RFC 4643) when the provider has a user
name, and fires with a ready `NNTPClientProtocol`. Requests are written at once, up
to `inflight_requests` of them ahead of their answers, and matched FIFO (RFC 3977
3.5). The head request has `request_timeout_seconds` to be answered; on a timeout
the connection's stream state is unknown, so it is dropped and every other request
on it fails with `NNTPConnectionLost` for the pool to retry elsewhere.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.python.failure import Failure

from altmount.config import NNTPConfig, ProviderConfig
from altmount.errors import (
    ArticleNotFound,
    NNTPAuthExpired,
    NNTPConnectionLost,
    NNTPError,
    NNTPProtocolError,
    NNTPServiceUnavailable,
    NNTPTimeout,
    ProviderAuthError,
    ProviderTLSError,
    ProviderUnavailable,
)
from altmount.nntp.protocol import (
    MULTILINE,
    ArticleBody,
    NNTPStatus,
    Response,
    ResponseParser,
    encode_command,
    message_id_arg,
)
from altmount.nntp.tls import provider_tls
from altmount.nntp.tlssocket import connect_tls

__all__ = ["NNTPClientProtocol", "connect"]

#: Bytes asked of the socket per read; see connectionMade.
RECV_BUFFER_SIZE = 1 << 20

_AUTH_REFUSED = frozenset(
    {NNTPStatus.AUTH_FAILED, NNTPStatus.AUTH_OUT_OF_SEQUENCE, NNTPStatus.PERMISSION_DENIED}
)
_NO_BODY: frozenset[int] = frozenset()
#: Answers to a request after which the connection is not used again.
_SESSION_ENDING = frozenset(
    {NNTPStatus.SERVICE_UNAVAILABLE, NNTPStatus.PERMISSION_DENIED, NNTPStatus.AUTH_REQUIRED}
)


def _ignore(*args: object) -> None:
    """Callback for answers nobody needs (QUIT)."""


class _State(Enum):
    """Where a connection is in its life (RFC 3977 5.1, RFC 4643 2.3)."""

    GREETING = "greeting"
    AUTH_USER = "auth_user"  # AUTHINFO USER sent
    AUTH_PASS = "auth_pass"  # AUTHINFO PASS sent
    READY = "ready"
    QUITTING = "quitting"  # QUIT queued: nothing more may be sent
    FAILING = "failing"  # a request timed out: the connection is being dropped
    CLOSED = "closed"


_LOGGING_IN = frozenset({_State.GREETING, _State.AUTH_USER, _State.AUTH_PASS})


class _Request:
    """A command on its way: what to send, how to read the answer, whom to tell."""

    __slots__ = ("line", "multiline_on", "deferred", "interpret", "message_id", "started")

    def __init__(
        self,
        line: bytes,
        multiline_on: frozenset[int],
        interpret: Callable[[Response, str], Any],
        message_id: str = "",
    ) -> None:
        self.line = line
        self.multiline_on = multiline_on
        self.interpret = interpret
        self.message_id = message_id
        self.deferred: defer.Deferred[Any] = defer.Deferred()
        self.started = 0.0


class NNTPClientProtocol(Protocol):
    """A logged-in NNTP connection; every request method returns a Deferred.

    `ready` fires with the protocol once greeting and login succeeded; `closed` fires
    (with None, never an error) once the connection is unusable, `disconnected` once
    the transport has really gone (`connectionLost`). `last_rtt_ms` is how
    long the last answered request took from the moment it reached the head of the
    pipeline.
    """

    def __init__(self, reactor: IReactorTime, provider: ProviderConfig, nntp: NNTPConfig) -> None:
        self._reactor = reactor
        self._provider = provider
        self._name = provider.name or provider.host
        self._timeout = nntp.request_timeout_seconds
        self._depth = provider.inflight_requests
        self._parser = ResponseParser()
        self._sent: deque[_Request] = deque()
        self._waiting: deque[_Request] = deque()
        self._timer: IDelayedCall | None = None
        self._state = _State.GREETING
        self.last_rtt_ms = 0.0
        #: Why the connection ended, unless it was our own QUIT (the pool logs it once).
        self.close_error: NNTPError | None = None
        self.ready: defer.Deferred[NNTPClientProtocol] = defer.Deferred()
        self.closed: defer.Deferred[None] = defer.Deferred()
        self.disconnected: defer.Deferred[None] = defer.Deferred()

    # -- public API ------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """True between a successful login and the end of the connection."""
        return self._state is _State.READY

    @property
    def in_flight(self) -> int:
        """Requests sent or queued on this connection and not yet answered."""
        return len(self._sent) + len(self._waiting)

    @property
    def busy_since(self) -> float:
        """When the request at the head of the pipeline started (reactor seconds); the
        connection whose head started first is the likeliest to be free first."""
        return self._sent[0].started if self._sent else self._reactor.seconds()

    def body(self, message_id: str) -> defer.Deferred[ArticleBody]:
        """BODY: the dot-stuffed body (without the final '.' line) as the chunks it
        arrived in; 430 → ArticleNotFound."""
        return self._request("BODY", message_id, self._article_data)

    def head(self, message_id: str) -> defer.Deferred[ArticleBody]:
        """HEAD: the dot-stuffed header block; 430 → ArticleNotFound."""
        return self._request("HEAD", message_id, self._article_data)

    def stat(self, message_id: str) -> defer.Deferred[bool]:
        """STAT: True when the server has the article (223), False on 430."""
        return self._request("STAT", message_id, self._article_exists)

    def date(self) -> defer.Deferred[str]:
        """DATE: the server's clock as YYYYMMDDhhmmss (RFC 3977 7.1)."""
        return self._send(_Request(encode_command("DATE"), _NO_BODY, self._date))

    def quit(self) -> defer.Deferred[None]:
        """Send QUIT and close; fires once the transport is gone."""
        if self.disconnected.called:
            return defer.succeed(None)
        if self._state is _State.READY:
            request = _Request(encode_command("QUIT"), _NO_BODY, _ignore)
            request.deferred.addErrback(_ignore)  # closing anyway
            self._send(request)
            self._state = _State.QUITTING
        elif self._state is not _State.QUITTING:  # still logging in: just hang up
            self.abort()
        gone: defer.Deferred[None] = defer.Deferred()
        self.disconnected.addBoth(lambda result: gone.callback(None) or result)
        return gone

    def abort(self, error: NNTPError | None = None) -> None:
        """Drop the connection now; requests in flight fail with `error` (or connection lost)."""
        self._shutdown(error or NNTPConnectionLost(f"provider {self._name}: connection closed"))

    # -- Twisted hooks -----------------------------------------------------------

    def connectionMade(self) -> None:
        """Wait for the greeting (RFC 3977 5.1)."""
        # Twisted reads 64 KiB per wake-up by default: eleven reactor round trips
        # per 716,800-byte article. Larger reads cut the per-byte Python overhead.
        if hasattr(self.transport, "bufferSize"):
            self.transport.bufferSize = RECV_BUFFER_SIZE
        self._parser.expect(_NO_BODY)

    def dataReceived(self, data: bytes) -> None:
        """Parse what arrived and answer the requests it completes, in order."""
        try:
            responses = self._parser.feed(data)
        except NNTPProtocolError as exc:
            self._shutdown(NNTPProtocolError(f"provider {self._name}: {exc}"))
            return
        for response in responses:
            if self._state is _State.CLOSED:
                return
            if self._state in _LOGGING_IN:
                self._login_step(response)
            elif self._sent:
                self._answer(response)
            elif response.code == NNTPStatus.SERVICE_UNAVAILABLE:
                self._shutdown(NNTPServiceUnavailable(f"provider {self._name}: {response.text}"))
            else:
                self._shutdown(
                    NNTPProtocolError(
                        f"provider {self._name}: unsolicited response {response.code} {response.text}"
                    )
                )

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Fail whatever was still in flight so that the pool can retry it."""
        self._shutdown(self._lost_error(reason))
        self.disconnected.callback(None)

    def _lost_error(self, reason: Failure) -> NNTPError:
        return NNTPConnectionLost(
            f"provider {self._name}: connection lost ({reason.getErrorMessage()})"
        )

    # -- login -------------------------------------------------------------------

    def _login_step(self, response: Response) -> None:
        code, text = response.code, response.text
        if self._state is _State.GREETING:
            if code in (NNTPStatus.READY_POSTING_ALLOWED, NNTPStatus.READY_NO_POSTING):
                if self._provider.username:
                    self._write_login(_State.AUTH_USER, self._provider.username)
                else:
                    self._logged_in()
                return
            # 400 and 502 at the greeting usually mean "too many connections" or a
            # temporary block: worth a retry after backoff, not disabling the provider.
            self._shutdown(
                ProviderUnavailable(
                    f"provider {self._name}: server refused the connection: {code} {text}"
                )
            )
            return
        if code == NNTPStatus.AUTH_ACCEPTED:
            self._logged_in()
        elif code == NNTPStatus.PASSWORD_REQUIRED and self._state is _State.AUTH_USER:
            self._write_login(_State.AUTH_PASS, self._provider.password)
        elif code in _AUTH_REFUSED:
            self._shutdown(
                ProviderAuthError(f"provider {self._name}: {code} authentication failed: {text}")
            )
        else:
            self._shutdown(
                NNTPProtocolError(
                    f"provider {self._name}: unexpected answer to AUTHINFO: {code} {text}"
                )
            )

    def _write_login(self, state: _State, value: str) -> None:
        # Credentials may hold spaces, so they bypass encode_command's one-word rule.
        what = "USER" if state is _State.AUTH_USER else "PASS"
        self._state = state
        self._parser.expect(_NO_BODY)
        assert self.transport is not None
        self.transport.write(f"AUTHINFO {what} {value}\r\n".encode())

    def _logged_in(self) -> None:
        self._state = _State.READY
        self.ready.callback(self)

    # -- requests ------------------------------------------------------------------

    def _request(
        self, verb: str, message_id: str, interpret: Callable[[Response, str], Any]
    ) -> defer.Deferred[Any]:
        line = encode_command(verb, message_id_arg(message_id))
        return self._send(_Request(line, MULTILINE.get(verb, _NO_BODY), interpret, message_id))

    def _send(self, request: _Request) -> defer.Deferred[Any]:
        if self._state is not _State.READY:
            return defer.fail(NNTPConnectionLost(f"provider {self._name}: connection not usable"))
        if len(self._sent) >= self._depth:
            self._waiting.append(request)
        else:
            self._write(request)
        return request.deferred

    def _write(self, request: _Request) -> None:
        self._sent.append(request)
        self._parser.expect(request.multiline_on)
        if len(self._sent) == 1:
            self._start_clock(request)
        assert self.transport is not None
        self.transport.write(request.line)

    def _start_clock(self, request: _Request) -> None:
        # Only the head of the pipeline is timed: the ones behind it are not late
        # while the server is still busy sending the head's body.
        request.started = self._reactor.seconds()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self._reactor.callLater(self._timeout, self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        # Unusable before the head's errback runs: its retry must not be pipelined
        # straight back onto this connection, which is about to be dropped.
        self._state = _State.FAILING
        if self._sent:
            head = self._sent.popleft()
            head.deferred.errback(
                NNTPTimeout(f"provider {self._name}: no answer within {self._timeout:g} s")
            )
        self._shutdown(
            NNTPConnectionLost(
                f"provider {self._name}: connection dropped after a request timed out"
            )
        )

    def _answer(self, response: Response) -> None:
        request = self._sent.popleft()
        ending = response.code in _SESSION_ENDING
        if ending:  # unusable before the errback: its retry must not come back here
            self._state = _State.FAILING
        self.last_rtt_ms = (self._reactor.seconds() - request.started) * 1000.0
        if self._sent:
            self._start_clock(self._sent[0])
        elif self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._waiting and self._state not in (_State.CLOSED, _State.FAILING):
            self._write(self._waiting.popleft())
        try:
            result = request.interpret(response, request.message_id)
        except NNTPError as exc:
            request.deferred.errback(exc)
        else:
            request.deferred.callback(result)
        if ending:
            # The stream state after these is the server's to decide (most close):
            # hang up; the pool retries on a fresh connection, after a backoff for
            # 400/502, with a new AUTHINFO for 480.
            error = self._error(response, request.message_id)
            self._shutdown(
                error
                if isinstance(error, NNTPConnectionLost)
                else NNTPConnectionLost(f"provider {self._name}: {response.code} {response.text}")
            )
        elif response.code == NNTPStatus.CLOSING:
            self._shutdown(NNTPConnectionLost(f"provider {self._name}: closed by QUIT"))

    def _article_data(self, response: Response, message_id: str) -> ArticleBody:
        if response.body is not None:
            return response.body
        raise self._error(response, message_id)

    def _article_exists(self, response: Response, message_id: str) -> bool:
        if response.code == NNTPStatus.ARTICLE_EXISTS:
            return True
        if response.code == NNTPStatus.NO_SUCH_ARTICLE:
            return False
        raise self._error(response, message_id)

    def _date(self, response: Response, message_id: str) -> str:
        if response.code == NNTPStatus.DATE:
            return response.text.split(" ", 1)[0]
        raise self._error(response, message_id)

    def _error(self, response: Response, message_id: str) -> NNTPError:
        code, text = response.code, response.text
        if code in (NNTPStatus.NO_SUCH_ARTICLE, NNTPStatus.NO_ARTICLE_WITH_NUMBER):
            return ArticleNotFound(
                message_id,
                f"provider {self._name}: article <{message_id}> not found: {code} {text}",
            )
        if code == NNTPStatus.AUTH_REQUIRED:
            if not self._provider.username:  # only a human can add credentials
                return ProviderAuthError(
                    f"provider {self._name}: {code} authentication required: {text} "
                    "(set username and password for this provider)"
                )
            return NNTPAuthExpired(
                f"provider {self._name}: {code} {text} during the session; logging in again"
            )
        if code in (NNTPStatus.SERVICE_UNAVAILABLE, NNTPStatus.PERMISSION_DENIED):
            return NNTPServiceUnavailable(f"provider {self._name}: {code} {text}")
        return NNTPProtocolError(f"provider {self._name}: unexpected response {code} {text}")

    # -- teardown ------------------------------------------------------------------

    def _shutdown(self, error: NNTPError) -> None:
        """Make the connection unusable once; fail everything still in flight."""
        if self._state is _State.CLOSED:
            return
        if self._state is not _State.QUITTING:
            self.close_error = error
        self._state = _State.CLOSED
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        pending = [*self._sent, *self._waiting]
        self._sent.clear()
        self._waiting.clear()
        if self.transport is not None:
            self.transport.abortConnection()
        # Tell the owner first, so that retries of the requests failed below are not
        # handed back to this connection.
        self.closed.callback(None)
        if not self.ready.called:
            self.ready.errback(error)
        for request in pending:
            request.deferred.errback(error)


class _NNTPClientFactory(ClientFactory):
    """Builds the one protocol of one `connect` call and reports a failed connect."""

    noisy = False  # one factory per connection: "Starting factory" lines would flood the log

    def __init__(self, reactor: IReactorTime, provider: ProviderConfig, nntp: NNTPConfig) -> None:
        self._reactor = reactor
        self._provider = provider
        self._nntp = nntp
        self.protocol_instance: NNTPClientProtocol | None = None
        self.ready: defer.Deferred[NNTPClientProtocol] = defer.Deferred()

    def buildProtocol(self, addr: Any) -> NNTPClientProtocol:
        """Create the connection's protocol and relay its login result."""
        protocol = NNTPClientProtocol(self._reactor, self._provider, self._nntp)
        protocol.factory = self
        self.protocol_instance = protocol
        protocol.ready.chainDeferred(self.ready)
        return protocol

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        """TCP (or TLS) connect failed before any protocol existed."""
        if self.ready.called:
            return
        if reason.check(ProviderTLSError, ProviderUnavailable):
            # A refused certificate or failed handshake, already in words (nntp/tlssocket.py).
            self.ready.errback(reason.value)
        else:
            provider = self._provider
            self.ready.errback(
                ProviderUnavailable(
                    f"provider {provider.name or provider.host}: cannot connect to "
                    f"{provider.host}:{provider.port}: {reason.getErrorMessage()}"
                )
            )


def connect(
    reactor: Any, provider: ProviderConfig, nntp: NNTPConfig
) -> defer.Deferred[NNTPClientProtocol]:
    """Open and log in one connection; fails with an NNTPError naming the provider.

    The whole of TCP connect, TLS handshake, greeting and login must finish within
    `nntp.connect_timeout_seconds`. Cancelling the Deferred abandons the attempt.
    """
    factory = _NNTPClientFactory(reactor, provider, nntp)
    timeout = nntp.connect_timeout_seconds
    if provider.tls:
        tls = provider_tls(provider)
        connector = connect_tls(reactor, provider.host, provider.port, factory, tls, timeout)
    else:
        connector = reactor.connectTCP(provider.host, provider.port, factory, timeout=timeout)

    def give_up(error: NNTPError) -> None:
        protocol = factory.protocol_instance
        if protocol is not None:
            protocol.abort(error)
        else:
            connector.disconnect()
            if not factory.ready.called:
                factory.ready.errback(error)

    def cancel(result: defer.Deferred[NNTPClientProtocol]) -> None:
        give_up(
            ProviderUnavailable(f"provider {provider.name or provider.host}: connect cancelled")
        )

    result: defer.Deferred[NNTPClientProtocol] = defer.Deferred(cancel)
    timer = reactor.callLater(
        timeout,
        lambda: give_up(
            NNTPTimeout(f"provider {provider.name or provider.host}: no login within {timeout:g} s")
        ),
    )

    def settle(outcome: Any) -> Any:
        if timer.active():
            timer.cancel()
        if not result.called:
            if isinstance(outcome, Failure):
                result.errback(outcome)
            else:
                result.callback(outcome)
        return None

    factory.ready.addBoth(settle)
    return result
