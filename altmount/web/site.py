"""The one HTTP site: /live, the reserved API mounts, and WebDAV at / and /webdav/.

`/live` answers without auth (health checks). `api`, `sabnzbd`, `ui`, `metrics`
and `strm` (STRM files' URLs, by token) are reserved top-level names: they go to
the resources the caller mounts (which ask the site's `Authenticator` themselves,
or check their own token) or answer 404 JSON;
`ui` defaults to the web UI. Everything else is the WebDAV tree, behind Basic
auth or a UI session cookie (`altmount.web.auth`). A browser opening `/` (a plain GET that
accepts text/html, no `Depth`) is sent to `/ui/`; WebDAV clients never are.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from twisted.internet.abstract import FileDescriptor
from twisted.protocols import basic
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from altmount.config import Config
from altmount.logsetup import new_request_id, redact_url
from altmount.stream.fetcher import SegmentFetcher
from altmount.web.auth import WEB, Authenticator, Refusal, client_key
from altmount.web.multipart import BodyLimitedRequest
from altmount.web.ui import UIResource
from altmount.web.webdav import WebDAVResource

__all__ = ["RESERVED", "HTTP_IDLE_TIMEOUT", "EARLY_AUTH_BYTES", "build_site"]

log = logging.getLogger(__name__)

RESERVED = (b"api", b"sabnzbd", b"ui", b"metrics", b"strm")
#: Seconds a connection may sit idle, and the time a client has to send a whole
#: request head once it has started one (see _Channel).
HTTP_IDLE_TIMEOUT = 60.0
#: Most bytes one send() of an HTTP response may take (Twisted's default: 128 KiB).
SEND_LIMIT = 1 << 20
#: A body larger than this (or chunked) is read only once the credentials in its
#: request's head are right; the UI login (4 KiB at most) stays below it.
EARLY_AUTH_BYTES = 64 * 1024


class _Live(Resource):
    """Liveness probe: 200 "OK" for anyone."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        return b"OK"


class _NotMounted(Resource):
    """A reserved name with nothing mounted on it: 404 in JSON, as an API client expects."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"Content-Type", b"application/json")
        return b'{"error": "not found"}'


class _Root(Resource):
    """Routes the first path segment; WebDAV gets everything not reserved."""

    def __init__(self, auth: Authenticator, webdav: Resource, extra: dict[bytes, Resource]) -> None:
        super().__init__()
        self._auth = auth
        self._webdav = webdav
        self._extra = extra
        self._live = _Live()
        self._not_mounted = _NotMounted()
        self._to_ui = _ToUI()

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"live":
            return self._live
        if path in RESERVED:
            return self._extra.get(path, self._not_mounted)
        if _browser_at_root(request):
            return self._to_ui
        verdict = self._auth.check_now(request, WEB)
        return self._webdav if verdict.allowed else Refusal(verdict)


def _browser_at_root(request: Request) -> bool:
    """A browser opening `/`: GET of the root, accepting HTML, no WebDAV Depth header."""
    return (
        request.method == b"GET"
        and request.path == b"/"
        and request.getHeader(b"depth") is None
        and b"text/html" in (request.getHeader(b"accept") or b"")
    )


class _ToUI(Resource):
    """302 to the web UI."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.redirect(b"/ui/")
        request.setHeader(b"Cache-Control", b"no-store")
        return b""


