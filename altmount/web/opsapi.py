"""The operations REST routes under `/api`: health, streams, providers, config, queue.

`build_ops_routes(...)` returns an `OpsRoutes`; the `/api` resource calls
`routes.render(request)` and gets `None` when no route has the request's path (it
then answers its own routes or 404), else the body (or NOT_DONE_YET). Every
answer is JSON; errors are `{"error": {"code", "message"}}` with a fitting status,
never a traceback.

Auth (`altmount.web.auth`, scheme REST): HTTP Basic with the WebDAV user and
password, the API key in the `X-Api-Key` header or the `apikey` query
parameter, or a web UI session cookie (with its CSRF header on POST/DELETE).
Only `GET /api/health` answers without credentials, and then only `{"status": ...}`.

Routes (see docs/api.md for every field):

    GET  /api/health                      GET  /api/providers
    GET  /api/health/streaming            GET|POST /api/providers/{name}/test
    GET  /api/health/files                GET  /api/files/active-streams
    POST /api/health/files/{path-or-id}/check
    POST /api/health/{id-or-path}/repair
    GET  /api/config                      POST /api/config/reload
    GET  /api/queue/stats                 GET|DELETE /api/queue
    GET|DELETE /api/queue/{id}            POST /api/queue/{id}/retry
    DELETE /api/cache
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from twisted.internet import defer
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from altmount.config import Config
from altmount.errors import AltmountError
from altmount.web.auth import REST, Authenticator, Verdict, refusal_json
from altmount.web.opshandlers import ApiError, Handlers

__all__ = ["OpsResource", "OpsRoutes", "Route", "build_ops_routes", "json_error_body", "ApiError"]

log = logging.getLogger(__name__)


def json_error_body(status: int, code: str, message: str) -> tuple[int, bytes]:
    """(status, body) of a JSON error answer."""
    return status, json.dumps({"error": {"code": code, "message": message}}).encode()


_PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")
_KINDS = {None: "[^/]+", "int": r"\d+", "path": ".+"}


@dataclass(frozen=True, slots=True)
class Route:
    """One route: methods, a pattern like `/api/queue/{id:int}`, the handler, auth need."""

    methods: tuple[bytes, ...]
    pattern: str
    handler: Callable[..., Any]
    public: bool = False

    def regex(self) -> re.Pattern[str]:
        """The compiled pattern; `{x}` one segment, `{x:int}` digits, `{x:path}` the rest."""

        def part(match: re.Match[str]) -> str:
            return f"(?P<{match.group(1)}>{_KINDS[match.group(2)]})"

        return re.compile(
            "^"
            + _PARAM.sub(part, re.escape(self.pattern).replace(r"\{", "{").replace(r"\}", "}"))
            + "/?$"
        )


class OpsRoutes:
    """Dispatches `/api/...` requests to the handlers; auth and JSON errors included.

    `auth` checks the requests; without one, one is made over `api_key_provider()`
    (the API key: a str or a Deferred firing with one).
    """

    def __init__(
        self,
        config: Config,
        routes: list[Route],
        api_key_provider: Callable[[], Any] | None = None,
        *,
        auth: Authenticator | None = None,
    ) -> None:
        self._config = config
        self.routes = tuple(routes)
        self._compiled = [(route, route.regex()) for route in self.routes]
        self.auth = auth if auth is not None else Authenticator(config, api_key_provider)

    def match(self, method: bytes, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """(route, params, path_known): route None with path_known means wrong method."""
        known = False
        for route, regex in self._compiled:
            found = regex.match(path)
            if found is None:
                continue
            known = True
            if method in route.methods or (method == b"HEAD" and b"GET" in route.methods):
                return route, {k: unquote(v) for k, v in found.groupdict().items()}, True
        return None, {}, known

    def render(self, request: Request) -> bytes | int | None:
        """Answer `request` if a route has its path; None otherwise (not ours)."""
        path = request.path.decode("latin-1")
        route, params, known = self.match(request.method, path)
        if not known:
            return None
        if route is None:
            allowed = sorted(
                {m.decode() for r, x in self._compiled if x.match(path) for m in r.methods}
            )
            request.setHeader(b"Allow", ", ".join(allowed).encode())
            return self.send(
                request,
                *json_error_body(
                    405, "method_not_allowed", f"use {' or '.join(allowed)} for this route"
                ),
            )
        finished = [False]
        request.notifyFinish().addBoth(lambda _: finished.__setitem__(0, True))
        answer = defer.ensureDeferred(self._answer(request, route, params))
        answer.addCallback(self._deliver, request, finished)
        return NOT_DONE_YET

    async def _answer(self, request: Request, route: Route, params: dict[str, str]) -> Any:
        try:
            verdict = await self.verdict(request)
            if not verdict.allowed and not route.public:
                body = refusal_json(request, verdict)
                return verdict.status, body
            result = (
                route.handler(request, **params, authorized=verdict.allowed)
                if route.public
                else route.handler(request, **params)
            )
            if isinstance(result, defer.Deferred):
                result = await result
            status, payload = result if isinstance(result, tuple) else (200, result)
            return status, json.dumps(payload).encode()
        except ApiError as exc:
            return json_error_body(exc.http_status, exc.code, str(exc))
        except AltmountError as exc:
            status = exc.http_status if 400 <= exc.http_status < 600 else 500
            return json_error_body(status, type(exc).__name__, str(exc))
        except Exception:
            log.exception(
                "%s %s failed",
                request.method.decode("latin-1"),
                request.path.decode("latin-1"),
                extra={"request_id": getattr(request, "request_id", "")},
            )
            return json_error_body(500, "internal", "internal error; see the altmount log")

    async def verdict(self, request: Request) -> Verdict:
        """The Authenticator's decision on `request` (Basic, session or API key)."""
        return await self.auth.check(request, REST)

    def _deliver(self, answer: tuple[int, bytes], request: Request, finished: list[bool]) -> None:
        if finished[0]:
            return  # the client went away
        request.write(self.send(request, *answer))
        request.finish()

    @staticmethod
    def send(request: Request, status: int, body: bytes) -> bytes:
        """Set the JSON headers and status; the body to return (empty for HEAD)."""
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"Content-Length", b"%d" % len(body))
        return b"" if request.method == b"HEAD" else body


