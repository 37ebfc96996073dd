"""The `/api` root: SABnzbd calls (`/api?mode=...`) and altmount's REST routes.

SABnzbd clients may call `/api?mode=...` instead of `/sabnzbd/api`, so a request
with `mode` goes to the SABnzbd handler. Everything else is REST, with JSON
answers and JSON errors `{"error": {"code": ..., "message": ...}}` (never a
traceback). REST auth (`altmount.web.auth`, scheme REST): HTTP Basic with the
WebDAV credentials, the API key in `X-Api-Key` or `apikey`, or a web UI
session cookie.

REST routes:
- `POST /api/queue/upload` (multipart: `file`, optional `category`, `priority`)
  → 201 and the queue item as JSON.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from altmount.config import Config
from altmount.errors import AltmountError, RequestError
from altmount.queue.service import QueueService
from altmount.web.addurl import NZBDownloader
from altmount.web.auth import REST, Authenticator, refusal_json
from altmount.web.multipart import MAX_NZB_BYTES, FormPart, parse_form
from altmount.web.opsapi import OpsRoutes
from altmount.web.opshandlers import queue_item_json
from altmount.web.sabnzbd import SABnzbdAPI, SABnzbdRoot, json_error

__all__ = ["ApiRoot", "build_api_resources"]

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "payload_too_large",
}


class ApiRoot(Resource):
    """`/api`: `mode=` → SABnzbd, else the REST routes."""

    isLeaf = True

    def __init__(
        self,
        config: Config,
        queue: QueueService,
        sabnzbd: SABnzbdAPI,
        ops_routes: OpsRoutes | None = None,
    ) -> None:
        super().__init__()
        self._config = config
        self._queue = queue
        self._sabnzbd = sabnzbd
        self._ops_routes = ops_routes
        self.auth = sabnzbd.auth

    def render(self, request: Request) -> bytes | int:
        if b"mode" in (request.args or {}):
            return self._sabnzbd.render(request)
        if self._ops_routes is not None:
            answer = self._ops_routes.render(request)
            if answer is not None:
                return answer
        route = [part for part in request.postpath if part]
        if route != [b"queue", b"upload"]:
            return json_error(request, 404, "not_found", "no such API route")
        if request.method != b"POST":
            request.setHeader(b"Allow", b"POST")
            return json_error(request, 405, "method_not_allowed", "use POST for this route")
        finished = [False]
        request.notifyFinish().addBoth(lambda _: finished.__setitem__(0, True))
        answering = defer.maybeDeferred(self._upload, request)
        answering.addErrback(self._failed, request)
        answering.addCallback(self._send, request, finished)
        return NOT_DONE_YET

    @defer.inlineCallbacks
    def _upload(self, request: Request):
        verdict = yield self.auth.check(request, REST)
        if not verdict.allowed:
            return verdict.status, refusal_json(request, verdict)
        parts = _parts(request)
        upload = next((p for p in parts if p.name == "file"), None)
        if upload is None or not upload.data:
            return 400, "bad_request", "the multipart field 'file' with an NZB is required"
        if len(upload.data) > MAX_NZB_BYTES:
            return 413, "payload_too_large", f"NZB larger than {MAX_NZB_BYTES >> 20} MiB"
        fields = {p.name: p.data.decode("utf-8", "replace") for p in parts if not p.filename}
        priority = _priority(fields.get("priority"))
        name = upload.filename or "upload.nzb"
        item = yield self._queue.add(
            upload.data, name, fields.get("category") or None, priority, source="api"
        )
        return 201, queue_item_json(item)

    @staticmethod
    def _failed(failure: Failure, request: Request) -> tuple[int, str, str]:
        if failure.check(AltmountError):
            status = getattr(failure.value, "http_status", 400)
            status = status if 400 <= status < 500 else 400
            return status, _CODES.get(status, "bad_request"), failure.getErrorMessage()
        log.error(
            "POST /api/queue/upload failed",
            exc_info=(failure.type, failure.value, failure.getTracebackObject()),
            extra={"request_id": getattr(request, "request_id", "")},
        )
        return 500, "internal", "internal error; see the altmount log"

    @staticmethod
    def _send(answer: tuple, request: Request, finished: list[bool]) -> None:
        if finished[0]:
            return
        if len(answer) == 3:
            status, code, message = answer
            body = json_error(request, status, code, message)
        elif isinstance(answer[1], bytes):  # a refusal, its headers set already
            body = answer[1]
        else:
            status, payload = answer
            request.setResponseCode(status)
            request.setHeader(b"Content-Type", b"application/json")
            request.setHeader(b"Cache-Control", b"no-store")
            body = json.dumps(payload).encode()
        request.setHeader(b"Content-Length", str(len(body)).encode())
        request.write(body)
        request.finish()


def _parts(request: Request) -> list[FormPart]:
    content_type = request.getHeader(b"content-type")
    if request.content is None or content_type is None:
        raise RequestError("send the NZB as multipart/form-data")
    raw = content_type.encode("latin-1") if isinstance(content_type, str) else content_type
    request.content.seek(0)
    body = request.content.read()
    request.content.seek(0)
    return parse_form(body, raw)


def _priority(value: str | None) -> int | None:
    """A REST priority: a SABnzbd number or a name (low, normal, high, force)."""
    if value is None or not value.strip():
        return None
    names = {"low": -1, "normal": 0, "high": 1, "force": 2}
    text = value.strip().lower()
    if text in names:
        return names[text]
    try:
        return int(text)
    except ValueError:
        raise RequestError(f"priority {value!r}: use low, normal, high, force or -1..2") from None


def build_api_resources(
    config: Config,
    queue: QueueService,
    engine: Any,
    ops_routes: OpsRoutes | None = None,
    *,
    auth: Authenticator | None = None,
    links: Any = None,
) -> dict[bytes, Resource]:
    """The `/api` and `/sabnzbd` resources for `build_site(extra_resources=...)`.

    `ops_routes` adds the operations endpoints (health, providers, queue stats, ...).
    `auth` (else the one of `ops_routes`, else a new one) checks every request.
    `links` (a LinkService) keeps the import strategy's category folders.
    """
    if auth is None:
        auth = ops_routes.auth if ops_routes is not None else Authenticator(config)
    auth.provide_api_key(queue.api_key)
    downloader = NZBDownloader(
        engine.reactor,
        max_bytes=config.sabnzbd.addurl_max_mb * 1024 * 1024,
        timeout=config.sabnzbd.addurl_timeout_seconds,
        allow_private=config.sabnzbd.addurl_allow_private,
    )
    sabnzbd = SABnzbdAPI(
        config,
        queue,
        downloader,
        store=getattr(engine, "store", None),
        auth=auth,
        links=links,
    )
    return {
        b"api": ApiRoot(config, queue, sabnzbd, ops_routes),
        b"sabnzbd": SABnzbdRoot(sabnzbd),
    }