class _Request(BodyLimitedRequest):
    """A body-capped request with a short id, sent back as X-Request-Id and carried by
    every log line about it (the debug line, its stream's lines).

    Its body must arrive whole within the site's `body_timeout` (else 408 and the
    connection closed: a client trickling a byte at a time would otherwise hold it
    for as long as it likes), and a body over EARLY_AUTH_BYTES is refused before
    it is read unless the head carries right credentials.
    """

    _deadline: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_id = new_request_id()

    def gotLength(self, length: int | None) -> None:
        site = getattr(self.channel, "site", None)
        if length == 0 or not isinstance(site, _QuietSite):
            super().gotLength(length)
            return
        if (length is None or length > EARLY_AUTH_BYTES) and self._head_refused(site):
            return
        super().gotLength(length)
        if not self._refused:
            self._deadline = site.reactor.callLater(site.body_timeout, self._too_slow)

    def _head_refused(self, site: _QuietSite) -> bool:
        """Refuse now (and say so) when the head's credentials do not admit a large body."""
        channel = self.channel
        self.method = getattr(channel, "_command", b"POST")
        self.uri = getattr(channel, "_path", b"/")
        self.path, _, query = self.uri.partition(b"?")
        self.args = parse_qs(query, keep_blank_values=True)
        verdict = site.authenticator.check_head(self)
        if verdict is None or verdict.allowed:
            return False
        message = (
            f"{verdict.message}; a body over {EARLY_AUTH_BYTES >> 10} KiB is read only when "
            "the request head carries the credentials (Authorization, X-Api-Key or apikey=)"
        )
        extra = b'WWW-Authenticate: Basic realm="altmount"\r\n' if verdict.status == 401 else b""
        if verdict.status == 429:
            extra = b"Retry-After: %d\r\n" % max(1, math.ceil(verdict.retry_after))
        self._hang_up(verdict.status, verdict.code, message, extra)
        return True

    def _too_slow(self) -> None:
        self._deadline = None
        site = self.channel.site if self.channel is not None else None
        timeout = getattr(site, "body_timeout", 0)
        self._hang_up(
            408, "request_timeout", f"the request body did not arrive within {timeout:g} s"
        )

    def _hang_up(self, status: int, code: str, message: str, extra: bytes = b"") -> None:
        self._refused = True
        transport = self.channel.transport if self.channel is not None else None
        if transport is None:
            return
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n" % (status, _REASONS[status])
            + extra
            + b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )
        transport.loseConnection()

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self._cancel_deadline()
        super().requestReceived(command, path, version)

    def connectionLost(self, reason: Any) -> None:
        self._cancel_deadline()
        super().connectionLost(reason)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def process(self) -> None:
        self.setHeader(b"X-Request-Id", self.request_id.encode("ascii"))
        super().process()


_REASONS = {
    401: b"Unauthorized",
    403: b"Forbidden",
    408: b"Request Timeout",
    429: b"Too Many Requests",
}


class _TimedRequest(_Request):
    """A request that logs method, URI (credentials masked), status, body bytes and
    milliseconds when done."""

    clock: Callable[[], float] = time.monotonic

    def process(self) -> None:
        self._started = self.clock()
        super().process()

    def finish(self) -> None:
        super().finish()
        self._log_line("")

    def connectionLost(self, reason: Any) -> None:
        finished = self.finished
        super().connectionLost(reason)
        if not finished:
            self._log_line(" (client went away)")

    def _log_line(self, note: str) -> None:
        started = getattr(self, "_started", None)
        elapsed = (self.clock() - started) * 1000 if started is not None else 0.0
        log.info(
            "%s %s -> %d, %d bytes, %.1f ms%s",
            self.method.decode("latin-1"),
            redact_url(self.uri.decode("latin-1")),
            self.code,
            self.sentLength,
            elapsed,
            note,
            extra={"request_id": self.request_id},
        )


class _Channel(http.HTTPChannel):
    """HTTP/1.1 with two defences Twisted lacks against slow or oversized request heads,
    and large socket writes.

    Twisted restarts the idle timer on every byte, so a client trickling a header
    a byte at a time (slowloris) holds its connection for hours; here only the
    first byte of a request head restarts it, so the whole head must arrive
    within the idle timeout. A header line over MAX_LENGTH gets a 431 before
    the hang-up instead of a silent close. And a connection past the site's caps
    (`webdav.max_connections`, `webdav.max_connections_per_address`) gets a 503
    and is closed at once.
    """

    _counted: str | None = None
    _turned_away = False

    def connectionMade(self) -> None:
        # Twisted sends at most 128 KiB per send() and reactor turn: six turns per
        # article-sized write. SEND_LIMIT per call cut altmount's CPU per GiB served by
        # 15% (benchmarks/RESULTS.md, "Socket writes").
        if isinstance(self.transport, FileDescriptor):
            self.transport.SEND_LIMIT = SEND_LIMIT
        site = getattr(self, "site", None)
        if isinstance(site, _QuietSite):
            address = client_key(getattr(self.transport.getPeer(), "host", ""))
            problem = site.connections.admit(address)
            if problem:
                self.transport.write(
                    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                    b"Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(problem) + 1, problem.encode() + b"\n")
                )
                self.transport.loseConnection()
                self._turned_away = True
                return
            self._counted = address
        super().connectionMade()

    def connectionLost(self, reason: Any) -> None:
        if self._counted is not None:
            self.site.connections.release(self._counted)
            self._counted = None
        if not self._turned_away:  # one turned away never started being a channel
            super().connectionLost(reason)

    def dataReceived(self, data: bytes) -> None:
        if self._turned_away:
            return
        # Inside a request head: part of it has arrived (a complete line or a partial one).
        in_head = self.line_mode and not self._handlingRequest
        if in_head and (self._receivedHeaderSize or self._buffer):
            basic.LineReceiver.dataReceived(self, data)
            return
        super().dataReceived(data)

    def _send100Continue(self) -> None:  # noqa: N802 (Twisted's name)
        # A request refused from its head (401, 408, 413) must not be told to go on.
        if self.requests and getattr(self.requests[-1], "_refused", False):
            return
        super()._send100Continue()

    def lineLengthExceeded(self, line: bytes) -> None:
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"Connection: close\r\nContent-Length: 0\r\n\r\n"
        )
        self.loseConnection()


