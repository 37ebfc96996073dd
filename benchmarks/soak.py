"""Soak: N clients reading random ranges of one file for a long time, with provider faults.

Three processes: two fake NNTP providers (this script with `--nntp`: primary A with
disconnects, 430s and latency, complete backup B), `altmount serve`, and the load
here. Every byte received is compared with the posted data. Measured from outside
the server process:

* RSS of `altmount serve` (/proc/PID/status VmRSS) each second; kept: at 60 s and at the end;
* open file descriptors (/proc/PID/fd) before the load and after it stops;
* NNTP connections, counted by the fake providers themselves (they write their
  counters to a JSON file twice a second), before, peak, and after the load;
* reactor stalls: a thread asks `GET /live` every 50 ms; the longest gap between two
  answers (request time included) is the longest the reactor can have been stuck.

    python benchmarks/soak.py --minutes 10 --streams 10 --size-mb 500

prints one JSON object with the figures and exits 1 if any byte was wrong.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
ARTICLE_SIZE = 716_800
IDLE_TIMEOUT = 3.0  # nntp.idle_timeout_seconds of the soaked server: idle comes back fast
AUTH = {"Authorization": "Basic dXNlbmV0OnVzZW5ldA=="}  # usenet:usenet


def generate(size: int, seed: int) -> bytes:
    """Incompressible deterministic bytes (the same as benchmarks/fakeserver.py)."""
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


# -- the fake providers (child process) ---------------------------------------------


def serve_nntp(
    out: Path, size: int, seed: int, disconnect: float, missing: float, latency: float
) -> None:
    """Child: post the release, serve it as A (faulty) and B (complete backup)."""
    from twisted.internet import reactor
    from twisted.internet.task import LoopingCall

    from altmount.testing import nntpserver
    from altmount.testing.articles import post_release

    release = post_release(
        {"soak.mkv": generate(size, seed)},
        article_size=ARTICLE_SIZE,
        meta={"name": "soak"},
        salt=f"soak{seed}",
    )
    faults = nntpserver.Faults(disconnect_rate=disconnect, missing_rate=missing, latency=latency)
    port_a, a = nntpserver.listen(reactor, release.articles, faults, seed=seed)
    port_b, b = nntpserver.listen(reactor, release.articles, nntpserver.Faults(latency=latency))

    def dump() -> None:
        stats = {
            name: {
                "current": f.current_connections,
                "peak": f.peak_connections,
                "total": f.connections_total,
                "bodies": f.commands["BODY"],
            }
            for name, f in (("A", a), ("B", b))
        }
        (out / "nntp.tmp").write_text(json.dumps(stats))
        os.replace(out / "nntp.tmp", out / "nntp.json")

    (out / "release.nzb").write_bytes(release.nzb)
    (out / "ports").write_text(f"{port_a.getHost().port} {port_b.getHost().port}")
    loop = LoopingCall(dump)
    loop.start(0.5)
    reactor.run()


# -- helpers ------------------------------------------------------------------------


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(check, what: str, deadline: float = 120.0):
    """Poll `check()` until it returns a true value; raise after `deadline` seconds."""
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"no {what} within {deadline} s")


def rss_mib(pid: int) -> float:
    """Resident set size of `pid`, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_fds(pid: int) -> int:
    """Open file descriptors of `pid`."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_targets(pid: int) -> set[str]:
    """What the open descriptors of `pid` point at (`socket:[inode]`, paths)."""
    targets = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            continue  # closed while listed
    return targets


def settled_fds(pid: int, ceiling: int, seconds: float = 10.0) -> int:
    """Open descriptors of `pid` once back at `ceiling` or after `seconds`.

    A client's socket and a cache write in flight close a moment after the load ends;
    a leak stays, so the count is read again until it settles rather than once.
    """
    until = time.monotonic() + seconds
    count = open_fds(pid)
    while count > ceiling and time.monotonic() < until:
        time.sleep(0.1)
        count = open_fds(pid)
    return count


def nntp_stats(out: Path) -> dict:
    """The fake providers' last counters."""
    return json.loads((out / "nntp.json").read_text())


def nntp_open(out: Path) -> int:
    """NNTP connections open now, both providers."""
    return sum(s["current"] for s in nntp_stats(out).values())


# -- load ---------------------------------------------------------------------------


