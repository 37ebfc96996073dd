"""SABnzbd's job modes: addfile/addurl, queue and history listing and deletion, retry.

Each mode takes the call's parameters (first value of each) and its multipart
parts and returns (keyword, data) for `sabnzbd_format.report`, or raises
APIError with SABnzbd's message. `altmount.web.sabnzbd` renders and dispatches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from twisted.internet import defer

from altmount.config import Config
from altmount.errors import QueueError, QueueItemNotFound
from altmount.importer.layout import name_password
from altmount.queue.model import ACTIVE_STATES, HISTORY_STATES, QueueItem, State
from altmount.queue.service import QueueService
from altmount.web.addurl import NZBDownloader
from altmount.web.multipart import MAX_NZB_BYTES, FormPart
from altmount.web.sabnzbd_format import find_category, history_payload, queue_payload

__all__ = [
    "APIError",
    "MAX_PAGE",
    "NO_VALUE",
    "NOT_IMPLEMENTED",
    "SAB_HISTORY_STATES",
    "SABnzbdJobs",
]

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
NO_VALUE = "expects one parameter"
NOT_IMPLEMENTED = "not implemented"
#: What `mode=history` lists: no cancelled items (SABnzbd drops them).
SAB_HISTORY_STATES: tuple[State, ...] = (State.COMPLETED, State.FAILED)


class APIError(Exception):
    """A SABnzbd-style refusal: {"status": false, "error": message}."""


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
        raise APIError(f"priority {value!r} is not a SABnzbd priority (-100, -2..2)") from None


class SABnzbdJobs:
    """The job modes over the queue; `downloader` fetches `addurl` NZBs."""

    def __init__(self, config: Config, queue: QueueService, downloader: NZBDownloader) -> None:
        self._config = config
        self._queue = queue
        self._downloader = downloader

    # -- adding ----------------------------------------------------------------------

    @defer.inlineCallbacks
    def addfile(self, params: dict[str, str], files: list[FormPart]):
        upload = next((p for p in files if p.name in ("name", "nzbfile") and p.filename), None)
        if upload is None:
            upload = next((p for p in files if p.name in ("name", "nzbfile")), None)
        if upload is None or not upload.data:
            raise APIError(NO_VALUE)
        item = yield self._enqueue(
            upload.data, upload.filename or "upload.nzb", params, source="sabnzbd"
        )
        return "", {"status": True, "nzo_ids": [item.nzo_id]}

    @defer.inlineCallbacks
    def addurl(self, params: dict[str, str], files: list[FormPart]):
        url = params.get("name") or params.get("value")
        if not url:
            raise APIError(NO_VALUE)
        download = yield self._downloader.fetch(url)
        item = yield self._enqueue(download.data, download.filename, params, source="url")
        return "", {"status": True, "nzo_ids": [item.nzo_id]}

    def _enqueue(
        self, data: bytes, filename: str, params: dict[str, str], source: str
    ) -> defer.Deferred:
        if len(data) > MAX_NZB_BYTES:
            raise APIError(f"{filename}: larger than the {MAX_NZB_BYTES >> 20} MiB NZB limit")
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
    def queue(self, params: dict[str, str], files: list[FormPart]):
        name = params.get("name", "")
        value = params.get("value", "")
        if name == "delete":
            items = yield (
                self._all(ACTIVE_STATES)
                if value.lower() == "all"
                else self._items_by_nzo(_ids(value), ACTIVE_STATES)
            )
            if not items and value.lower() != "all" and not _ids(value):
                raise APIError(NO_VALUE)
            removed = yield self._each(items, self._queue.delete)
            return "", {"status": bool(removed), "nzo_ids": removed}
        if name in ("pause", "resume"):
            items = yield self._items_by_nzo(_ids(value), ACTIVE_STATES)
            action = self._queue.pause if name == "pause" else self._queue.resume
            handled = yield self._each(items, action)
            return "", {"status": bool(handled), "nzo_ids": handled}
        if name:
            raise APIError(NOT_IMPLEMENTED)
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
    def history(self, params: dict[str, str], files: list[FormPart]):
        name = params.get("name", "")
        if name == "delete":
            removed = yield self._history_delete(params.get("value", ""))
            return "", {"status": True, "nzo_ids": removed}
        if name:
            raise APIError(NOT_IMPLEMENTED)
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
            raise APIError(NO_VALUE)
        removed = yield self._each(items, self._queue.delete)
        return removed

    @defer.inlineCallbacks
    def retry(self, params: dict[str, str], files: list[FormPart]):
        items = yield self._items_by_nzo(_ids(params.get("value", ""))[:1], HISTORY_STATES)
        if not items or items[0].state == State.COMPLETED:
            raise APIError("item does not exist")
        item = yield self._queue.retry(items[0].id)
        return "", {"status": True, "nzo_id": item.nzo_id}
