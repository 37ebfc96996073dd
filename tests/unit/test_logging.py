"""altmount.logsetup: the one-line format with context ids, secret masking, file rotation
(gzip'd backups, max_backups honoured), and the ids the streamer and stream registry attach."""

from __future__ import annotations

import gzip
import io
import logging
import logging.handlers
import re
import sys
import threading

import pytest
from twisted.internet.defer import fail

from altmount.config import Config, LogConfig, ProviderConfig, WebDAVConfig
from altmount.errors import ArticleNotFound
from altmount.logsetup import (
    StructuredFormatter,
    config_secrets,
    new_request_id,
    redact_url,
    reset_logging,
    setup_logging,
)
from altmount.metadata import FileRecord, SegmentTable
from altmount.ops.streams import StreamRegistry
from altmount.stream.streamer import RangeStreamer

LINE = re.compile(
    r"(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (?P<level>[A-Z]+) +(?P<logger>\S+): "
    r"(?:\[(?P<context>[^\]]*)\] )?(?P<message>.*)"
)


def record(message: str, *args, level=logging.INFO, exc_info=None, **extra) -> logging.LogRecord:
    made = logging.LogRecord("altmount.test", level, __file__, 1, message, args, exc_info)
    made.__dict__.update(extra)
    return made


@pytest.fixture
def root_handlers():
    """Put back the root logger as pytest had it after a test that calls setup_logging."""
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    yield
    reset_logging()
    for handler in saved:
        root.addHandler(handler)
    root.setLevel(level)


def test_line_has_time_level_logger_message():
    """A record without ids is `time LEVEL logger: message`."""
    line = StructuredFormatter().format(record("served %d bytes", 42, level=logging.WARNING))
    match = LINE.fullmatch(line)
    assert match and match["level"] == "WARNING" and match["logger"] == "altmount.test"
    assert match["context"] is None and match["message"] == "served 42 bytes"


def test_context_ids_in_fixed_order():
    """request_id, stream_id and nzo_id appear in that order; empty ones are left out."""
    made = record("x", nzo_id="SABnzbd_nzo_1", stream_id=7, request_id="ab12cd34")
    assert LINE.fullmatch(StructuredFormatter().format(made))["context"] == (
        "request_id=ab12cd34 stream_id=7 nzo_id=SABnzbd_nzo_1"
    )
    made = record("x", request_id="", stream_id=3)
    assert LINE.fullmatch(StructuredFormatter().format(made))["context"] == "stream_id=3"


def test_multiline_message_and_traceback_stay_on_one_line():
    """Newlines in the message and the traceback are escaped: one event, one line."""
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        made = record("first\nsecond", level=logging.ERROR, exc_info=sys.exc_info())
    line = StructuredFormatter().format(made)
    assert "\n" not in line and "\r" not in line
    assert "first\\nsecond\\nTraceback" in line and "ValueError: bad\\nvalue" in line


def test_config_secrets_are_masked():
    """Passwords and the API key of the config never reach a line, wherever they appear."""
    config = Config(
        webdav=WebDAVConfig(password="dav-secret-1"),
        providers=[ProviderConfig(name="a", host="h", username="u", password="nntp-secret-2")],
    )
    secrets = config_secrets(config)
    assert set(secrets) >= {"dav-secret-1", "nntp-secret-2"}
    line = StructuredFormatter(secrets).format(
        record("login %s/%s failed", "dav-secret-1", "xnntp-secret-2x")
    )
    assert "secret" not in line and line.endswith("login ***/x***x failed")


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("GET /sabnzbd/api?mode=queue&apikey=0123abcd&output=json", "0123abcd"),
        ("GET /api?ma_username=u&ma_password=hunter22", "hunter22"),
        ("fetching https://indexer.example/getnzb?id=5&r=1&apikey=f00dfeed", "f00dfeed"),
        ("headers {b'authorization': [b'Basic dXNlcjpodW50ZXIy']}", "dXNlcjpodW50ZXIy"),
        ("headers {b'x-api-key': [b'k3yk3yk3y']}", "k3yk3yk3y"),
    ],
)
def test_credentials_in_text_are_masked(text, leak):
    """Credential URL parameters, Basic credentials and X-Api-Key values are masked."""
    line = StructuredFormatter().format(record("%s", text))
    assert leak not in line and "***" in line


