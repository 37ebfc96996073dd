"""altmount.cliview: the server URL from the config, the status tables, the import progress line."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from altmount.cliview import ImportProgress, ServerStatus, render_status, server_url
from altmount.config import Config, WebDAVConfig

STATS = {
    "counts": {"pending": 2, "completed": 5, "total": 7},
    "performance": {
        "avg_speed": 1536.5,
        "avg_speed_human": "1.5 KiB/s",
        "current_speed": 0.0,
        "current_speed_human": "0 B/s",
        "window_seconds": {"avg_speed": 60, "current_speed": 5},
        "bytes_served_total": 123456789,
        "avg_import_ms": 812.25,
        "imports_counted": 5,
    },
    "workers": {"utilization": 0.25, "processor": {"busy": 1, "max": 2, "paused": True}},
}
STREAMING = {
    "workers": {"active": 1, "max": 4, "utilization": 0.25, "queued": 0},
    "active_streams": 1,
    "streams": [
        {
            "id": 9,
            "path": "/complete/Film/film.mkv",
            "client": "127.0.0.1:5000",
            "range": {"start": 0, "end": 99, "length": 100},
            "bytes_served": 50,
            "progress": 0.5,
            "current_speed": 2048.0,
            "time_to_first_byte_ms": 12.3,
        }
    ],
    "totals": {"bytes_served_total": 123456789, "outcomes": {"done": 3, "failed": 1}},
}
HEALTH = {
    "status": "degraded",
    "components": {
        "providers": {
            "status": "degraded",
            "reason": "1 of 2 provider(s) reachable",
            "providers": [{"name": "news", "status": "degraded", "reason": "unreachable"}],
        }
    },
}


def console(terminal: bool = False) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=150, force_terminal=terminal, color_system=None), out


@pytest.mark.parametrize(
    ("bind", "url"),
    [
        ("0.0.0.0", "http://127.0.0.1:8080"),
        ("127.0.0.1", "http://127.0.0.1:8080"),
        ("10.1.2.3", "http://10.1.2.3:8080"),
        ("::", "http://[::1]:8080"),
        ("", "http://127.0.0.1:8080"),
    ],
)
def test_server_url_from_bind_address(bind, url):
    """A wildcard bind address is reached over loopback; IPv6 gets brackets."""
    assert server_url(Config(webdav=WebDAVConfig(bind_address=bind, port=8080))) == url


def test_render_status_shows_every_number():
    """The tables carry the API's numbers under their JSON field names."""
    out_console, out = console()
    render_status(ServerStatus("http://h:1", HEALTH, STATS, STREAMING), out_console)
    text = out.getvalue()
    assert text.startswith("altmount at http://h:1: degraded")
    for field, value in [
        ("counts.pending", "2"),
        ("counts.total", "7"),
        ("performance.avg_speed", "1536.5"),
        ("performance.bytes_served_total", "123456789"),
        ("performance.avg_import_ms", "812.25"),
        ("workers.utilization", "0.25"),
        ("workers.processor", "1/2"),
        ("workers.max", "4"),
        ("totals.outcomes.failed", "1"),
        ("components.providers", "degraded"),
    ]:
        assert any(field in line and f" {value} " in line for line in text.splitlines()), field
    assert "(paused)" in text and "117.7 MiB" in text
    assert "/complete/Film/film.mkv" in text and "50 (50%)" in text


def test_progress_shows_state_and_elapsed_on_a_terminal():
    """On a terminal the line names the NZB, its state (and a retry's attempt), and the time."""
    out_console, out = console(terminal=True)
    with ImportProgress("Film.nzb", out_console) as progress:
        progress.update("processing", 1)
        progress.update("pending", 2)
        progress.update("completed", 2)
    text = out.getvalue()
    assert "Film.nzb" in text and "completed (attempt 2)" in text
    assert "0:00:0" in text  # elapsed, h:mm:ss
    assert progress.state == "completed (attempt 2)"


def test_progress_is_silent_off_a_terminal():
    """Piped standard error gets no progress drawing."""
    out_console, out = console(terminal=False)
    with ImportProgress("Film.nzb", out_console) as progress:
        progress.update("completed")
    assert out.getvalue() == ""
