"""The one HTTP site: /live, the reserved API mounts, and WebDAV at / and /webdav/.

`/live` answers without auth (health checks). `api`, `sabnzbd`, `ui` and
`metrics` are reserved top-level names: they go to the resources the caller
mounts (which do their own auth) or answer 404 JSON. Everything else is the
WebDAV tree, behind Basic auth when a user or password is configured.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from altmount.config import Config
from altmount.stream.fetcher import SegmentFetcher
from altmount.web.auth import Unauthorized, auth_required, credentials_ok
from altmount.web.multipart import BodyLimitedRequest
from altmount.web.webdav import WebDAVResource

__all__ = ["RESERVED", "build_site"]

log = logging.getLogger(__name__)

RESERVED = (b"api", b"sabnzbd", b"ui", b"metrics")


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

    def __init__(self, config: Config, webdav: Resource, extra: dict[bytes, Resource]) -> None:
        super().__init__()
        self._user = config.webdav.user
        self._password = config.webdav.password
        self._webdav = webdav
        self._extra = extra
        self._live = _Live()
        self._not_mounted = _NotMounted()
        self._unauthorized = Unauthorized()

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"live":
            return self._live
        if path in RESERVED:
            return self._extra.get(path, self._not_mounted)
        if auth_required(self._user, self._password) and not credentials_ok(
            request.getHeader(b"authorization"), self._user, self._password
        ):
            return self._unauthorized
        return self._webdav


class _TimedRequest(BodyLimitedRequest):
    """A request that logs method, path, status, body bytes and milliseconds when done."""

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
            self.path.decode("latin-1"),
            self.code,
            self.sentLength,
            elapsed,
            note,
        )


class _QuietSite(Site):
    """A Site that writes no access log of its own (ours is `webdav.debug`)."""

    noisy = False
    displayTracebacks = False

    def log(self, request: http.Request) -> None:
        """Access logging is done by _TimedRequest when debug is on."""


def build_site(
    config: Config,
    store: Any,
    fetcher: SegmentFetcher,
    *,
    extra_resources: dict[bytes, Resource] | None = None,
    ops: Any = None,
) -> Site:
    """The HTTP site of `config`: WebDAV over `store` and `fetcher`, plus the mounts given.

    `extra_resources` maps a reserved top-level name (b"api", b"sabnzbd", b"ui",
    b"metrics") to its resource; any other name is refused with ValueError.
    `ops` (an `altmount.ops.Ops`) gets the WebDAV streams registered with it.
    """
    extra = dict(extra_resources or {})
    unknown = sorted(name for name in extra if name not in RESERVED)
    if unknown:
        raise ValueError(f"extra resources must use reserved names {RESERVED}, got {unknown}")
    webdav = WebDAVResource(store, fetcher, config.streaming, ops=ops)
    root = _Root(config, webdav, extra)
    if config.webdav.debug:
        return _QuietSite(root, requestFactory=_TimedRequest)
    # Every request is body-capped: Twisted would otherwise buffer any upload whole.
    return _QuietSite(root, requestFactory=BodyLimitedRequest)