def test_plain_words_are_not_masked():
    """Ordinary text that merely looks similar is left alone."""
    text = "basic auth refused for user usenet; sort_key=name; bypass=1"
    assert StructuredFormatter().format(record(text)).endswith(text)
    assert redact_url("/api/queue?state=failed&limit=5") == "/api/queue?state=failed&limit=5"


def test_request_ids_are_short_and_distinct():
    """Request ids are 8 hex digits, fresh each time."""
    ids = {new_request_id() for _ in range(100)}
    assert len(ids) == 100 and all(re.fullmatch(r"[0-9a-f]{8}", i) for i in ids)


def test_setup_writes_lines_to_stream(root_handlers):
    """setup_logging sends formatted, masked lines to the given stream at the level asked."""
    out = io.StringIO()
    setup_logging(LogConfig(level="warn"), stream=out, secrets=["pa55word"])
    logging.getLogger("altmount.x").info("not shown")
    logging.getLogger("altmount.x").warning("pa55word", extra={"request_id": "00ff00ff"})
    (line,) = out.getvalue().splitlines()
    assert line.endswith("WARNING altmount.x: [request_id=00ff00ff] ***")


@pytest.mark.parametrize("compress", [True, False])
def test_rotation_keeps_max_backups(tmp_path, root_handlers, compress):
    """A 1 MB log.max_size rotates; max_backups files are kept, gzip'd when log.compress."""
    path = tmp_path / "logs" / "altmount.log"
    config = LogConfig(file=str(path), max_size=1, max_backups=2, compress=compress)
    setup_logging(config, stream=io.StringIO())
    logger = logging.getLogger("altmount.rotation")
    payload = "x" * 1000
    for number in range(4000):  # about 4 MB: three rotations
        logger.info("line %05d %s", number, payload)
    reset_logging()  # writes what the background thread still holds
    suffix = ".gz" if compress else ""
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == sorted(["altmount.log", f"altmount.log.1{suffix}", f"altmount.log.2{suffix}"])
    opener = gzip.open if compress else open
    newest_backup = opener(f"{path}.1{suffix}", "rt").read().splitlines()
    assert 900 < len(newest_backup) < 1100
    assert all(LINE.fullmatch(line) for line in newest_backup)
    current = path.read_text().splitlines()
    assert current[-1].split("line ")[1].startswith("03999")
    assert path.stat().st_size <= 1024 * 1024


def test_file_writes_happen_off_the_calling_thread(tmp_path, root_handlers, monkeypatch):
    """The rotating handler runs in the listener thread, never the thread that logs."""
    seen: list[str] = []
    original = logging.handlers.RotatingFileHandler.emit

    def emit(self, made):
        seen.append(threading.current_thread().name)
        original(self, made)

    monkeypatch.setattr(logging.handlers.RotatingFileHandler, "emit", emit)
    setup_logging(LogConfig(file=str(tmp_path / "a.log")), stream=io.StringIO())
    logging.getLogger("altmount.t").info("one")
    reset_logging()
    assert seen and threading.current_thread().name not in seen


def test_stream_registry_lines_carry_stream_and_request_id(caplog):
    """The open and close lines of a stream name its stream id and its request id."""
    registry = StreamRegistry(clock=lambda: 0.0, wall=lambda: 0.0)
    with caplog.at_level(logging.INFO, logger="altmount.ops.streams"):
        handle = registry.open("/a.mkv", "127.0.0.1:1", 0, 10, request_id="1234abcd")
        handle.close()
    assert [(r.stream_id, r.request_id) for r in caplog.records] == [
        (handle.id, "1234abcd"),
        (handle.id, "1234abcd"),
    ]


def test_streamer_failure_line_carries_log_context(caplog):
    """The streamer's error line carries the context it was given."""

    class Missing:
        def fetch(self, table, index, priority=0, *, path=""):
            return fail(ArticleNotFound(table.message_ids[index]))

    table = SegmentTable.uniform(("a@t",), 100, 100)
    file = FileRecord("/a.mkv", 100, 0.0, "ok", table, "r")
    streamer = RangeStreamer(
        Missing(),
        file,
        0,
        100,
        io.BytesIO(),
        read_ahead=100,
        max_buffer=1000,
        log_context={"request_id": "feedf00d", "stream_id": 4},
    )
    with caplog.at_level(logging.ERROR, logger="altmount.stream.streamer"):
        streamer.start().addErrback(lambda _: None)
    (made,) = caplog.records
    assert (made.request_id, made.stream_id) == ("feedf00d", 4)
