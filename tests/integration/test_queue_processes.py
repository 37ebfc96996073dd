"""The queue shared by several processes: atomic claims, and recovery after kill -9.

Real processes: two `multiprocessing` (spawn) workers claiming from one SQLite file,
and `altmount serve` killed with SIGKILL in the middle of an import, then restarted.
Every child is killed and reaped at teardown.
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from altmount.queue import Priority, QueueStore, State

ROOT = Path(__file__).resolve().parents[2]
ALTMOUNT = [sys.executable, "-m", "altmount"]
FAKESERVER = [sys.executable, str(ROOT / "benchmarks" / "fakeserver.py")]
ITEMS = 200
DEADLINE = 20.0


def claim_all(path: str, worker: str, start, results) -> None:
    """Child process: once every child is ready, claim and complete items until none is
    left; report the ids."""
    store = QueueStore(path)
    claimed = []
    start.wait()
    while (item := store.claim(worker)) is not None:
        claimed.append(item.id)
        store.complete(item.id, f"/complete/{item.id}", 1)
        # Pacing, not waiting: without it one process can drain the queue before the
        # other is scheduled on a loaded machine, and the claims would never race.
        time.sleep(0.001)
    store.close()
    results.put((worker, claimed))


def test_two_processes_claim_each_item_exactly_once(tmp_path):
    """Two processes racing over 200 items claim every item once and only once."""
    path = str(tmp_path / "q.db")
    store = QueueStore(path)
    for n in range(ITEMS):
        store.enqueue(b"<nzb/>", f"{n}.nzb", "Default", Priority(n % 3 - 1), "cli")
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=claim_all, args=(path, f"w{n}", start, results)) for n in range(2)
    ]
    for process in workers:
        process.start()
    try:
        claimed = dict(results.get(timeout=60) for _ in workers)
    finally:
        for process in workers:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    every = claimed["w0"] + claimed["w1"]
    assert sorted(every) == list(range(1, ITEMS + 1))
    assert store.counts()[State.COMPLETED] == ITEMS
    workers_in_db = {item.worker for item in store.list(limit=ITEMS)}
    assert workers_in_db <= {"w0", "w1"}
    for worker in ("w0", "w1"):
        assert {i.id for i in store.list(limit=ITEMS) if i.worker == worker} == set(claimed[worker])
    store.close()


def free_port() -> int:
    """A port nothing listens on now (bound and closed again)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(check, what: str, deadline: float = DEADLINE):
    """Poll `check()` until it returns a true value, or fail after `deadline` seconds."""
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"no {what} within {deadline} s")


def test_kill_9_mid_import_then_restart_completes_once(tmp_path, spawn):
    """serve killed with SIGKILL while importing leaves the item processing; the next serve
    puts it back and completes it, exactly once."""
    out = tmp_path / "nntp"
    spawn(
        [
            *FAKESERVER,
            "--out",
            str(out),
            "--size-mb",
            "1",
            "--article-size",
            "262144",
            "--latency-ms",
            "1500",
            "--name",
            "slow.mkv",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port = int(
        wait_for(lambda: (out / "port").exists() and (out / "port").read_text(), "fake server")
    )
    config = tmp_path / "altmount.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "webdav": {"port": free_port(), "bind_address": "127.0.0.1"},
                "metadata": {"root_path": "./metadata", "map_size_mb": 64},
                "database": {"path": "./queue.db"},
                "nntp": {"connect_timeout_seconds": 5, "request_timeout_seconds": 10},
                "import": {"queue_processing_interval_seconds": 0.2},
                "providers": [{"name": "slow", "host": "127.0.0.1", "port": port, "tls": False}],
            }
        )
    )
    queued = subprocess.run(
        [*ALTMOUNT, "import", str(out / "release.nzb"), "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert queued.returncode == 0, queued.stderr
    nzo_id = queued.stdout.strip()
    database = tmp_path / "queue.db"

    def state() -> tuple[State, int]:
        store = QueueStore(database)
        try:
            item = store.get_by_nzo(nzo_id)
        finally:
            store.close()
        return item.state, item.attempts

    first = spawn(
        [*ALTMOUNT, "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: state() == (State.PROCESSING, 1), "claim by the first server")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert state() == (State.PROCESSING, 1)

    log = tmp_path / "second.log"
    with log.open("w") as sink:
        second = spawn(
            [*ALTMOUNT, "serve", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=sink
        )
    wait_for(lambda: state()[0] == State.COMPLETED, "completion after restart")
    second.send_signal(signal.SIGTERM)
    second.wait(timeout=DEADLINE)
    store = QueueStore(database)
    (item,) = store.list()
    store.close()
    assert (item.state, item.attempts, item.size) == (State.COMPLETED, 2, 1024 * 1024)
    text = log.read_text()
    assert "1 item(s) were being imported when altmount last stopped" in text
    assert text.count("importing release.nzb") == 1
    assert text.count("imported release.nzb →") == 1
