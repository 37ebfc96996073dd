"""Scale-out on one host: `serve --processes N` on one port, and two instances behind
HAProxy, all sharing one provider's max_connections through the database's lease folder.

The provider process writes the most connections it ever had open (`provider/peak`),
so "never exceeded" is counted where it matters: at the provider.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest
import yaml
from livestack import (
    ALTMOUNT,
    DEADLINE,
    PASSWORD,
    USER,
    Stack,
    api,
    basic,
    free_port,
    request,
    wait_for,
    write_config,
)

SIZE = 6 * 1024 * 1024
DATA = random.Random(5).randbytes(SIZE)  # what the livestack provider posts
LIMIT = 4


def start(root, *, processes: int = 1) -> Stack:
    stack = Stack(root, root / "altmount.yaml")
    stack.start_provider(SIZE, 0.005, "nntp-user", "nntp-Pa55word")
    stack.config, stack.web_port = write_config(
        root, stack.provider_port, engine={"processes": processes}
    )
    return stack


def read_all(port: int, path: str, readers: int) -> list[bytes]:
    """`readers` concurrent full GETs; their bodies."""
    bodies: list[bytes] = [b""] * readers

    def read(i: int) -> None:
        bodies[i] = request(port, "GET", path, basic())[2]

    threads = [threading.Thread(target=read, args=(i,)) for i in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE * 2)
    return bodies


def peak(stack: Stack) -> int:
    return int((stack.root / "provider" / "peak").read_text() or 0)


@pytest.fixture
def stack(tmp_path):
    live = start(tmp_path, processes=3)
    yield live
    live.close()


def test_processes_share_the_port_and_the_budget(stack):
    """Three processes on one port: ten readers byte-exact, at most max_connections at the
    provider, health counts all three, a killed one is restarted, SIGTERM stops them all."""
    stack.start_server()
    stack.import_release()
    assert read_all(stack.web_port, stack.file_path, 10) == [DATA] * 10
    assert peak(stack) <= LIMIT
    # A UI login on one process holds on every connection, whichever process takes it.
    status, headers, body = request(
        stack.web_port, "POST", "/ui/api/login", {"Content-Type": "application/json"},
        json.dumps({"user": USER, "password": PASSWORD}),
    )
    assert status == 200, body
    cookie = headers["Set-Cookie"].split(";")[0]
    answers = {request(stack.web_port, "GET", "/api/queue", {"Cookie": cookie})[0]
               for _ in range(30)}
    assert answers == {200}

    def all_up():
        try:
            report = api(stack.web_port, "/api/health")["components"]["processes"]
        except OSError:  # a connection queued at the process killed below is reset
            return None
        return report if report["reason"] == "3 of 3 serving process(es) up" else None

    report = wait_for(all_up, "three processes in /api/health")
    pids = {p["index"]: p["pid"] for p in report["processes"]}
    assert len(set(pids.values())) == 3 and stack.server.pid not in pids.values()
    wait_for(
        lambda: api(stack.web_port, "/api/health")["components"]["processes"]["total"][
            "bytes_served"
        ]
        >= 10 * SIZE,
        "the ten reads in the processes' total",
    )
    status, _, metrics = request(stack.web_port, "GET", "/metrics", basic())
    assert status == 200 and b"altmount_processes_up 3.0" in metrics

    os.kill(pids[1], signal.SIGKILL)

    def restarted():
        report = all_up()
        now = {p["index"]: p["pid"] for p in report["processes"]} if report else {}
        return now.get(1) not in (None, pids[1])

    wait_for(restarted, "process 1 restarted", stack.server, deadline=DEADLINE * 2)
    assert "serving process 1 ended" in stack.server_log.read_text()
    stack.stop_server()
    survivors = [pid for pid in pids.values() if _alive(pid)]
    assert survivors == []


# Small socket buffers at HAProxy and at the slow client: the bytes in flight between an
# instance and a client that stopped reading stay well under the file's size, so the
# stream is still open (and cut by the kill) however fast the instance writes (from
# its cache, straight to the socket, it fills any buffer at once).
HAPROXY = """
global
    tune.rcvbuf.server 65536
    tune.sndbuf.client 65536
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    retries 3
    option redispatch
backend altmount
    balance roundrobin
    option httpchk GET /api/health
    server a 127.0.0.1:{a} check inter 100ms fall 1 rise 1
    server b 127.0.0.1:{b} check inter 100ms fall 1 rise 1
frontend webdav
    bind 127.0.0.1:{front}
    default_backend altmount
"""


def test_two_instances_behind_haproxy(tmp_path):
    """Two instances with one database behind HAProxy: round-robin reads byte-exact within
    one budget; one killed mid-stream, the client's ranged retry is served by the other."""
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is missing (scripts/inn2-setup.sh installs it)")
    first = start(tmp_path)
    try:
        first.start_server()
        first.import_release()
        document = yaml.safe_load(first.config.read_text())
        document["webdav"]["port"] = free_port()
        second_config = tmp_path / "second.yaml"
        second_config.write_text(yaml.safe_dump(document))
        second = Stack(tmp_path, second_config, web_port=document["webdav"]["port"])
        second.server = first.spawn(
            [*ALTMOUNT, "serve", "--config", str(second_config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(second.live, "second instance", second.server)
        front = free_port()
        config = tmp_path / "haproxy.cfg"
        config.write_text(HAPROXY.format(a=first.web_port, b=second.web_port, front=front))
        haproxy = first.spawn(
            ["haproxy", "-db", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: _answers(front), "haproxy", haproxy)
        assert read_all(front, first.file_path, 10) == [DATA] * 10
        assert peak(first) <= LIMIT

        # A slow client on whichever instance HAProxy picks; that instance is killed.
        conn = _open(front, first.file_path)
        got = conn.read(256 * 1024)
        serving = next(
            s for s in (first, second) if api(s.web_port, "/api/files/active-streams")["count"] > 0
        )
        serving.server.send_signal(signal.SIGKILL)
        serving.server.wait(DEADLINE)
        try:
            while chunk := conn.read(64 * 1024):
                got += chunk
        except OSError:
            pass  # the connection broke with the instance
        assert len(got) < SIZE
        status, _, rest = request(
            front, "GET", first.file_path, {**basic(), "Range": f"bytes={len(got)}-"}
        )
        assert status == 206 and got + rest == DATA
        assert peak(first) <= LIMIT
    finally:
        first.close()


def _open(port: int, path: str):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
    conn.connect()
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    conn.request("GET", path, headers=basic())
    response = conn.getresponse()
    assert response.status == 200
    return response


def _answers(port: int) -> bool:
    try:
        return request(port, "GET", "/live")[0] == 200
    except OSError:
        return False


def _alive(pid: int) -> bool:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.05)
    return True
