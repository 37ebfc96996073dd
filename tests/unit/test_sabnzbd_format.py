"""SABnzbd response shapes: the fields and formats Sonarr/Radarr parse."""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET

from hypothesis import given, settings
from hypothesis import strategies as st

from altmount.config import CategoryConfig, Config
from altmount.queue.model import Priority, QueueItem, State
from altmount.web.sabnzbd_format import (
    SAB_VERSION,
    categories_list,
    category_out,
    complete_dir,
    config_payload,
    format_timeleft,
    history_payload,
    history_slot,
    queue_payload,
    queue_slot,
    report,
    status_payload,
    to_units,
)

CONFIG = Config()


def _item(**changes) -> QueueItem:
    base = QueueItem(
        id=7,
        nzo_id="SABnzbd_nzo_abcdefgh1234",
        nzb_name="Show.S01E01.720p.nzb",
        category="tv",
        priority=Priority.HIGH,
        state=State.PENDING,
        attempts=0,
        error="",
        created_at=1000.0,
        updated_at=1000.0,
        started_at=None,
        completed_at=None,
        target_path="",
        size=0,
        source="sabnzbd",
    )
    return dataclasses.replace(base, **changes)


def _mounted(mount: str) -> Config:
    return dataclasses.replace(CONFIG, sabnzbd=dataclasses.replace(CONFIG.sabnzbd, mount_dir=mount))


def _sonarr_timespan(text: str) -> int:
    """Sonarr's SabnzbdQueueTimeConverter: 3 or 4 integer parts, else it throws."""
    parts = [int(p) for p in text.split(":")]
    assert len(parts) in (3, 4), text
    if len(parts) == 4:
        return (parts[0] * 24 + parts[1]) * 3600 + parts[2] * 60 + parts[3]
    return parts[0] * 3600 + parts[1] * 60 + parts[2]


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10**8))
def test_timeleft_parses_back_in_sonarr_format(seconds: int) -> None:
    """Every timeleft string parses with Sonarr's converter to the same number of seconds."""
    assert _sonarr_timespan(format_timeleft(seconds)) == seconds


def test_timeleft_negative_is_zero() -> None:
    """A negative estimate is shown as 0:00:00, never with a minus sign."""
    assert format_timeleft(-5) == "0:00:00"


def test_to_units_like_sabnzbd() -> None:
    """Byte counts are shown with SABnzbd's units and one decimal."""
    assert to_units(0) == "0 B"
    assert to_units(1023) == "1023 B"
    assert to_units(1536) == "1.5 KB"
    assert to_units(3 * 1024**3) == "3.0 GB"


def test_report_json_shapes() -> None:
    """Errors, bare success, keyword data and keyword-less data match SABnzbd's report()."""
    assert json.loads(report("json", error="API Key Incorrect")[0]) == {
        "status": False,
        "error": "API Key Incorrect",
    }
    assert json.loads(report("json")[0]) == {"status": True}
    assert json.loads(report("json", keyword="version", data="4.3.0")[0]) == {"version": "4.3.0"}
    assert json.loads(report("json", keyword="", data={"status": True, "nzo_ids": ["x"]})[0]) == {
        "status": True,
        "nzo_ids": ["x"],
    }


def test_report_xml_shapes() -> None:
    """XML output nests slots as <slot> and category lists as <category>, escaped."""
    body, content_type = report(
        "xml", keyword="queue", data={"slots": [{"filename": "a&b"}], "paused": False}
    )
    assert content_type.startswith(b"text/xml")
    root = ET.fromstring(body)
    assert root.tag == "queue"
    assert root.find("slots/slot/filename").text == "a&b"
    assert root.find("paused").text == "False"
    cats = ET.fromstring(report("xml", keyword="categories", data=["*", "tv"])[0])
    assert [c.text for c in cats.findall("category")] == ["*", "tv"]
    error = ET.fromstring(report("xml", error="API Key Required")[0])
    assert error.tag == "result" and error.find("error").text == "API Key Required"


def test_queue_slot_fields_sonarr_reads() -> None:
    """A queue slot has Sonarr's SabnzbdQueueItem fields with values its converters take."""
    slot = queue_slot(CONFIG, _item(), index=3)
    assert slot["nzo_id"] == "SABnzbd_nzo_abcdefgh1234"
    assert slot["filename"] == "Show.S01E01.720p"
    assert slot["cat"] == "tv"
    assert slot["priority"] == "High"
    assert slot["status"] == "Queued"
    assert slot["index"] == 3
    assert float(slot["mb"]) == 0.0 and float(slot["mbleft"]) == 0.0
    assert int(slot["percentage"]) == 0
    _sonarr_timespan(slot["timeleft"])


