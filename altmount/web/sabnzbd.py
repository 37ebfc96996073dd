"""The SABnzbd-compatible API at /sabnzbd/api (and /api?mode=...), for Sonarr, Radarr, Lidarr.

One `mode=` per call, as SABnzbd's `api.py` dispatches them; answers are
SABnzbd's JSON (or XML with `output=xml`), errors SABnzbd's
`{"status": false, "error": ...}` with HTTP 200, which is what the *arr clients
parse. Auth (`altmount.web.auth`, scheme SABNZBD) is the API key (`apikey`) or
`ma_username`/`ma_password` (the WebDAV credentials); `mode=version` and
`mode=auth` need none, as in SABnzbd; a rate-limited caller gets HTTP 429. The queue does the work; this module only translates.

Even an internal error answers HTTP 200 with `{"status": false, "error": ...}`:
Sonarr shows any status >= 400 as "Unable to connect" and never reads the body.
Cancelled items are left out of the history, as SABnzbd drops them: shown as
Failed, they would make Sonarr blocklist the release and search again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from altmount.config import Config
from altmount.errors import AltmountError, MetadataError
from altmount.queue.service import QueueService
from altmount.web.addurl import NZBDownloader
from altmount.web.auth import SABNZBD, Authenticator, Outcome, Scheme, Verdict, refusal_headers
from altmount.web.multipart import FormPart, is_multipart, parse_form
from altmount.web.sabnzbd_format import (
    SAB_VERSION,
    categories_list,
    category_dirs,
    config_payload,
    report,
    status_payload,
)
from altmount.web.sabnzbd_jobs import NOT_IMPLEMENTED, SAB_HISTORY_STATES, APIError, SABnzbdJobs

__all__ = ["SABnzbdAPI", "SABnzbdRoot", "json_error", "ensure_category_dirs", "SAB_HISTORY_STATES"]

log = logging.getLogger(__name__)

_KEY_INCORRECT = "API Key Incorrect"


def ensure_category_dirs(store: Any, config: Config) -> bool:
    """Create complete_dir and every category folder in the metadata tree, so Sonarr's
    check of `complete_dir` + category `dir` passes before anything is imported.

    True when one was missing; a file in the way is logged, not raised.
    """
    try:
        return bool(store.make_dirs(category_dirs(config)))
    except MetadataError as exc:
        log.error("cannot create the category folders: %s", exc)
        return False


def json_error(request: Request, status: int, code: str, message: str) -> bytes:
    """Set `status` and return the REST error body {"error": {"code", "message"}}."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def _first(request: Request, skip: frozenset[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, values in (request.args or {}).items():
        name = key.decode("utf-8", "replace")
        if name in skip or not values:
            continue
        params[name] = values[0].decode("utf-8", "replace")
    return params


class _Refused(Exception):
    """A call without the right key: SABnzbd's words, HTTP 200 (429 when rate-limited)."""

    def __init__(self, request: Request, verdict: Verdict) -> None:
        if verdict.outcome is Outcome.LIMITED:
            refusal_headers(request, verdict)
            message = verdict.message
        elif verdict.outcome is Outcome.WRONG:
            message = _KEY_INCORRECT
        else:
            message = "API Key Required"
        super().__init__(message)
        self.status = 429 if verdict.outcome is Outcome.LIMITED else 200


