"""The SABnzbd API resource over an in-memory queue: auth, modes, queue/history actions."""

from __future__ import annotations

import dataclasses
import io
import json
import xml.etree.ElementTree as ET
from typing import Any

from twisted.internet import defer
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from altmount.config import Config
from altmount.errors import QueueError, QueueItemNotFound
from altmount.queue.model import (
    TRANSITIONS,
    Progress,
    QueueItem,
    State,
    resolve_priority,
)
from altmount.web.addurl import Download
from altmount.web.sabnzbd import SABnzbdAPI, SABnzbdRoot

KEY = "0123456789abcdef0123456789abcdef"
NZB = b'<?xml version="1.0"?><nzb xmlns="http://www.newzbin.com/DTD/2003/nzb"></nzb>'


class FakeQueue:
    """QueueService's API over a dict, firing every Deferred at once."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.items: dict[int, QueueItem] = {}
        self.nzbs: dict[int, bytes] = {}
        self.processing_paused = False
        self.clock = 1000.0
        self.running: dict[int, Progress] = {}

    def api_key(self) -> defer.Deferred:
        return defer.succeed(KEY)

    def add(self, nzb, nzb_name, category=None, priority=None, source="api", paused=False):
        category_config = self.config.category(category)
        level, paused_by_priority = resolve_priority(priority, category_config.priority)
        item_id = len(self.items) + 1
        self.clock += 1
        item = QueueItem(
            item_id,
            f"SABnzbd_nzo_{item_id:012d}",
            nzb_name,
            category_config.name,
            level,
            State.PAUSED if paused or paused_by_priority else State.PENDING,
            0,
            "",
            self.clock,
            self.clock,
            None,
            None,
            "",
            0,
            source,
        )
        self.items[item_id] = item
        self.nzbs[item_id] = nzb
        return defer.succeed(item)

    def set(self, item_id: int, **changes: Any) -> QueueItem:
        self.items[item_id] = dataclasses.replace(self.items[item_id], **changes)
        return self.items[item_id]

    def get_by_nzo(self, nzo_id: str) -> defer.Deferred:
        for item in self.items.values():
            if item.nzo_id == nzo_id:
                return defer.succeed(item)
        return defer.fail(QueueItemNotFound(f"no item {nzo_id}"))

    def _matching(self, states, search, category):
        found = [
            i
            for i in self.items.values()
            if (states is None or i.state in states)
            and (not search or search.lower() in i.nzb_name.lower())
            and (not category or i.category.lower() == category.lower())
        ]
        return sorted(found, key=lambda i: (-i.priority, i.created_at))

    def list(
        self,
        states=None,
        search=None,
        category=None,
        offset=0,
        limit=50,
        sort="created_at",
        descending=True,
    ):
        return defer.succeed(self._matching(states, search, category)[offset : offset + limit])

    def count(self, states=None, search=None, category=None):
        return defer.succeed(len(self._matching(states, search, category)))

    def _move(self, item_id: int, new: State) -> defer.Deferred:
        old = self.items[item_id].state
        if new not in TRANSITIONS[old]:
            return defer.fail(QueueError(f"item {item_id} is {old}"))
        return defer.succeed(self.set(item_id, state=new))

    def pause(self, item_id):
        return self._move(item_id, State.PAUSED)

    def resume(self, item_id):
        return self._move(item_id, State.PENDING)

    def retry(self, item_id):
        return self._move(item_id, State.PENDING)

    def delete(self, item_id):
        del self.items[item_id]
        return defer.succeed(None)

    def progress(self) -> dict[int, Progress]:
        return dict(self.running)

    def pause_processing(self) -> None:
        self.processing_paused = True

    def resume_processing(self) -> None:
        self.processing_paused = False


class FakeDownloader:
    """Answers addurl fetches from a dict of URL → Download."""

    def __init__(self) -> None:
        self.downloads: dict[str, Download] = {}

    def fetch(self, url: str) -> defer.Deferred:
        return defer.succeed(self.downloads[url])


def _config(**sabnzbd: Any) -> Config:
    base = Config()
    options = {"enabled": True, "mount_dir": "/mnt/am", **sabnzbd}
    return dataclasses.replace(base, sabnzbd=dataclasses.replace(base.sabnzbd, **options))


def _setup(**sabnzbd: Any) -> tuple[SABnzbdAPI, FakeQueue, FakeDownloader]:
    config = _config(**sabnzbd)
    queue = FakeQueue(config)
    downloader = FakeDownloader()
    return SABnzbdAPI(config, queue, downloader), queue, downloader  # type: ignore[arg-type]


def _call(
    api: SABnzbdAPI,
    params: dict[str, str],
    *,
    body: bytes | None = None,
    content_type: bytes | None = None,
    postpath: list[bytes] | None = None,
    resource: Any = None,
) -> DummyRequest:
    request = DummyRequest(postpath or [])
    request.method = b"POST" if body is not None else b"GET"
    for key, value in params.items():
        request.addArg(key.encode(), value.encode())
    request.content = io.BytesIO(body or b"")
    if content_type is not None:
        request.requestHeaders.setRawHeaders(b"content-type", [content_type])
    result = (resource or api).render(request)
    if result != NOT_DONE_YET:
        request.write(result)
        request.finish()
    assert request.finished == 1
    return request


def _json(request: DummyRequest) -> Any:
    return json.loads(b"".join(request.written))


def _multipart(field: str, filename: str, data: bytes) -> tuple[bytes, bytes]:
    boundary = b"----altmountboundary"
    body = (
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="'
        + field.encode()
        + b'"; filename="'
        + filename.encode()
        + b'"\r\nContent-Type: application/x-nzb\r\n\r\n'
        + data
        + b"\r\n--"
        + boundary
        + b"--\r\n"
    )
    return body, b"multipart/form-data; boundary=" + boundary


def test_version_needs_no_key() -> None:
    """mode=version answers without an API key, as SABnzbd does (Sonarr's first call)."""
    api, _, _ = _setup()
    assert _json(_call(api, {"mode": "version"})) == {"version": "4.3.0"}


def test_missing_key_is_sabnzbd_error() -> None:
    """No key: HTTP 200 with SABnzbd's {"status": false, "error": "API Key Required"}."""
    api, _, _ = _setup()
    request = _call(api, {"mode": "queue"})
    assert request.responseCode in (None, 200)
    assert _json(request) == {"status": False, "error": "API Key Required"}


def test_wrong_key_is_incorrect() -> None:
    """A wrong key gets "API Key Incorrect" (Sonarr's test looks for exactly this)."""
    api, _, _ = _setup()
    assert _json(_call(api, {"mode": "get_config", "apikey": "nope"}))["error"] == (
        "API Key Incorrect"
    )


def test_ma_username_password_auth() -> None:
    """ma_username/ma_password with the WebDAV credentials work; wrong ones do not."""
    api, _, _ = _setup()
    ok = _call(api, {"mode": "get_cats", "ma_username": "usenet", "ma_password": "usenet"})
    assert _json(ok) == {"categories": ["*", "movies", "tv"]}
    bad = _call(api, {"mode": "get_cats", "ma_username": "usenet", "ma_password": "x"})
    assert _json(bad)["status"] is False


def test_disabled_is_404() -> None:
    """With sabnzbd.enabled false the API answers 404 in JSON."""
    api, _, _ = _setup(enabled=False)
    request = _call(api, {"mode": "version"})
    assert request.responseCode == 404
    assert _json(request)["error"]["code"] == "not_found"


def test_unknown_mode_not_implemented() -> None:
    """An unknown mode gets SABnzbd's "not implemented" error."""
    api, _, _ = _setup()
    assert _json(_call(api, {"mode": "shutdown", "apikey": KEY}))["error"] == "not implemented"


def test_get_config_and_section() -> None:
    """get_config returns misc and categories; section/keyword narrow it down."""
    api, _, _ = _setup()
    config = _json(_call(api, {"mode": "get_config", "apikey": KEY}))["config"]
    assert config["misc"]["complete_dir"] == "/mnt/am/complete"
    assert {c["name"] for c in config["categories"]} == {"*", "movies", "tv"}
    narrowed = _json(
        _call(
            api, {"mode": "get_config", "apikey": KEY, "section": "misc", "keyword": "complete_dir"}
        )
    )
    assert narrowed == {"config": {"misc": {"complete_dir": "/mnt/am/complete"}}}


def test_addfile_multipart_name_field() -> None:
    """addfile with the NZB in field "name" enqueues it under its file name, category, priority."""
    api, queue, _ = _setup()
    body, content_type = _multipart("name", "Show.S01E01.nzb", NZB)
    request = _call(
        api,
        {"mode": "addfile", "apikey": KEY, "cat": "tv", "priority": "1"},
        body=body,
        content_type=content_type,
    )
    answer = _json(request)
    assert answer["status"] is True and len(answer["nzo_ids"]) == 1
    item = queue.items[1]
    assert (item.nzb_name, item.category, int(item.priority), item.source) == (
        "Show.S01E01.nzb",
        "tv",
        1,
        "sabnzbd",
    )
    assert queue.nzbs[1] == NZB


def test_addfile_nzbfile_field_and_nzbname() -> None:
    """The "nzbfile" field works too, and nzbname renames the job."""
    api, queue, _ = _setup()
    body, content_type = _multipart("nzbfile", "x.nzb", NZB)
    _call(
        api,
        {"mode": "addfile", "apikey": KEY, "nzbname": "Better Name"},
        body=body,
        content_type=content_type,
    )
    assert queue.items[1].nzb_name == "Better Name.nzb"
    assert queue.items[1].category == "Default"


def test_addfile_password_parameter() -> None:
    """SABnzbd's `password` parameter travels with the job as `{{password}}` in its name,
    and the queue shows the name without it."""
    api, queue, _ = _setup()
    body, content_type = _multipart("name", "Film.NZB", NZB)
    _call(
        api,
        {"mode": "addfile", "apikey": KEY, "password": "s3cret"},
        body=body,
        content_type=content_type,
    )
    assert queue.items[1].nzb_name == "Film{{s3cret}}.NZB"
    slots = _json(_call(api, {"mode": "queue", "apikey": KEY}))["queue"]["slots"]
    assert slots[0]["filename"] == "Film"


def test_addfile_paused_priority() -> None:
    """priority=-2 adds the item paused, as SABnzbd does."""
    api, queue, _ = _setup()
    body, content_type = _multipart("name", "a.nzb", NZB)
    _call(
        api,
        {"mode": "addfile", "apikey": KEY, "priority": "-2"},
        body=body,
        content_type=content_type,
    )
    assert queue.items[1].state == State.PAUSED


def test_addfile_without_file() -> None:
    """addfile with no upload is SABnzbd's "expects one parameter"."""
    api, _, _ = _setup()
    assert _json(_call(api, {"mode": "addfile", "apikey": KEY}))["error"] == (
        "expects one parameter"
    )


def test_addfile_bad_priority() -> None:
    """A priority that is not a SABnzbd number is refused with a reason."""
    api, _, _ = _setup()
    body, content_type = _multipart("name", "a.nzb", NZB)
    answer = _json(
        _call(
            api,
            {"mode": "addfile", "apikey": KEY, "priority": "7"},
            body=body,
            content_type=content_type,
        )
    )
    assert answer["status"] is False and "priority" in answer["error"]


def test_addurl_enqueues_download() -> None:
    """addurl fetches through the downloader and enqueues with the served file name."""
    api, queue, downloader = _setup()
    downloader.downloads["https://indexer.example/get/1"] = Download(NZB, "Movie.2020.nzb")
    answer = _json(
        _call(
            api,
            {
                "mode": "addurl",
                "apikey": KEY,
                "name": "https://indexer.example/get/1",
                "cat": "movies",
            },
        )
    )
    assert answer["status"] is True
    assert (queue.items[1].nzb_name, queue.items[1].category, queue.items[1].source) == (
        "Movie.2020.nzb",
        "movies",
        "url",
    )


def _add(queue: FakeQueue, name: str, category: str = "tv", **changes: Any) -> QueueItem:
    item = queue.add(NZB, name, category).result
    return queue.set(item.id, **changes) if changes else item


def test_queue_lists_active_items_only() -> None:
    """mode=queue lists pending/processing/paused items with SABnzbd slot fields."""
    api, queue, _ = _setup()
    _add(queue, "a.nzb")
    _add(queue, "b.nzb", state=State.PROCESSING)
    _add(queue, "c.nzb", state=State.COMPLETED)
    answer = _json(_call(api, {"mode": "queue", "apikey": KEY, "start": "0", "limit": "0"}))
    slots = answer["queue"]["slots"]
    assert sorted(s["filename"] for s in slots) == ["a", "b"]
    assert answer["queue"]["noofslots"] == 2 and answer["queue"]["status"] == "Downloading"


def test_queue_delete_pause_resume() -> None:
    """name=delete|pause|resume act on the nzo_ids in value and report which."""
    api, queue, _ = _setup()
    first, second = _add(queue, "a.nzb"), _add(queue, "b.nzb")
    paused = _json(
        _call(api, {"mode": "queue", "apikey": KEY, "name": "pause", "value": first.nzo_id})
    )
    assert paused == {"status": True, "nzo_ids": [first.nzo_id]}
    assert queue.items[first.id].state == State.PAUSED
    _call(api, {"mode": "queue", "apikey": KEY, "name": "resume", "value": first.nzo_id})
    assert queue.items[first.id].state == State.PENDING
    deleted = _json(
        _call(
            api,
            {
                "mode": "queue",
                "apikey": KEY,
                "name": "delete",
                "value": f"{first.nzo_id},{second.nzo_id}",
            },
        )
    )
    assert deleted == {"status": True, "nzo_ids": [first.nzo_id, second.nzo_id]}
    assert queue.items == {}


def test_queue_delete_unknown_id() -> None:
    """Deleting an unknown nzo_id reports status false and no ids."""
    api, _, _ = _setup()
    answer = _json(
        _call(
            api, {"mode": "queue", "apikey": KEY, "name": "delete", "value": "SABnzbd_nzo_nothere"}
        )
    )
    assert answer == {"status": False, "nzo_ids": []}


def test_global_pause_resume() -> None:
    """mode=pause/resume switch the processor; the queue reports paused."""
    api, queue, _ = _setup()
    assert _json(_call(api, {"mode": "pause", "apikey": KEY})) == {"status": True}
    assert queue.processing_paused
    assert _json(_call(api, {"mode": "queue", "apikey": KEY}))["queue"]["paused"] is True
    _call(api, {"mode": "resume", "apikey": KEY})
    assert not queue.processing_paused


def test_history_completed_and_failed() -> None:
    """mode=history lists completed and failed items with storage under the mount."""
    api, queue, _ = _setup()
    _add(
        queue,
        "Show.S01E01.nzb",
        state=State.COMPLETED,
        target_path="/complete/tv/Show.S01E01",
        size=1000,
        completed_at=2000.0,
    )
    _add(queue, "Bad.nzb", state=State.FAILED, error="NZB line 3: not well-formed XML")
    _add(queue, "Waiting.nzb")
    history = _json(_call(api, {"mode": "history", "apikey": KEY, "limit": "10"}))["history"]
    by_name = {s["nzb_name"]: s for s in history["slots"]}
    assert set(by_name) == {"Show.S01E01.nzb", "Bad.nzb"}
    assert by_name["Show.S01E01.nzb"]["storage"] == "/mnt/am/complete/tv/Show.S01E01"
    assert by_name["Show.S01E01.nzb"]["status"] == "Completed"
    assert by_name["Bad.nzb"]["fail_message"] == "NZB line 3: not well-formed XML"
    assert history["noofslots"] == 2


def test_history_filters() -> None:
    """category, nzo_ids, start and limit narrow the history; unknown categories match none."""
    api, queue, _ = _setup()
    tv = _add(queue, "a.nzb", "tv", state=State.COMPLETED, completed_at=2000.0)
    _add(queue, "b.nzb", "movies", state=State.COMPLETED, completed_at=2001.0)
    only_tv = _json(_call(api, {"mode": "history", "apikey": KEY, "category": "tv"}))
    assert [s["nzo_id"] for s in only_tv["history"]["slots"]] == [tv.nzo_id]
    by_id = _json(_call(api, {"mode": "history", "apikey": KEY, "nzo_ids": tv.nzo_id}))
    assert [s["nzo_id"] for s in by_id["history"]["slots"]] == [tv.nzo_id]
    none = _json(_call(api, {"mode": "history", "apikey": KEY, "category": "nosuch"}))
    assert none["history"]["slots"] == [] and none["history"]["noofslots"] == 0
    page = _json(_call(api, {"mode": "history", "apikey": KEY, "start": "1", "limit": "1"}))
    assert len(page["history"]["slots"]) == 1 and page["history"]["noofslots"] == 2


def test_history_delete_one_and_failed() -> None:
    """name=delete removes the given ids, or every failed item with value=failed."""
    api, queue, _ = _setup()
    done = _add(queue, "a.nzb", state=State.COMPLETED)
    _add(queue, "b.nzb", state=State.FAILED, error="x")
    _add(queue, "c.nzb", state=State.FAILED, error="y")
    _call(api, {"mode": "history", "apikey": KEY, "name": "delete", "value": "failed"})
    assert [i.nzb_name for i in queue.items.values()] == ["a.nzb"]
    _call(
        api,
        {
            "mode": "history",
            "apikey": KEY,
            "name": "delete",
            "value": done.nzo_id,
            "del_files": "1",
        },
    )
    assert queue.items == {}


def test_retry_failed_item() -> None:
    """mode=retry puts a failed item back to pending and returns its nzo_id."""
    api, queue, _ = _setup()
    failed = _add(queue, "a.nzb", state=State.FAILED, error="timeout")
    answer = _json(_call(api, {"mode": "retry", "apikey": KEY, "value": failed.nzo_id}))
    assert answer == {"status": True, "nzo_id": failed.nzo_id}
    assert queue.items[failed.id].state == State.PENDING


def test_fullstatus_completedir() -> None:
    """fullstatus carries completedir under "status" (Sonarr's SabnzbdFullStatusResponse)."""
    api, _, _ = _setup()
    status = _json(_call(api, {"mode": "fullstatus", "apikey": KEY, "skip_dashboard": "1"}))
    assert status["status"]["completedir"] == "/mnt/am/complete"


def test_xml_output() -> None:
    """output=xml answers SABnzbd's XML."""
    api, queue, _ = _setup()
    _add(queue, "a.nzb")
    request = _call(api, {"mode": "queue", "apikey": KEY, "output": "xml"})
    root = ET.fromstring(b"".join(request.written))
    assert root.tag == "queue" and root.find("slots/slot/filename").text == "a"


def test_internal_error_is_not_a_traceback() -> None:
    """An unexpected exception answers 200 with a SABnzbd error (Sonarr reads no body of a
    status >= 400), no traceback text."""
    api, queue, _ = _setup()

    def broken(*args: Any, **kwargs: Any) -> defer.Deferred:
        return defer.fail(RuntimeError("secret internals"))

    queue.list = broken  # type: ignore[method-assign]
    queue.count = broken  # type: ignore[method-assign]
    request = _call(api, {"mode": "queue", "apikey": KEY})
    assert request.responseCode == 200
    body = b"".join(request.written)
    assert b"secret internals" not in body and b"Traceback" not in body
    assert json.loads(body)["status"] is False


def test_sabnzbd_root_routes_only_api() -> None:
    """/sabnzbd/api reaches the API; other /sabnzbd paths are 404."""
    api, _, _ = _setup()
    root = SABnzbdRoot(api)
    ok = _call(api, {"mode": "version"}, postpath=[b"api"], resource=root)
    assert _json(ok) == {"version": "4.3.0"}
    missing = _call(api, {"mode": "version"}, postpath=[b"other"], resource=root)
    assert missing.responseCode == 404
