"""The SABnzbd API as Sonarr/Radarr drive it, over the real queue service and stores.

Sonarr cannot run here (no .NET), so each request is built the way its
`SabnzbdProxy.cs` and `HttpRequestBuilder` build it (read from Sonarr's source,
`src/NzbDrone.Core/Download/Clients/Sabnzbd/`), and each answer is checked the
way its Newtonsoft converters would read it (`sonarr_*` helpers below).
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from decimal import Decimal
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from altmount.config import CategoryConfig, Config
from altmount.errors import ImportFailed
from altmount.importer import ImportResult
from altmount.metadata import MetadataStore
from altmount.queue import QueueService, QueueStore, State
from altmount.testing.articles import post_release
from altmount.web.multipart import parse_form
from altmount.web.sabnzbd import SABnzbdAPI

KEY = "0123456789abcdef0123456789abcdef"
TITLE = "Shōgun.2024.S01E01.1080p.WEB.h264-EDITH"
RELEASE = post_release({"e01.mkv": bytes(range(256)) * 700}, article_size=50_000, salt="sonarr")
#: Sonarr's boundary: 29 dashes and DateTime.Now.Ticks in hex, sent unquoted.
BOUNDARY = "-" * 29 + "8dc5f2a1b3c4d5e"
#: SABnzbd's status words (Sonarr's SabnzbdDownloadStatus); any other word fails the queue.
SAB_STATUS = {
    "Grabbing", "Queued", "Paused", "Checking", "Downloading", "QuickCheck", "Verifying",
    "Repairing", "Fetching", "Extracting", "Moving", "Running", "Completed", "Failed",
    "Deleted", "Propagating",
}  # fmt: skip


class SyncReactor(MemoryReactorClock):
    """A MemoryReactorClock whose callFromThread runs the call at once."""

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


class SyncPool:
    """A thread pool stand-in that runs each call inline."""

    def start(self) -> None:
        """Nothing to start."""

    def stop(self) -> None:
        """Nothing to stop."""

    def callInThreadWithCallback(self, on_result, f, *args, **kwargs):
        try:
            value = f(*args, **kwargs)
        except BaseException:
            on_result(False, Failure())
        else:
            on_result(True, value)


class Importer:
    """Records import calls; the test fires each one and reports its progress."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, defer.Deferred]] = []

    def import_nzb(self, data, nzb_filename, category=None, progress=None, name_from_file=False):
        d: defer.Deferred = defer.Deferred()
        assert name_from_file  # a SABnzbd job is named after its NZB's file name
        self.calls.append((nzb_filename, progress, d))
        return d


def _config(**imports: Any) -> Config:
    base = Config()
    return dataclasses.replace(
        base,
        api=dataclasses.replace(base.api, key_override=KEY),
        import_=dataclasses.replace(base.import_, **imports),
        sabnzbd=dataclasses.replace(
            base.sabnzbd,
            enabled=True,
            mount_dir="/mnt/altmount",
            categories=[
                CategoryConfig("Default", 0, 0, "complete"),
                CategoryConfig("tv", 1, 0, "tv/hd"),
                CategoryConfig("movies", 2, 0, "movies"),
            ],
        ),
    )


@pytest.fixture
def sab(tmp_path):
    """(api, queue service, importer, metadata store, reactor), all real but the importer."""
    config = _config()
    reactor = SyncReactor()
    importer = Importer()
    queue = QueueService(
        reactor, QueueStore(tmp_path / "q.db"), importer, config, threadpool=SyncPool()
    )
    store = MetadataStore(tmp_path / "meta", map_size=16 << 20)
    api = SABnzbdAPI(config, queue, None, store=store)  # type: ignore[arg-type]
    yield api, queue, importer, store, reactor
    for _, _, d in importer.calls:
        if not d.called:
            d.errback(ImportFailed("test over"))
    queue.stop()
    store.close()


def sonarr_body(filename: str, nzb: bytes) -> tuple[bytes, bytes]:
    """Sonarr's HttpRequestBuilder form upload: one part, raw UTF-8 file name, unquoted boundary."""
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="name"; filename="{filename}"\r\n'
        "Content-Type: application/x-nzb\r\n\r\n"
    ).encode()
    body = head + nzb + f"\r\n--{BOUNDARY}--\r\n".encode()
    return body, f"multipart/form-data; boundary={BOUNDARY}".encode()


def call(api: SABnzbdAPI, query: str, body: bytes | None = None, ctype: bytes = b"") -> Any:
    """One Sonarr request (`{base}/api?mode=...&apikey=K&output=json`); its JSON answer.

    Sonarr shows any status >= 400 as "Unable to connect", so every answer must be 200.
    """
    request = DummyRequest([])
    request.method = b"POST" if body is not None else b"GET"
    for pair in f"{query}&apikey={KEY}&output=json".split("&"):
        key, _, value = pair.partition("=")
        request.addArg(key.encode(), value.encode())
    request.content = io.BytesIO(body or b"")
    if ctype:
        request.requestHeaders.setRawHeaders(b"content-type", [ctype])
    rendered = api.render(request)
    if rendered != NOT_DONE_YET:
        request.write(rendered)
        request.finish()
    assert request.finished == 1
    assert request.responseCode in (None, 200)
    text = b"".join(request.written)
    assert text not in (b"", b"null")  # an empty or null body crashes Sonarr
    return json.loads(text)


