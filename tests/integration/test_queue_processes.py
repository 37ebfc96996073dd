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
        store.complete(item.id, f"/complete/{item.id}", 1, worker=worker)
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


def test_import_wait_and_two_servers_import_each_item_once(tmp_path, spawn):
    """`altmount import --wait` importing by itself keeps its item while two servers start
    on the same database (their start-up recovery leaves a live worker's item alone), and
    items queued next are each imported once by one of the two servers."""
    ports = []
    # The same release from two fake servers: a slow one (2.5 s a round trip) for the
    # import --wait, so its import is still running when the servers (on the fast one)
    # have started and recovered.
    for name, latency in (("slow", 2500), ("fast", 0)):
        out = tmp_path / name
        spawn(
            [*FAKESERVER, "--out", str(out), "--size-mb", "1", "--article-size", "262144"]
            + ["--latency-ms", str(latency), "--name", "movie.mkv"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ports.append(
            int(wait_for(lambda o=out: (o / "port").exists() and (o / "port").read_text(), name))
        )
    assert (tmp_path / "slow" / "release.nzb").read_bytes() == (out / "release.nzb").read_bytes()
    configs = []
    for name, port in (("cli", ports[0]), ("a", ports[1]), ("b", ports[1])):
        config = tmp_path / f"{name}.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "webdav": {"port": free_port(), "bind_address": "127.0.0.1"},
                    "metadata": {"root_path": "./metadata", "map_size_mb": 64},
                    "database": {"path": "./queue.db"},
                    "nntp": {"connect_timeout_seconds": 5, "request_timeout_seconds": 10},
                    "import": {"queue_processing_interval_seconds": 0.2},
                    "providers": [
                        {"name": "slow", "host": "127.0.0.1", "port": port, "tls": False}
                    ],
                }
            )
        )
        configs.append(config)
    database = tmp_path / "queue.db"

    def items():
        store = QueueStore(database)
        try:
            return store.list(limit=100) if database.exists() else []
        finally:
            store.close()

    cli_log = tmp_path / "cli.log"
    with cli_log.open("w") as sink:
        waiting = spawn(
            [*ALTMOUNT, "import", str(out / "release.nzb"), "--wait", "--config", str(configs[0])],
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
        )
    wait_for(
        lambda: [i for i in items() if i.state == State.PROCESSING and i.worker.endswith(":cli")],
        "claim by import --wait",
    )
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    for config, log in zip(configs[1:], logs, strict=True):
        with log.open("w") as sink:
            spawn(
                [*ALTMOUNT, "serve", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )

    def servers() -> list[str]:
        store = QueueStore(database)
        try:
            return [w for w in store.live_workers(time.time(), 5) if not w.endswith(":cli")]
        finally:
            store.close()

    wait_for(lambda: len(servers()) == 2, "both servers polling")
    (held,) = items()
    assert held.state == State.PROCESSING and held.worker.endswith(":cli")
    stdout, _ = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, cli_log.read_text()
    assert stdout.startswith("/complete/")
    (first,) = items()
    assert (first.state, first.attempts) == (State.COMPLETED, 1)
    assert first.worker.endswith(":cli")

    store = QueueStore(database)
    nzb = (out / "release.nzb").read_bytes()
    names = [f"next{n}.nzb" for n in range(4)]
    for name in names:
        store.enqueue(nzb, name, "Default", Priority.NORMAL, "cli")
    store.close()
    wait_for(
        lambda: all(i.state == State.COMPLETED for i in items()), "the next items", deadline=60
    )
    assert all(i.attempts == 1 for i in items())
    texts = [log.read_text() for log in logs]
    assert not any("importing release.nzb" in text for text in texts)
    for name in names:
        assert sum(text.count(f"importing {name}") for text in texts) == 1, name
        assert sum(text.count(f"imported {name} →") for text in texts) == 1, name
    assert {i.worker for i in items()[:4]} <= set(servers())