class _Connections:
    """Open connections, in total and per client address, against the configured caps."""

    def __init__(self, total: int, per_address: int) -> None:
        self._total, self._per_address = total, per_address
        self._open: dict[str, int] = {}
        self.count = 0

    def admit(self, address: str) -> str:
        """Count one more connection from `address`; why not, if over a cap ("" if fine)."""
        if self.count >= self._total:
            return f"too many connections ({self._total}, webdav.max_connections)"
        if self._open.get(address, 0) >= self._per_address:
            return (
                f"too many connections from {address} "
                f"({self._per_address}, webdav.max_connections_per_address)"
            )
        self._open[address] = self._open.get(address, 0) + 1
        self.count += 1
        return ""

    def release(self, address: str) -> None:
        """Forget one connection from `address`."""
        left = self._open.get(address, 0) - 1
        if left > 0:
            self._open[address] = left
        else:
            self._open.pop(address, None)
        self.count -= 1


class _QuietSite(Site):
    """A Site that writes no access log of its own (ours is `webdav.debug`), speaks
    through _Channel and carries the Authenticator of its resources, the body
    deadline and the connection caps."""

    noisy = False
    displayTracebacks = False
    protocol = _Channel  # type: ignore[assignment]
    authenticator: Authenticator
    body_timeout: float
    connections: _Connections

    def log(self, request: http.Request) -> None:
        """Access logging is done by _TimedRequest when debug is on."""


def build_site(
    config: Config,
    store: Any,
    fetcher: SegmentFetcher,
    *,
    extra_resources: dict[bytes, Resource] | None = None,
    ops: Any = None,
    reactor: Any = None,
    idle_timeout: float = HTTP_IDLE_TIMEOUT,
    auth: Authenticator | None = None,
) -> Site:
    """The HTTP site of `config`: WebDAV over `store` and `fetcher`, plus the mounts given.

    `extra_resources` maps a reserved top-level name (b"api", b"sabnzbd", b"ui",
    b"metrics") to its resource; any other name is refused with ValueError. `ui`
    defaults to the web UI, whose session cookie then works on every mount.
    `ops` (an `altmount.ops.Ops`) gets the WebDAV streams registered with it.
    `reactor` (default: the global one) runs the `idle_timeout` timers. `auth`
    checks every request; without it the site takes the one of the mounts (so
    a UI session works on them) or makes its own.
    """
    extra = dict(extra_resources or {})
    unknown = sorted(name for name in extra if name not in RESERVED)
    if unknown:
        raise ValueError(f"extra resources must use reserved names {RESERVED}, got {unknown}")
    if auth is None:
        found = (getattr(resource, "auth", None) for resource in extra.values())
        auth = next((a for a in found if isinstance(a, Authenticator)), None)
    if auth is None:
        auth = Authenticator(config, clock=(reactor.seconds if reactor else time.monotonic))
    extra.setdefault(b"ui", UIResource(auth))
    webdav = WebDAVResource(store, fetcher, config.streaming, ops=ops)
    root = _Root(auth, webdav, extra)
    # Every request is body-capped: Twisted would otherwise buffer any upload whole.
    factory = _TimedRequest if config.webdav.debug else _Request
    site = _QuietSite(root, requestFactory=factory, timeout=idle_timeout, reactor=reactor)
    site.authenticator = auth
    site.body_timeout = config.webdav.body_timeout_seconds
    site.connections = _Connections(
        config.webdav.max_connections, config.webdav.max_connections_per_address
    )
    return site