def build_ops_routes(
    config: Config,
    engine: Any,
    ops: Any,
    queue: Any = None,
    *,
    api_key_provider: Callable[[], Any] | None = None,
    auth: Authenticator | None = None,
) -> OpsRoutes:
    """The routing table of the operations API over `engine`, `ops` and `queue`.

    Without a queue, the queue routes answer 503. `auth` (else one over
    `api_key_provider`) checks the requests.
    """
    h = Handlers(config, engine, ops, queue)
    get, post, delete = (b"GET",), (b"POST",), (b"DELETE",)
    routes = [
        Route(get, "/api/health", h.health, public=True),
        Route(get, "/api/health/streaming", h.streaming),
        Route(get, "/api/health/files", h.files),
        Route(post, "/api/health/files/{target:path}/check", h.check_file),
        Route(post, "/api/health/{target:path}/repair", h.repair_file),
        Route(get, "/api/providers", h.providers),
        Route(get + post, "/api/providers/{name}/test", h.test_provider),
        Route(get, "/api/files/active-streams", h.active_streams),
        Route(get, "/api/config", h.config),
        Route(post, "/api/config/reload", h.reload),
        Route(get, "/api/queue/stats", h.queue_stats),
        Route(get, "/api/queue", h.queue_list),
        Route(delete, "/api/queue", h.queue_bulk_delete),
        Route(get, "/api/queue/{item_id:int}", h.queue_get),
        Route(delete, "/api/queue/{item_id:int}", h.queue_delete),
        Route(post, "/api/queue/{item_id:int}/retry", h.queue_retry),
        Route(delete, "/api/cache", h.clear_cache),
    ]
    return OpsRoutes(config, routes, api_key_provider, auth=auth)


class OpsResource(Resource):
    """A leaf `/api` resource serving only the operations routes (404 JSON otherwise).

    For servers without the SABnzbd/upload `/api` root, and for tests.
    """

    isLeaf = True

    def __init__(self, routes: OpsRoutes) -> None:
        super().__init__()
        self._routes = routes
        self.auth = routes.auth

    def render(self, request: Request) -> bytes | int:
        answer = self._routes.render(request)
        if answer is None:
            return OpsRoutes.send(request, *json_error_body(404, "not_found", "no such API route"))
        return answer
