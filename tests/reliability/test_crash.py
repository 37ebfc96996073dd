"""Crash safety: `altmount serve` killed with SIGKILL mid-import and mid-stream, restarted.

Real processes: a fake provider (with latency, so imports overlap) and `altmount
serve`. The test enqueues 20 NZBs straight into the queue database (as another
process would), streams one file three times at once, kills the server with
SIGKILL while imports run, restarts it and checks: serving again within 5 s, every
NZB completed exactly once, and every metadata record whole.
"""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from altmount.metadata import MetadataStore
from altmount.queue import Priority, QueueStore, State

ROOT = Path(__file__).resolve().parents[2]
ALTMOUNT = [sys.executable, "-m", "altmount"]
IMPORTS = 20
STREAM_SIZE = 8 * 1024 * 1024
AUTH = {"Authorization": "Basic dXNlbmV0OnVzZW5ldA=="}
#: The fake provider: 20 one-article releases and one 8 MiB stream file, 0.2 s latency.
PROVIDER = """
import sys
from pathlib import Path
from twisted.internet import reactor
from altmount.testing import nntpserver
from altmount.testing.articles import post_release
out = Path(sys.argv[1])
articles = {}
for n in range(int(sys.argv[2])):
    release = post_release({f"crash{n}.mkv": bytes([n]) * 200_000}, salt=f"crash{n}")
    articles.update(release.articles)
    (out / f"crash{n}.nzb").write_bytes(release.nzb)
stream = post_release({"stream.mkv": bytes(range(256)) * (int(sys.argv[3]) // 256)},
                      article_size=262144, salt="crash-stream")
articles.update(stream.articles)
(out / "stream.nzb").write_bytes(stream.nzb)
port, _ = nntpserver.listen(reactor, articles, nntpserver.Faults(latency=0.2))
(out / "port").write_text(str(port.getHost().port))
reactor.run()
"""
STREAM_DATA = bytes(range(256)) * (STREAM_SIZE // 256)


@pytest.fixture
def spawn():
    """Start child processes that are killed (and reaped) when the test ends."""
    children: list[subprocess.Popen] = []

    def start(args: list[str]) -> subprocess.Popen:
        child = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=10)


def wait_for(check, what: str, deadline: float = 60.0):
    """Poll `check()` until it returns a true value, or fail after `deadline` seconds."""
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"no {what} within {deadline} s")


def items(database: Path) -> list:
    """Every queue item (read in a connection of our own)."""
    store = QueueStore(database)
    try:
        return store.list(limit=1000)
    finally:
        store.close()


def read_range(port: int, path: str, start: int, end: int) -> bytes | None:
    """GET one range; None when the server does not answer."""
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", path, headers={**AUTH, "Range": f"bytes={start}-{end}"})
        response = connection.getresponse()
        data = response.read()
        connection.close()
        return data if response.status == 206 else None
    except (OSError, http.client.HTTPException):
        return None


def test_kill_9_during_imports_and_streams(tmp_path, spawn):
    """kill -9 while 20 imports and 3 streams run; after restart the server serves within
    5 s, each NZB completes exactly once and no metadata record is partial."""
    out = tmp_path / "nntp"
    out.mkdir()
    spawn([sys.executable, "-c", PROVIDER, str(out), str(IMPORTS), str(STREAM_SIZE)])
    nntp_port = int(
        wait_for(lambda: (out / "port").exists() and (out / "port").read_text(), "fake provider")
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        http_port = probe.getsockname()[1]
    config = tmp_path / "altmount.yaml"
    database = tmp_path / "queue.db"
    config.write_text(
        yaml.safe_dump(
            {
                "webdav": {"port": http_port, "bind_address": "127.0.0.1"},
                "metadata": {"root_path": str(tmp_path / "metadata"), "map_size_mb": 64},
                "database": {"path": str(database)},
                "import": {"queue_processing_interval_seconds": 0.1, "max_processor_workers": 4},
                "providers": [
                    {
                        "name": "A",
                        "host": "127.0.0.1",
                        "port": nntp_port,
                        "tls": False,
                        "max_connections": 8,
                    }
                ],
            }
        )
    )
    serve = [*ALTMOUNT, "serve", "--config", str(config)]
    first = spawn(serve)
    store = QueueStore(database)
    store.enqueue((out / "stream.nzb").read_bytes(), "stream.nzb", "Default", Priority.HIGH, "cli")
    stream_item = wait_for(
        lambda: [i for i in items(database) if i.state is State.COMPLETED], "stream import"
    )[0]
    path = f"{stream_item.target_path}/stream.mkv"
    for n in range(IMPORTS):
        store.enqueue(
            (out / f"crash{n}.nzb").read_bytes(), f"crash{n}.nzb", "Default", Priority.NORMAL, "cli"
        )
    store.close()
    readers = [
        threading.Thread(target=read_range, args=(http_port, path, 0, STREAM_SIZE - 1))
        for _ in range(3)
    ]
    for reader in readers:
        reader.start()
    wait_for(
        lambda: sum(i.state is State.PROCESSING for i in items(database)) >= 2, "imports under way"
    )
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    for reader in readers:
        reader.join(timeout=20)
    states = [i.state for i in items(database)]
    assert states.count(State.COMPLETED) < IMPORTS + 1, "killed too late to prove anything"

    restarted = time.monotonic()
    spawn(serve)
    data = wait_for(lambda: read_range(http_port, path, 1000, 300_000), "a served range", 5)
    serving_after = time.monotonic() - restarted
    assert data == STREAM_DATA[1000:300_001]
    assert serving_after < 5
    wait_for(lambda: all(i.state is State.COMPLETED for i in items(database)), "completion")
    final = items(database)
    assert sorted(i.nzb_name for i in final) == sorted(
        ["stream.nzb", *(f"crash{n}.nzb" for n in range(IMPORTS))]
    )
    paths = [i.target_path for i in final]
    assert len(set(paths)) == len(paths), "an NZB was imported twice"

    metadata = MetadataStore(str(tmp_path / "metadata"), map_size=64 * 1024 * 1024, readonly=True)
    try:
        files = list(metadata.walk_files())
    finally:
        metadata.close()
    names = sorted(f.path.rsplit("/", 1)[1] for f in files)
    assert names == sorted(["stream.mkv", *(f"crash{n}.mkv" for n in range(IMPORTS))])
    for record in files:
        table = record.segments
        assert int(table.offsets[-1]) == record.size, record.path
        assert len(table.message_ids) == len(table.offsets) - 1, record.path