class Load:
    """Reader threads, the /live heartbeat and the RSS sampler, sharing one stop flag."""

    def __init__(
        self, port: int, path: str, data: bytes, streams: int, seed: int, pid: int
    ) -> None:
        self.port, self.path, self.data = port, path, data
        self.streams, self.seed, self.pid = streams, seed, pid
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.bytes_checked = 0
        self.requests = 0
        self.mismatches: list[str] = []
        self.errors: list[str] = []
        self.longest_gap = 0.0
        self.rss: list[tuple[float, float]] = []
        self.started = time.monotonic()

    def reader(self, number: int) -> None:
        rng = random.Random(self.seed * 1000 + number)
        size = len(self.data)
        while not self.stop.is_set():
            start = rng.randrange(size)
            length = min(size - start, rng.choice([1, 4096, 1 << 20, 8 << 20, 32 << 20]))
            end = start + length - 1
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                connection.request(
                    "GET", self.path, headers={**AUTH, "Range": f"bytes={start}-{end}"}
                )
                response = connection.getresponse()
                got = 0
                while chunk := response.read(1 << 20):
                    if chunk != self.data[start + got : start + got + len(chunk)]:
                        with self.lock:
                            self.mismatches.append(
                                f"bytes {start + got}-{start + got + len(chunk)}"
                            )
                        break
                    got += len(chunk)
                connection.close()
                with self.lock:
                    self.bytes_checked += got
                    self.requests += 1
                    if response.status != 206 or got != length:
                        self.errors.append(f"{response.status} {start}-{end}: {got} of {length}")
            except OSError as exc:
                with self.lock:
                    self.errors.append(f"{start}-{end}: {exc}")

    def heartbeat(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        last = time.monotonic()
        while not self.stop.is_set():
            try:
                connection.request("GET", "/live")
                connection.getresponse().read()
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                continue
            now = time.monotonic()
            self.longest_gap = max(self.longest_gap, now - last)
            last = now
            time.sleep(0.05)

    def sampler(self) -> None:
        while not self.stop.wait(1.0):
            self.rss.append((time.monotonic() - self.started, rss_mib(self.pid)))

    def run(self, seconds: float) -> None:
        threads = [threading.Thread(target=self.reader, args=(n,)) for n in range(self.streams)]
        threads += [threading.Thread(target=self.heartbeat), threading.Thread(target=self.sampler)]
        for thread in threads:
            thread.start()
        self.stop.wait(seconds)
        self.stop.set()
        for thread in threads:
            thread.join()


# -- the run ------------------------------------------------------------------------


def soak(
    seconds: float,
    streams: int,
    size_mb: int,
    *,
    disconnect: float = 0.02,
    missing: float = 0.01,
    latency_ms: float = 5.0,
    seed: int = 3,
    workdir: Path | None = None,
    rss_reference: float = 60.0,
) -> dict:
    """Run one soak; returns the figures (see the module docstring).

    `rss_reference`: seconds into the load at which the reference RSS is taken.
    """
    size = size_mb * 1024 * 1024
    folder = Path(workdir or tempfile.mkdtemp(prefix="altmount-soak-"))
    out = folder / "nntp"
    out.mkdir(parents=True, exist_ok=True)
    children: list[subprocess.Popen] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        children.append(
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--nntp",
                    str(out),
                    "--size-mb",
                    str(size_mb),
                    "--seed",
                    str(seed),
                    "--disconnect",
                    str(disconnect),
                    "--missing",
                    str(missing),
                    "--latency-ms",
                    str(latency_ms),
                ],
                cwd=ROOT,
                env=env,
            )
        )
        data = generate(size, seed)
        ports = wait_for(
            lambda: (out / "ports").exists() and (out / "ports").read_text(), "fake providers", 300
        ).split()
        http_port = free_port()
        config = folder / "altmount.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "webdav": {"port": http_port, "bind_address": "127.0.0.1"},
                    "metadata": {"root_path": str(folder / "metadata"), "map_size_mb": 256},
                    "database": {"path": str(folder / "queue.db")},
                    "nntp": {
                        "connect_timeout_seconds": 5,
                        "request_timeout_seconds": 10,
                        "idle_timeout_seconds": IDLE_TIMEOUT,
                    },
                    "import": {"queue_processing_interval_seconds": 0.2},
                    "health": {"enabled": False},
                    "log": {"file": str(folder / "altmount.log")},
                    "providers": [
                        {
                            "name": "A",
                            "host": "127.0.0.1",
                            "port": int(ports[0]),
                            "tls": False,
                            "max_connections": 8,
                        },
                        {
                            "name": "B",
                            "host": "127.0.0.1",
                            "port": int(ports[1]),
                            "tls": False,
                            "max_connections": 4,
                            "is_backup_provider": True,
                        },
                    ],
                }
            )
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "altmount", "serve", "--config", str(config)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        children.append(server)
        wait_for(lambda: _live(http_port), "altmount serve", 60)
        path = _import(config, folder / "queue.db", out / "release.nzb", env)
        wait_for(lambda: nntp_open(out) == 0, "idle NNTP connections", 30)
        fds_before, nntp_before = open_fds(server.pid), nntp_open(out)
        targets_before = fd_targets(server.pid)
        load = Load(http_port, path, data, streams, seed, server.pid)
        load.run(seconds)
        after_load = time.monotonic()
        wait_for(lambda: nntp_open(out) == nntp_before, "NNTP connections back to idle", 60)
        idle_after = time.monotonic() - after_load
        fds_after = settled_fds(server.pid, fds_before)
        fds_new = sorted(fd_targets(server.pid) - targets_before)
        first_minute = next((mib for at, mib in load.rss if at >= rss_reference), load.rss[-1][1])
        reactor_lag = _reactor_lag(http_port)
        stats = nntp_stats(out)
        return {
            "seconds": seconds,
            "streams": streams,
            "size_mb": size_mb,
            "faults": {
                "disconnect_rate": disconnect,
                "missing_rate": missing,
                "latency_ms": latency_ms,
            },
            "requests": load.requests,
            "bytes_checked": load.bytes_checked,
            "mismatches": load.mismatches,
            "errors": load.errors[:20],
            "error_count": len(load.errors),
            "rss_reference_seconds": rss_reference,
            "rss_mib_at_reference": round(first_minute, 1),
            "rss_mib_end": round(load.rss[-1][1], 1),
            "rss_mib_peak": round(max(mib for _, mib in load.rss), 1),
            "fds_before": fds_before,
            "fds_after": fds_after,
            "fds_new": fds_new,
            "nntp_before": nntp_before,
            "nntp_after": nntp_open(out),
            "nntp_idle_after_seconds": round(idle_after, 1),
            "nntp_peak": {name: s["peak"] for name, s in stats.items()},
            "nntp_bodies": {name: s["bodies"] for name, s in stats.items()},
            "longest_live_gap_ms": round(load.longest_gap * 1000, 1),
            "reactor": reactor_lag,
        }
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()