def test_queue_slot_status_words() -> None:
    """Processing shows as Downloading and paused as Paused (SABnzbd's status words)."""
    assert queue_slot(CONFIG, _item(state=State.PROCESSING), 0)["status"] == "Downloading"
    assert queue_slot(CONFIG, _item(state=State.PAUSED), 0)["status"] == "Paused"


def test_default_category_is_star() -> None:
    """Items in the Default category show as "*" (what Sonarr matches with no category)."""
    assert category_out(CONFIG, "Default") == "*"
    assert queue_slot(CONFIG, _item(category="Default"), 0)["cat"] == "*"
    assert category_out(CONFIG, "movies") == "movies"


def test_queue_payload_paused_and_counts() -> None:
    """The queue object reports the global pause, totals and the page window."""
    payload = queue_payload(CONFIG, [_item()], total=5, start=2, limit=1, paused=True)
    assert payload["paused"] is True and payload["status"] == "Paused"
    assert payload["noofslots"] == 5 and payload["noofslots_total"] == 5
    assert payload["slots"][0]["index"] == 2
    assert payload["version"] == SAB_VERSION


def test_history_slot_completed_storage_under_mount() -> None:
    """A completed slot's storage is mount_dir + the release folder, name its folder name."""
    item = _item(
        state=State.COMPLETED,
        target_path="/complete/tv/Show.S01E01.720p",
        size=123456789,
        started_at=1010.0,
        completed_at=1012.5,
        updated_at=1012.5,
    )
    slot = history_slot(_mounted("/mnt/altmount/"), item)
    assert slot["storage"] == "/mnt/altmount/complete/tv/Show.S01E01.720p"
    assert slot["name"] == "Show.S01E01.720p"
    assert slot["status"] == "Completed"
    assert slot["bytes"] == 123456789 and isinstance(slot["bytes"], int)
    assert slot["download_time"] == 2 and isinstance(slot["download_time"], int)
    assert slot["fail_message"] == ""
    assert slot["completed"] == 1012


def test_history_slot_without_mount_is_virtual_path() -> None:
    """With no mount_dir, storage is the path in the WebDAV tree."""
    item = _item(state=State.COMPLETED, target_path="/complete/tv/X", completed_at=1001.0)
    assert history_slot(CONFIG, item)["storage"] == "/complete/tv/X"


def test_history_slot_failed_carries_reason() -> None:
    """A failed slot has status Failed, the reason, no storage, and can be retried."""
    item = _item(state=State.FAILED, error="3 of 40 articles missing: <a@b>")
    slot = history_slot(CONFIG, item)
    assert slot["status"] == "Failed"
    assert slot["fail_message"] == "3 of 40 articles missing: <a@b>"
    assert slot["storage"] == "" and slot["retry"] is True


def test_history_payload_totals() -> None:
    """The history object carries noofslots and the slots."""
    payload = history_payload(CONFIG, [_item(state=State.FAILED)], total=9)
    assert payload["noofslots"] == 9 and len(payload["slots"]) == 1


def test_config_payload_categories_and_absolute_complete_dir() -> None:
    """get_config gives a rooted complete_dir (Sonarr needs it) and "*"-named Default."""
    config = _mounted("/mnt/am")
    payload = config_payload(config, port=8080)
    assert payload["misc"]["complete_dir"] == "/mnt/am/complete"
    assert complete_dir(config) == "/mnt/am/complete"
    names = [c["name"] for c in payload["categories"]]
    assert names[0] == "*" and "tv" in names and "movies" in names
    tv = next(c for c in payload["categories"] if c["name"] == "tv")
    assert tv["dir"] == "tv" and isinstance(tv["priority"], int)
    assert payload["misc"]["enable_tv_sorting"] is False and payload["misc"]["pre_check"] is False
    assert "api_key" not in payload["misc"]


def test_categories_list_order() -> None:
    """get_cats lists "*" first, then the others by their order."""
    config = dataclasses.replace(
        CONFIG,
        sabnzbd=dataclasses.replace(
            CONFIG.sabnzbd,
            categories=[
                CategoryConfig("b", 2, 0, "b"),
                CategoryConfig("Default", 5, 0, "complete"),
                CategoryConfig("a", 1, 0, "a"),
            ],
        ),
    )
    assert categories_list(config) == ["*", "a", "b"]


def test_status_payload_completedir() -> None:
    """fullstatus carries completedir, which Sonarr reads when complete_dir is relative."""
    status = status_payload(CONFIG, paused=False)
    assert status["completedir"] == "/complete" and status["paused"] is False