def sonarr_timespan(text: str) -> int:
    """Sonarr's SabnzbdQueueTimeConverter: "H:M:S" or "D:H:M:S" integers, else it throws."""
    parts = [int(part) for part in text.split(":")]
    assert len(parts) in (3, 4), text
    days, hours, minutes, seconds = ([0] + parts)[-4:]
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def sonarr_queue(answer: Any) -> list[dict[str, Any]]:
    """SabnzbdQueue as Newtonsoft reads it; raises where Sonarr's parse would."""
    queue = answer["queue"]
    assert isinstance(queue["paused"], bool) or queue["paused"] in (0, 1)
    for slot in queue["slots"]:
        assert slot["status"] in SAB_STATUS
        sonarr_timespan(slot["timeleft"])
        int(slot["percentage"]), int(slot["index"])
        Decimal(slot["mb"]), Decimal(slot["mbleft"])
        assert isinstance(slot["nzo_id"], str) and isinstance(slot["filename"], str)
    return queue["slots"]


def sonarr_history(answer: Any) -> list[dict[str, Any]]:
    """SabnzbdHistory as Newtonsoft reads it: bytes a long, status an enum name."""
    for slot in answer["history"]["slots"]:
        assert slot["status"] in SAB_STATUS
        assert isinstance(slot["bytes"], int) and isinstance(slot["download_time"], int)
        assert isinstance(slot["nzo_id"], str) and isinstance(slot["name"], str)
    return answer["history"]["slots"]


def add(api: SABnzbdAPI, title: str = TITLE, category: str = "tv") -> str:
    """Sonarr's addfile: POST ?mode=addfile&cat=C&priority=-100; fires with nzo_ids[0]."""
    body, ctype = sonarr_body(f"{title}.nzb", RELEASE.nzb)
    answer = call(api, f"mode=addfile&cat={category}&priority=-100", body, ctype)
    assert answer["status"] is True
    assert isinstance(answer["nzo_ids"], list) and all(
        isinstance(i, str) for i in answer["nzo_ids"]
    )
    return answer["nzo_ids"][0]


def announced_bytes() -> int:
    return sum(int(b) for b in re.findall(rb'bytes="(\d+)"', RELEASE.nzb))


def test_sonarr_form_body_keeps_the_utf8_filename() -> None:
    """Sonarr's exact upload (unquoted 29-dash boundary, raw UTF-8 filename) parses to one
    part named "name" with the title intact, not U+FFFD."""
    body, ctype = sonarr_body(f"{TITLE}.nzb", RELEASE.nzb)
    (part,) = parse_form(body, ctype)
    assert (part.name, part.filename, part.content_type) == (
        "name",
        f"{TITLE}.nzb",
        "application/x-nzb",
    )
    assert part.data == RELEASE.nzb


def test_addfile_queue_shows_title_and_nzb_size_at_once(sab) -> None:
    """After addfile, `queue&start=0&limit=0&category=tv` lists the job under its UTF-8 title
    with the NZB's size (not 0), as SABnzbd does before downloading."""
    api, _, _, _, _ = sab
    nzo_id = add(api)
    (slot,) = sonarr_queue(call(api, "mode=queue&start=0&limit=0&category=tv"))
    assert (slot["nzo_id"], slot["filename"], slot["cat"]) == (nzo_id, TITLE, "tv")
    assert slot["status"] == "Queued" and slot["percentage"] == "0"
    assert Decimal(slot["mb"]) == Decimal(f"{announced_bytes() / (1 << 20):.2f}") > 0
    assert slot["mbleft"] == slot["mb"]
    assert sonarr_queue(call(api, "mode=queue&start=0&limit=0&category=movies")) == []


def test_queue_progress_while_importing(sab) -> None:
    """A running import shows its share of stages done, the bytes left and an H:M:S estimate."""
    api, queue, importer, _, reactor = sab
    add(api)
    queue.start()
    (_, progress, _) = importer.calls[0]
    reactor.advance(6)
    progress(0.6)
    (slot,) = sonarr_queue(call(api, "mode=queue&start=0&limit=0&category="))
    assert slot["status"] == "Downloading" and slot["percentage"] == "60"
    assert Decimal(slot["mbleft"]) == Decimal(f"{announced_bytes() * 0.4 / (1 << 20):.2f}")
    assert sonarr_timespan(slot["timeleft"]) == 4
    answer = call(api, "mode=queue&start=0&limit=0&category=")
    assert sonarr_timespan(answer["queue"]["timeleft"]) == 4