class SABnzbdAPI(Resource):
    """Renders one SABnzbd API call; mount with SABnzbdRoot or call from the /api root."""

    isLeaf = True

    def __init__(
        self,
        config: Config,
        queue: QueueService,
        downloader: NZBDownloader,
        *,
        store: Any = None,
        auth: Authenticator | None = None,
        links: Any = None,
    ) -> None:
        super().__init__()
        self._config = config
        self._queue = queue
        self._jobs = SABnzbdJobs(config, queue, downloader)
        self._store = store
        self.auth = auth if auth is not None else Authenticator(config, queue.api_key)
        self._links = links
        self._modes: dict[str, Callable[[dict[str, str], list[FormPart]], Any]] = {
            "version": self._version,
            "auth": lambda params, files: ("auth", "apikey"),
            "get_config": self._get_config,
            "get_cats": self._get_cats,
            "addfile": self._jobs.addfile,
            "addurl": self._jobs.addurl,
            "queue": self._jobs.queue,
            "history": self._jobs.history,
            "retry": self._jobs.retry,
            "pause": self._pause,
            "resume": self._resume,
            "status": self._fullstatus,
            "fullstatus": self._fullstatus,
        }

    def render(self, request: Request) -> bytes | int:
        if not self._config.sabnzbd.enabled:
            return json_error(
                request, 404, "not_found", "the SABnzbd API is disabled (sabnzbd.enabled: false)"
            )
        files = self._files(request)
        params = _first(request, frozenset(part.name for part in files if part.filename))
        output = "xml" if params.get("output", "").lower() == "xml" else "json"
        finished = [False]
        request.notifyFinish().addBoth(lambda _: finished.__setitem__(0, True))
        calling = defer.maybeDeferred(self._call, params, files, request)
        calling.addCallbacks(
            self._ok,
            self._refused,
            callbackArgs=(output,),
            errbackArgs=(output, params.get("mode", "")),
        )
        calling.addCallback(self._send, request, finished)
        return NOT_DONE_YET

    @staticmethod
    def _files(request: Request) -> list[FormPart]:
        content_type = request.getHeader(b"content-type")
        if request.method != b"POST" or not is_multipart(content_type) or request.content is None:
            return []
        request.content.seek(0)
        body = request.content.read()
        request.content.seek(0)
        try:
            return parse_form(
                body,
                content_type.encode("latin-1") if isinstance(content_type, str) else content_type,
            )
        except AltmountError:
            return []

    @defer.inlineCallbacks
    def _call(self, params: dict[str, str], files: list[FormPart], request: Request):
        mode = params.get("mode", "")
        if mode == "auth":
            verdict = yield self.auth.check(request, Scheme.API_KEY)
            known = verdict.allowed or verdict.outcome is Outcome.MISSING
            return "auth", "apikey" if known else "badkey"
        if mode != "version":
            verdict = yield self.auth.check(request, SABNZBD)
            if not verdict.allowed:
                raise _Refused(request, verdict)
        handler = self._modes.get(mode)
        if handler is None:
            raise APIError(NOT_IMPLEMENTED)
        result = yield handler(params, files)
        return result

    @staticmethod
    def _ok(result: tuple[str, Any], output: str) -> tuple[int, bytes, bytes]:
        keyword, data = result
        body, content_type = report(output, keyword=keyword, data=data)
        return 200, body, content_type

    @staticmethod
    def _refused(failure: Failure, output: str, mode: str) -> tuple[int, bytes, bytes]:
        if failure.check(_Refused):
            body, content_type = report(output, error=failure.getErrorMessage())
            return failure.value.status, body, content_type
        if failure.check(APIError, AltmountError):
            body, content_type = report(output, error=failure.getErrorMessage())
            return 200, body, content_type
        log.error(
            "SABnzbd API mode=%s failed",
            mode,
            exc_info=(failure.type, failure.value, failure.getTracebackObject()),
        )
        body, content_type = report(output, error="internal error; see the altmount log")
        return 200, body, content_type

    @staticmethod
    def _send(answer: tuple[int, bytes, bytes], request: Request, finished: list[bool]) -> None:
        if finished[0]:
            return  # the client went away
        code, body, content_type = answer
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", content_type)
        request.setHeader(b"Pragma", b"no-cache")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"Content-Length", str(len(body)).encode())
        request.write(body)
        request.finish()

    # -- simple modes ----------------------------------------------------------------

    def _version(self, params: dict[str, str], files: list[FormPart]) -> tuple[str, Any]:
        return "version", SAB_VERSION

    def _get_config(self, params: dict[str, str], files: list[FormPart]) -> Any:
        if self._links is not None:
            # Sonarr checks complete_dir + category dir (the link folders) right after.
            making = self._links.ensure_category_folders()
            making.addErrback(lambda failure: log.error("%s", failure.getErrorMessage()))
            return making.addCallback(lambda _: self._config_answer(params))
        if self._store is not None and self._config.import_.import_strategy == "none":
            ensure_category_dirs(self._store, self._config)
        return self._config_answer(params)

    def _config_answer(self, params: dict[str, str]) -> tuple[str, Any]:
        data: Any = config_payload(self._config, port=self._config.webdav.port)
        section, keyword = params.get("section"), params.get("keyword")
        if section:
            if section not in data:
                raise APIError("Config item does not exist")
            data = {section: data[section]}
            if keyword and isinstance(data[section], dict):
                if keyword not in data[section]:
                    raise APIError("Config item does not exist")
                data = {section: {keyword: data[section][keyword]}}
        return "config", data

    def _get_cats(self, params: dict[str, str], files: list[FormPart]) -> tuple[str, Any]:
        return "categories", categories_list(self._config)

    def _pause(self, params: dict[str, str], files: list[FormPart]) -> tuple[str, Any]:
        self._queue.pause_processing()
        return "", None

    def _resume(self, params: dict[str, str], files: list[FormPart]) -> tuple[str, Any]:
        self._queue.resume_processing()
        return "", None

    def _fullstatus(self, params: dict[str, str], files: list[FormPart]) -> tuple[str, Any]:
        return "status", status_payload(self._config, paused=self._queue.processing_paused)


class SABnzbdRoot(Resource):
    """The `/sabnzbd` mount: `/sabnzbd/api` is the API, anything else 404."""

    isLeaf = True

    def __init__(self, api: SABnzbdAPI) -> None:
        super().__init__()
        self._api = api

    def render(self, request: Request) -> bytes | int:
        if [part for part in request.postpath if part] == [b"api"]:
            return self._api.render(request)
        return json_error(
            request, 404, "not_found", "no such SABnzbd path; the API is /sabnzbd/api"
        )
