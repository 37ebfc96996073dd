"""The SABnzbd-compatible API at /sabnzbd/api (and /api?mode=...), for Sonarr, Radarr, Lidarr.

One `mode=` per call, as SABnzbd's `api.py` dispatches them; answers are
SABnzbd's JSON (or XML with `output=xml`), errors SABnzbd's
`{"status": false, "error": ...}` with HTTP 200, which is what the *arr clients
parse. Auth is the API key (`apikey`) or `ma_username`/`ma_password` (the WebDAV
credentials), compared in constant time; `mode=version` and `mode=auth` need
none, as in SABnzbd. The queue does the work; this module only translates.

Even an internal error answers HTTP 200 with `{"status": false, "error": ...}`:
Sonarr shows any status >= 400 as "Unable to connect" and never reads the body.
Cancelled items are left out of the history, as SABnzbd drops them: shown as
Failed, they would make Sonarr blocklist the release and search again.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from altmount.config import Config
from altmount.errors import AltmountError, MetadataError, QueueError, QueueItemNotFound
from altmount.importer.layout import name_password
from altmount.queue.model import ACTIVE_STATES, HISTORY_STATES, QueueItem, State
from altmount.queue.service import QueueService
from altmount.web.addurl import NZBDownloader
from altmount.web.auth import auth_required, note_failed_login
from altmount.web.multipart import MAX_NZB_BYTES, FormPart, is_multipart, parse_form
from altmount.web.sabnzbd_format import (
    SAB_VERSION,
    categories_list,
    category_dirs,
    config_payload,
    find_category,
    history_payload,
    queue_payload,
    report,
    status_payload,
)

__all__ = ["SABnzbdAPI", "SABnzbdRoot", "json_error", "ensure_category_dirs", "SAB_HISTORY_STATES"]

log = logging.getLogger(__name__)

#: Most items one queue/history page lists when the client asks for "all" (limit 0).
MAX_PAGE = 10_000
_PRIORITY_WORDS = {
    "default": -100,
    "duplicate": -3,
    "paused": -2,
    "low": -1,
    "normal": 0,
    "high": 1,
    "force": 2,
}
_NO_VALUE = "expects one parameter"
_KEY_INCORRECT = "API Key Incorrect"
_NOT_IMPLEMENTED = "not implemented"
#: What `mode=history` lists: no cancelled items (SABnzbd drops them).
SAB_HISTORY_STATES: tuple[State, ...] = (State.COMPLETED, State.FAILED)


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


class _APIError(Exception):
    """A SABnzbd-style refusal: {"status": false, "error": message}."""


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


def _ids(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _int(value: str | None, default: int = 0) -> int:
    try:
        return max(0, int(value or default))
    except ValueError:
        return default


def _priority(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    text = value.strip().lower()
    if text in _PRIORITY_WORDS:
        return _PRIORITY_WORDS[text]
    try:
        return int(text)
    except ValueError:
        raise _APIError(f"priority {value!r} is not a SABnzbd priority (-100, -2..2)") from None


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
    ) -> None:
        super().__init__()
        self._config = config
        self._queue = queue
        self._downloader = downloader
        self._store = store
        self._key: str | None = None
        self._modes: dict[str, Callable[[dict[str, str], list[FormPart]], Any]] = {
            "version": self._version,
            "auth": self._auth,
            "get_config": self._get_config,
            "get_cats": self._get_cats,
            "addfile": self._addfile,
            "addurl": self._addurl,
            "queue": self._queue_mode,
            "history": self._history,
            "retry": self._retry,
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
        if mode not in ("version", "auth"):
            problem = yield self._auth_problem(params)
            if problem:
                if problem == _KEY_INCORRECT:  # SABnzbd answers 200, so the site cannot tell
                    note_failed_login(request)
                raise _APIError(problem)
        handler = self._modes.get(mode)
        if handler is None:
            raise _APIError(_NOT_IMPLEMENTED)
        result = yield handler(params, files)
        return result

    @staticmethod
    def _ok(result: tuple[str, Any], output: str) -> tuple[int, bytes, bytes]:
        keyword, data = result
        body, content_type = report(output, keyword=keyword, data=data)
        return 200, body, content_type

    @staticmethod
    def _refused(failure: Failure, output: str, mode: str) -> tuple[int, bytes, bytes]:
        if failure.check(_APIError, AltmountError):
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

    # -- auth ------------------------------------------------------------------------

    @defer.inlineCallbacks
    def _api_key(self):
        if self._key is None:
            self._key = yield self._queue.api_key()
        return self._key

    @defer.inlineCallbacks
    def _auth_problem(self, params: dict[str, str]):
        """None when the call carries a right key or login, else SABnzbd's message."""
        key = params.get("apikey")
        if key:
            expected = yield self._api_key()
            if hmac.compare_digest(key.encode(), expected.encode()):
                return None
            return _KEY_INCORRECT
        user, password = params.get("ma_username"), params.get("ma_password")
        webdav = self._config.webdav
        if (user is not None or password is not None) and auth_required(
            webdav.user, webdav.password
        ):
            user_ok = hmac.compare_digest((user or "").encode(), webdav.user.encode())
            password_ok = hmac.compare_digest((password or "").encode(), webdav.password.encode())
            return None if user_ok and password_ok else _KEY_INCORRECT
        return "API Key Required"

    @defer.inlineCallbacks
    def _auth(self, params: dict[str, str], files: list[FormPart]):
        key = params.get("apikey")
        if not key:
            return "auth", "apikey"
        expected = yield self._api_key()
        return "auth", "apikey" if hmac.compare_digest(
            key.encode(), expected.encode()
        ) else "badkey"

    # -- simple modes ----------------------------------------------------------------

    def _version(self, params: dict[str, str], files: list[FormPart]) -> tuple[str, Any]:
        return "version", SAB_VERSION

    def _get_config(self, params: dict[str, str], files: list[FormPart]) -> tuple[str, Any]:
        if self._store is not None and self._config.import_.import_strategy == "none":
            ensure_category_dirs(self._store, self._config)
        data: Any = config_payload(self._config, port=self._config.webdav.port)
        section, keyword = params.get("section"), params.get("keyword")
        if section:
            if section not in data:
                raise _APIError("Config item does not exist")
            data = {section: data[section]}
            if keyword and isinstance(data[section], dict):
                if keyword not in data[section]:
                    raise _APIError("Config item does not exist")
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

    # -- adding ----------------------------------------------------------------------

    @defer.inlineCallbacks
    def _addfile(self, params: dict[str, str], files: list[FormPart]):
        upload = next((p for p in files if p.name in ("name", "nzbfile") and p.filename), None)
        if upload is None:
            upload = next((p for p in files if p.name in ("name", "nzbfile")), None)
        if upload is None or not upload.data:
            raise _APIError(_NO_VALUE)
        item = yield self._enqueue(
            upload.data, upload.filename or "upload.nzb", params, source="sabnzbd"
        )
        return "", {"status": True, "nzo_ids": [item.nzo_id]}

    @defer.inlineCallbacks
    def _addurl(self, params: dict[str, str], files: list[FormPart]):
        url = params.get("name") or params.get("value")
        if not url:
            raise _APIError(_NO_VALUE)
        download = yield self._downloader.fetch(url)
        item = yield self._enqueue(download.data, download.filename, params, source="url")
        return "", {"status": True, "nzo_ids": [item.nzo_id]}

    def _enqueue(
        self, data: bytes, filename: str, params: dict[str, str], source: str
    ) -> defer.Deferred:
        if len(data) > MAX_NZB_BYTES:
            raise _APIError(f"{filename}: larger than the {MAX_NZB_BYTES >> 20} MiB NZB limit")
        name = params.get("nzbname", "").strip() or filename
        if not name.lower().endswith((".nzb", ".nzb.gz")):
            name += ".nzb"
        password = params.get("password", "").strip()
        if password and not name_password(name)[1]:
            # SABnzbd's `password` parameter: kept the way posters pass one, in the name.
            cut = name.lower().rfind(".nzb")
            name = f"{name[:cut]}{{{{{password}}}}}{name[cut:]}"
        category = params.get("cat") or params.get("category")
        return self._queue.add(
            data, name, category, _priority(params.get("priority")), source=source
        )

    # -- queue -----------------------------------------------------------------------

    @defer.inlineCallbacks
    def _items_by_nzo(self, nzo_ids: list[str], states: tuple[State, ...]):
        found: list[QueueItem] = []
        for nzo_id in nzo_ids:
            try:
                item = yield self._queue.get_by_nzo(nzo_id)
            except QueueItemNotFound:
                continue
            if item.state in states:
                found.append(item)
        return found

    @defer.inlineCallbacks
    def _all(
        self,
        states: tuple[State, ...],
        category: str | None = None,
        search: str | None = None,
        sort: str = "queue",
        descending: bool = False,
    ):
        items = yield self._queue.list(
            states, search or None, category, 0, MAX_PAGE, sort, descending
        )
        return items

    @defer.inlineCallbacks
    def _queue_mode(self, params: dict[str, str], files: list[FormPart]):
        name = params.get("name", "")
        value = params.get("value", "")
        if name == "delete":
            items = yield (
                self._all(ACTIVE_STATES)
                if value.lower() == "all"
                else self._items_by_nzo(_ids(value), ACTIVE_STATES)
            )
            if not items and value.lower() != "all" and not _ids(value):
                raise _APIError(_NO_VALUE)
            removed = yield self._each(items, self._queue.delete)
            return "", {"status": bool(removed), "nzo_ids": removed}
        if name in ("pause", "resume"):
            items = yield self._items_by_nzo(_ids(value), ACTIVE_STATES)
            action = self._queue.pause if name == "pause" else self._queue.resume
            handled = yield self._each(items, action)
            return "", {"status": bool(handled), "nzo_ids": handled}
        if name:
            raise _APIError(_NOT_IMPLEMENTED)
        items, total = yield self._page(params, ACTIVE_STATES, sort="queue", descending=False)
        start, limit = _int(params.get("start")), _int(params.get("limit"))
        payload = queue_payload(
            self._config,
            items,
            total=total,
            start=start,
            limit=limit,
            paused=self._queue.processing_paused,
            progress=self._queue.progress(),
        )
        return "queue", payload

    @defer.inlineCallbacks
    def _each(self, items: list[QueueItem], action: Callable[[int], defer.Deferred]):
        """Apply `action` to each item; the nzo_ids it worked for (illegal changes skipped)."""
        done: list[str] = []
        for item in items:
            try:
                yield action(item.id)
            except QueueError as exc:
                log.info("SABnzbd API: %s", exc)
                continue
            done.append(item.nzo_id)
        return done

    @defer.inlineCallbacks
    def _page(
        self, params: dict[str, str], states: tuple[State, ...], *, sort: str, descending: bool
    ):
        """One page of items in `states` under the call's filters, and the filtered total."""
        start, limit = _int(params.get("start")), _int(params.get("limit"))
        wanted = params.get("cat") or params.get("category")
        category = None
        if wanted:
            found = find_category(self._config, wanted)
            if found is None:
                return [], 0
            category = found.name
        search = params.get("search") or None
        nzo_ids = _ids(params.get("nzo_ids", ""))
        if nzo_ids:
            items = yield self._items_by_nzo(nzo_ids, states)
            items = [i for i in items if category is None or i.category.lower() == category.lower()]
            window = items[start : start + limit] if limit else items[start:]
            return window, len(items)
        total = yield self._queue.count(states, search, category)
        items = yield self._queue.list(
            states, search, category, start, limit or MAX_PAGE, sort, descending
        )
        return items, total

    # -- history ---------------------------------------------------------------------

    @defer.inlineCallbacks
    def _history(self, params: dict[str, str], files: list[FormPart]):
        name = params.get("name", "")
        if name == "delete":
            removed = yield self._history_delete(params.get("value", ""))
            return "", {"status": True, "nzo_ids": removed}
        if name:
            raise _APIError(_NOT_IMPLEMENTED)
        states = SAB_HISTORY_STATES
        if params.get("failed_only", "") in ("1", "true", "True"):
            states = (State.FAILED,)
        items, total = yield self._page(params, states, sort="updated_at", descending=True)
        return "history", history_payload(self._config, items, total=total)

    @defer.inlineCallbacks
    def _history_delete(self, value: str):
        special = value.lower()
        if special in ("all", "failed", "completed"):
            states = {
                "all": HISTORY_STATES,
                "failed": (State.FAILED, State.CANCELLED),
                "completed": (State.COMPLETED,),
            }[special]
            items = yield self._all(states)
        elif _ids(value):
            items = yield self._items_by_nzo(_ids(value), HISTORY_STATES)
        else:
            raise _APIError(_NO_VALUE)
        removed = yield self._each(items, self._queue.delete)
        return removed

    @defer.inlineCallbacks
    def _retry(self, params: dict[str, str], files: list[FormPart]):
        items = yield self._items_by_nzo(_ids(params.get("value", ""))[:1], HISTORY_STATES)
        if not items or items[0].state == State.COMPLETED:
            raise _APIError("item does not exist")
        item = yield self._queue.retry(items[0].id)
        return "", {"status": True, "nzo_id": item.nzo_id}


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
