"""`altmount status` against a live server: the numbers of /api/health, /api/queue/stats and
/api/health/streaming in tables; one clear line when no server answers or auth is refused."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml
from livestack import (
    ALTMOUNT,
    DEADLINE,
    ROOT,
    SlowReader,
    api,
    basic,
    free_port,
    make_stack,
    request,
    wait_for,
    write_config,
)

ROW = re.compile(r"│ (?P<field>\S[^│]*?) +│ +(?P<value>[^│]*?) │")


def status(*args: str) -> subprocess.CompletedProcess:
    """Run `altmount status` with a wide terminal so no row wraps."""
    return subprocess.run(
        [*ALTMOUNT, "status", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env={**os.environ, "COLUMNS": "160"},
    )


def rows(output: str) -> dict[str, str]:
    """field -> value of every table row printed."""
    return {m["field"].strip(): m["value"].strip() for m in ROW.finditer(output)}


@pytest.fixture
def stack(tmp_path):
    live = make_stack(tmp_path, size=4 * 1024 * 1024)
    yield live
    live.close()


def test_status_prints_the_api_numbers(stack):
    """After a stream, status shows the same counts, bytes and workers as the API."""
    status_code, _, body = request(stack.web_port, "GET", stack.file_path, basic())
    assert (status_code, len(body)) == (200, stack.file_size)
    done = status("--config", str(stack.config))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"altmount at http://127.0.0.1:{stack.web_port}: healthy")
    shown = rows(done.stdout)
    stats = api(stack.web_port, "/api/queue/stats")
    streaming = api(stack.web_port, "/api/health/streaming")
    assert shown["status"] == "healthy"
    assert shown["components.providers"] == "healthy"
    for state, count in stats["counts"].items():
        assert shown[f"counts.{state}"] == str(count)
    assert shown["counts.completed"] == "1"
    total = stats["performance"]["bytes_served_total"]
    assert total == stack.file_size
    assert shown["performance.bytes_served_total"] == str(total)
    assert shown["totals.bytes_served_total"] == str(total)
    assert float(shown["performance.avg_speed"]) > 0
    processor = stats["workers"]["processor"]
    assert shown["workers.processor"] == f"{processor['busy']}/{processor['max']}"
    for key in ("active", "max", "queued"):
        assert shown[f"workers.{key}"] == str(streaming["workers"][key])
    assert shown["workers.max"] == "4"
    assert shown["totals.segments_total"] == str(streaming["totals"]["segments_total"])


def test_status_lists_a_running_stream(tmp_path):
    """While a slow stream runs, status counts it and lists its path."""
    live = make_stack(tmp_path, size=4 * 1024 * 1024, latency=0.3)
    try:
        reader = SlowReader(live.web_port, live.file_path, pause=0.0)
        reader.start()
        wait_for(lambda: reader.received > 0, "first bytes")
        done = status("--config", str(live.config))
        assert done.returncode == 0, done.stderr
        assert rows(done.stdout)["active_streams"] == "1"
        assert "active streams" in done.stdout and "movie.mkv" in done.stdout
        reader.join(DEADLINE)
    finally:
        live.close()


def test_status_without_server_is_one_line(tmp_path):
    """With nothing listening, status exits 1 with one line naming the URL."""
    config, port = write_config(tmp_path, free_port())
    done = status("--config", str(config))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"error: no altmount server answers at http://127.0.0.1:{port}/api/health: "
        "connection refused; is `altmount serve` running?"
    ]


def test_status_with_wrong_password_is_one_line(stack, tmp_path):
    """Credentials the server refuses give one line about webdav.user/password, exit 1."""
    document = yaml.safe_load(stack.config.read_text())
    document["webdav"]["password"] = "not-the-password"
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(document))
    done = status("--config", str(other), "--url", f"http://127.0.0.1:{stack.web_port}/")
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: http://127.0.0.1:{stack.web_port}/api/queue/stats: 401")
    assert "webdav.password" in line


def test_status_url_option_overrides_config(stack, tmp_path):
    """--url reaches the server even when the config names another port."""
    document = yaml.safe_load(stack.config.read_text())
    document["webdav"]["port"] = free_port()
    other = tmp_path / "moved.yaml"
    other.write_text(yaml.safe_dump(document))
    done = status("--config", str(other), "--url", f"http://127.0.0.1:{stack.web_port}")
    assert done.returncode == 0, done.stderr
    assert rows(done.stdout)["counts.completed"] == "1"