def _reactor_lag(port: int) -> dict:
    """The server's own heartbeat figures (longest reactor lag, stalls over 250 ms)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/api/health/streaming", headers=AUTH)
    answer = json.loads(connection.getresponse().read())
    connection.close()
    return answer["reactor"]


def _live(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/live")
        return connection.getresponse().status == 200
    except OSError:
        return False


def _import(config: Path, database: Path, nzb: Path, env: dict) -> str:
    """Enqueue the NZB with `altmount import`; fires once completed; the file's WebDAV path."""
    from altmount.queue import QueueStore, State

    queued = subprocess.run(
        [sys.executable, "-m", "altmount", "import", str(nzb), "--config", str(config)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    nzo_id = queued.stdout.strip()

    def completed():
        store = QueueStore(database)
        try:
            item = store.get_by_nzo(nzo_id)
        finally:
            store.close()
        if item.state is State.FAILED:
            raise RuntimeError(f"import failed: {item.error}")
        return item if item.state is State.COMPLETED else None

    item = wait_for(completed, "import", 120)
    return f"{item.target_path}/soak.mkv"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--disconnect", type=float, default=0.02)
    parser.add_argument("--missing", type=float, default=0.01)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--nntp", type=Path, help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.nntp is not None:
        serve_nntp(
            args.nntp,
            args.size_mb * 1024 * 1024,
            args.seed,
            args.disconnect,
            args.missing,
            args.latency_ms / 1000,
        )
        return
    result = soak(
        args.minutes * 60,
        args.streams,
        args.size_mb,
        disconnect=args.disconnect,
        missing=args.missing,
        latency_ms=args.latency_ms,
        seed=args.seed,
    )
    print(json.dumps(result, indent=2))
    sys.exit(1 if result["mismatches"] else 0)


if __name__ == "__main__":
    main()
