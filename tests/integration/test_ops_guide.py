"""The operator guide, run as written: its curl + jq monitoring loop against a live server
while a stream runs, and HAProxy's `option httpchk GET /api/health` in front of it."""

from __future__ import annotations

import csv
import io
import json
import shutil
import socket
import subprocess
import time

import pytest
from livestack import (
    DEADLINE,
    PASSWORD,
    USER,
    SlowReader,
    Stack,
    api,
    basic,
    free_port,
    make_stack,
    request,
    wait_for,
    write_config,
)

# As in the guide: curl -s -u user:pass .../api/queue/stats | jq '.performance.avg_speed'
# and .../api/health/streaming | jq '.workers.utilization', one CSV row per round.
MONITOR = r"""
url=$1 auth=$2 rounds=$3 interval=$4
echo "timestamp,avg_speed,utilization"
for _ in $(seq "$rounds"); do
    speed=$(curl -s -u "$auth" "$url/api/queue/stats" | jq '.performance.avg_speed')
    utilization=$(curl -s -u "$auth" "$url/api/health/streaming" | jq '.workers.utilization')
    echo "$(date +%s.%N),$speed,$utilization"
    sleep "$interval"
done
"""


@pytest.fixture
def stack(tmp_path):
    """Provider (2 ms per article) and server, the release imported."""
    live = make_stack(tmp_path)
    yield live
    live.close()


@pytest.fixture
def slow_stack(tmp_path):
    """Provider with 300 ms per article, so a stream lasts a few seconds."""
    live = make_stack(tmp_path, size=6 * 1024 * 1024, latency=0.3)
    yield live
    live.close()


def test_monitoring_script_writes_numeric_csv(slow_stack):
    """The guide's curl + jq loop, run while a stream is served, writes numeric columns."""
    for tool in ("curl", "jq"):
        assert shutil.which(tool), f"{tool} is missing (scripts/inn2-setup.sh installs it)"
    reader = SlowReader(slow_stack.web_port, slow_stack.file_path, pause=0.0)
    reader.start()
    wait_for(lambda: reader.received > 0, "first bytes")
    done = subprocess.run(
        [
            "bash",
            "-c",
            MONITOR,
            "monitor",
            f"http://127.0.0.1:{slow_stack.web_port}",
            f"{USER}:{PASSWORD}",
            "5",
            "0.3",
        ],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert len(rows) == 5, done.stdout
    for row in rows:
        for column in ("timestamp", "avg_speed", "utilization"):
            assert row[column] not in ("", "null"), done.stdout
            float(row[column])
        assert 0.0 <= float(row["utilization"]) <= 1.0
    assert float(rows[-1]["avg_speed"]) > 0, done.stdout
    assert any(float(row["utilization"]) > 0 for row in rows), done.stdout
    reader.join(DEADLINE)
    assert (reader.error, reader.status, reader.received) == (None, 200, slow_stack.file_size)
    after = api(slow_stack.web_port, "/api/health/streaming")
    assert after["workers"]["utilization"] == 0.0


# -- HAProxy ------------------------------------------------------------------------

HAPROXY_CONFIG = """
global
    stats socket {socket} mode 600 level admin
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
backend altmount
    option httpchk GET /api/health
    server main 127.0.0.1:{main} check inter 100ms fall 2 rise 1
    server empty 127.0.0.1:{empty} check inter 100ms fall 2 rise 1
frontend webdav
    bind 127.0.0.1:{front}
    default_backend altmount
"""


def server_states(sock_path) -> dict[str, tuple[str, str]]:
    """HAProxy's view of each backend server: name -> (status, last check status)."""
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(str(sock_path))
        conn.sendall(b"show stat\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
    return {
        # "* L7OK": HAProxy marks the last result with "* " while the next check runs.
        row["svname"]: (row["status"], row["check_status"].removeprefix("* "))
        for row in rows
        if row["pxname"] == "altmount" and row["svname"] not in ("BACKEND", "FRONTEND")
    }


@pytest.fixture
def empty_server(tmp_path):
    """A second server with no provider at all: /api/health is unhealthy (503)."""
    root = tmp_path / "empty"
    root.mkdir()
    config, port = write_config(root, 0)
    server = Stack(root, config, web_port=port)
    server.start_server()
    yield server
    server.close()


def test_haproxy_health_check(tmp_path, stack, empty_server):
    """httpchk GET /api/health: healthy and degraded stay UP (200), unhealthy is DOWN (503)."""
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is missing (scripts/inn2-setup.sh installs it)")
    assert request(empty_server.web_port, "GET", "/api/health")[0] == 503
    assert api(empty_server.web_port, "/api/health", {}) == {"status": "unhealthy"}
    sock_path = tmp_path / "haproxy.sock"
    front = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        HAPROXY_CONFIG.format(
            socket=sock_path, main=stack.web_port, empty=empty_server.web_port, front=front
        )
    )
    haproxy = stack.spawn(
        ["haproxy", "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    wait_for(sock_path.exists, "haproxy stats socket", haproxy)

    def settled():
        states = server_states(sock_path)
        return states.get("main", ("",))[0] == "UP" and states.get("empty", ("",))[0] == "DOWN"

    wait_for(settled, "main UP and empty DOWN", haproxy)
    states = server_states(sock_path)
    assert states["main"][1] == "L7OK" and states["empty"][1] == "L7STS", states
    status, _, body = request(front, "GET", stack.file_path, {**basic(), "Range": "bytes=0-99"})
    assert (status, len(body)) == (206, 100)  # traffic goes through to the UP server

    stack.provider.kill()
    stack.provider.wait(DEADLINE)

    def degraded():
        # A read needs the provider: its failed reconnects are what /api/health sees.
        request(stack.web_port, "GET", stack.file_path, {**basic(), "Range": "bytes=9000000-"})
        return api(stack.web_port, "/api/health", {})["status"] == "degraded"

    wait_for(degraded, "degraded after the provider stopped", stack.server)
    assert request(stack.web_port, "GET", "/api/health")[0] == 200
    report = api(stack.web_port, "/api/health")
    assert report["components"]["providers"]["status"] == "degraded", json.dumps(report)
    checks_later = time.monotonic() + 1.0  # ten check intervals
    wait_for(lambda: time.monotonic() > checks_later, "ten HAProxy checks")
    assert server_states(sock_path)["main"] == ("UP", "L7OK")