def test_history_paging_names_the_job_like_sabnzbd(sab) -> None:
    """`history&start=0&limit=60&category=tv` reports the completed job under the name Sonarr
    sent, with integer bytes and the storage folder named like it under the mount."""
    api, queue, importer, _, _ = sab
    nzo_id = add(api)
    queue.start()
    files = (dataclasses.make_dataclass("R", ["size"])(1234),)
    folder = f"/complete/tv/hd/{TITLE}"
    importer.calls[0][2].callback(ImportResult(folder, files, (), 1.0))
    (slot,) = sonarr_history(call(api, "mode=history&start=0&limit=60&category=tv"))
    assert (slot["nzo_id"], slot["name"], slot["status"], slot["bytes"]) == (
        nzo_id,
        TITLE,
        "Completed",
        1234,
    )
    assert slot["storage"] == f"/mnt/altmount{folder}"
    assert slot["storage"].rsplit("/", 1)[1] == slot["name"]  # Sonarr's output-folder match
    assert sonarr_queue(call(api, "mode=queue&start=0&limit=0&category=tv")) == []


def test_cancelled_items_are_dropped_not_failed(sab) -> None:
    """A cancelled job leaves the queue and never shows in the history (Sonarr would blocklist
    a Failed one); a real failure still shows as Failed with its reason."""
    api, queue, importer, _, _ = sab
    cancelled = add(api, "Cancel.Me.S01E01")
    failing = add(api, "Broken.S01E02")
    item = queue.get_by_nzo(cancelled)
    item.addCallback(lambda found: queue.cancel(found.id))
    queue.start()
    failed_call = next(d for name, _, d in importer.calls if name.startswith("Broken"))
    failed_call.errback(ImportFailed("Broken.S01E02.nzb: 3 of 9 articles missing"))
    slots = sonarr_history(call(api, "mode=history&start=0&limit=60&category=tv"))
    assert [(s["nzo_id"], s["status"]) for s in slots] == [(failing, "Failed")]
    assert "articles missing" in slots[0]["fail_message"]
    assert call(api, "mode=history&start=0&limit=60&category=tv")["history"]["noofslots"] == 1
    assert sonarr_queue(call(api, "mode=queue&start=0&limit=0&category=tv")) == []


def test_history_delete_as_sonarr_sends_it(sab) -> None:
    """`history&name=delete&del_files=1&value=ID&archive=1` removes the job: status true."""
    api, queue, importer, _, _ = sab
    nzo_id = add(api)
    queue.start()
    importer.calls[0][2].errback(ImportFailed("gone"))
    answer = call(api, f"mode=history&name=delete&del_files=1&value={nzo_id}&archive=0")
    assert answer == {"status": True, "nzo_ids": [nzo_id]}
    assert sonarr_history(call(api, "mode=history&start=0&limit=60&category=tv")) == []


def test_queue_delete_as_sonarr_sends_it(sab) -> None:
    """`queue&name=delete&del_files=1&value=ID` drops a queued job and reports its id."""
    api, _, _, _, _ = sab
    nzo_id = add(api)
    answer = call(api, f"mode=queue&name=delete&del_files=1&value={nzo_id}")
    assert answer == {"status": True, "nzo_ids": [nzo_id]}
    assert sonarr_queue(call(api, "mode=queue&start=0&limit=0&category=tv")) == []


def test_get_config_category_dirs_exist_and_retention(sab) -> None:
    """get_config reports each category's real folder (`tv/hd` whole), creates the folders
    in the tree before any import, and states the history retention in days."""
    api, _, _, store, _ = sab
    config = call(api, "mode=get_config")["config"]
    dirs = {c["name"]: c["dir"] for c in config["categories"]}
    assert dirs == {"*": "complete", "tv": "tv/hd", "movies": "movies"}
    for folder in ("/complete/complete", "/complete/tv/hd", "/complete/movies"):
        entry = store.stat(folder)
        assert entry is not None and entry.is_dir, folder
    misc = config["misc"]
    assert misc["complete_dir"] == "/mnt/altmount/complete"
    assert (misc["history_retention"], misc["history_retention_option"]) == ("30d", "days-delete")
    assert misc["history_retention_number"] == 30


def test_internal_error_answers_200_with_status_false(sab) -> None:
    """An unexpected exception is {"status": false, "error": ...} with HTTP 200 (Sonarr shows
    the text; with a 500 it would say "Unable to connect")."""
    api, queue, _, _, _ = sab

    def broken(*args: Any, **kwargs: Any) -> defer.Deferred:
        return defer.fail(RuntimeError("internals"))

    queue.count = broken  # type: ignore[method-assign]
    answer = call(api, "mode=queue&start=0&limit=0&category=tv")
    assert answer["status"] is False and "internals" not in answer["error"]


def test_unknown_priority_word_and_state_are_named(sab) -> None:
    """A priority Sonarr never sends is refused with a message naming it (HTTP 200)."""
    api, _, _, _, _ = sab
    body, ctype = sonarr_body("x.nzb", RELEASE.nzb)
    answer = call(api, "mode=addfile&cat=tv&priority=urgent", body, ctype)
    assert answer["status"] is False and "urgent" in answer["error"]
    assert State.CANCELLED.value == "cancelled"
