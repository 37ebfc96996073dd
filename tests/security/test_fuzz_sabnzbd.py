"""SABnzbd API parameters fuzzed through the real resource and the real SQLite queue.

The queue's database thread is replaced by an inline pool so every call completes
synchronously; DummyRequest carries random query arguments (the right key, so the
modes really run). Every answer must be SABnzbd JSON with HTTP 200, never a 500.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer, task
from twisted.python.failure import Failure
from twisted.web.test.requesthelper import DummyRequest

from altmount.config import APIConfig, Config, DatabaseConfig, SABnzbdConfig
from altmount.queue import QueueService, QueueStore
from altmount.testing.articles import build_nzb, post_release
from altmount.web.addurl import NZBDownloader
from altmount.web.sabnzbd import SABnzbdAPI

KEY = "0123456789abcdef0123456789abcdef"
NZB = build_nzb(post_release({"a.mkv": b"x" * 5000}, article_size=2000, salt="sf").files)


class _InlinePool:
    """A ThreadPool stand-in that runs work at once, in the calling thread."""

    def start(self) -> None:
        """Nothing to start."""

    def stop(self) -> None:
        """Nothing to stop."""

    def callInThreadWithCallback(self, on_result: Any, function: Any, *args: Any, **kw: Any):
        try:
            result = function(*args, **kw)
        except Exception:
            on_result(False, Failure())
        else:
            on_result(True, result)


class _InlineReactor:
    """Just enough reactor for deferToThreadPool and the downloader: calls run at once."""

    def callFromThread(self, function: Any, *args: Any) -> None:
        function(*args)


def _api() -> SABnzbdAPI:
    folder = Path(tempfile.mkdtemp(prefix="altmount-sabfuzz-"))
    config = Config(
        api=APIConfig(key_override=KEY),
        database=DatabaseConfig(path=str(folder / "q.db")),
        sabnzbd=SABnzbdConfig(enabled=True),
    )
    store = QueueStore(config.database.path)
    queue = QueueService(_InlineReactor(), store, None, config, threadpool=_InlinePool())
    for i in range(3):
        queue.add(NZB, f"item{i}.nzb", None, None)
    clock = task.Clock()  # addurl fails at name resolution; its timer never fires
    downloader = NZBDownloader(
        clock,
        max_bytes=1,
        timeout=1,
        allow_private=False,
        resolve=lambda host, port: defer.fail(OSError("no DNS in this test")),
    )
    return SABnzbdAPI(config, queue, downloader)


API = _api()
MODES = st.sampled_from(
    [
        "queue",
        "history",
        "retry",
        "pause",
        "resume",
        "get_config",
        "get_cats",
        "addurl",
        "addfile",
        "status",
        "fullstatus",
        "version",
        "auth",
        "",
        "nope",
    ]
)
VALUES = st.one_of(
    st.sampled_from(
        [
            "delete",
            "pause",
            "resume",
            "all",
            "failed",
            "completed",
            "-1",
            "0",
            "99999999999999999999999999",
            "9" * 5000,
            "1e9",
            "'; DROP TABLE items;--",
            "%",
            "_",
            "SABnzbd_nzo_000000000001",
            ",,,",
            "xml",
            "json",
            "http://x/",
            "file:///etc/passwd",
        ]
    ),
    st.text(max_size=30),
)
NAMES = st.sampled_from(
    [
        "name",
        "value",
        "start",
        "limit",
        "cat",
        "category",
        "search",
        "nzo_ids",
        "priority",
        "nzbname",
        "output",
        "section",
        "keyword",
        "failed_only",
        "ma_username",
        "ma_password",
    ]
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MODES, st.dictionaries(NAMES, VALUES, max_size=6))
def test_random_parameters_never_500(mode: str, args: dict[str, str]) -> None:
    """Any mode with any arguments answers 200 with SABnzbd JSON (or XML), never 500."""
    request = DummyRequest([b"api"])
    request.args = {k.encode(): [v.encode("utf-8", "surrogatepass")] for k, v in args.items()}
    request.args[b"mode"] = [mode.encode()]
    request.args[b"apikey"] = [KEY.encode()]
    API.render(request)
    assert request.finished, "the call did not complete"
    assert request.responseCode in (None, 200), (request.responseCode, b"".join(request.written))
    body = b"".join(request.written)
    if request.responseHeaders.getRawHeaders(b"content-type", [b""])[0].startswith(
        b"application/json"
    ):
        json.loads(body)
