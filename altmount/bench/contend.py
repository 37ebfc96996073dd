"""`altmount bench contend`: does a stream stay fast while imports and health checks run?

The fake NNTP server (its own process, a delay per command) holds a media file and a
40-file release. `altmount serve` imports the media file, then random seeks (TTFB and
time to read `--seek-mb`) are measured in `--rounds` pairs of phases in the same run:
idle, and while the 40-file release is imported again and again (SABnzbd addfile,
every segment STATed) and health checks STAT every segment of the file in a loop
(after each loaded phase the queue drains before the next idle one). Alternating
phases cancel most of the drift of a shared, noisy box. The report gives both
sets of figures, their ratios (the bar: loaded p50 at most 1.5x idle), and how much
import and health work got done meanwhile (they must move, not starve).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from altmount.bench.common import free_port, percentile, wait_for
from altmount.bench.httpclient import Target, add_nzb, timed_get
from altmount.bench.stream import API_KEY, _Run, _seeks, start_serve, stop_processes
from altmount.selfexec import altmount_argv, python_argv

__all__ = ["ContendOptions", "run_contend_bench"]

#: Import copies kept waiting in the queue while loaded.
QUEUED_IMPORTS = 2


@dataclass(frozen=True, slots=True)
class ContendOptions:
    """What `altmount bench contend` runs (the CLI options, one to one)."""

    size_mb: float = 100
    files: int = 40
    file_mb: float = 4
    article_size: int = 716_800
    latency_ms: float = 10.0
    connections: int = 8
    depth: int = 2
    headroom: int = 2
    seeks: int = 50
    seek_mb: float = 4
    rounds: int = 3
    seed: int = 1


def _config(workdir: Path, nntp_port: int, http_port: int, opts: ContendOptions) -> str:
    return f"""
webdav: {{port: {http_port}, bind_address: 127.0.0.1, user: bench, password: bench}}
api: {{key_override: {API_KEY}}}
sabnzbd: {{enabled: true}}
metadata: {{root_path: {workdir / "metadata"}}}
database: {{path: {workdir / "altmount.db"}}}
import: {{queue_processing_interval_seconds: 0.1, segment_sample_percentage: 100,
          max_processor_workers: 2}}
# No scheduled health rounds: the idle phase must be idle; the load asks for checks.
health: {{enabled: false, segment_sample_percentage: 100,
          max_connections_for_health_checks: {opts.connections}}}
nntp: {{stream_headroom: {opts.headroom}}}
streaming: {{max_download_workers: {opts.connections}}}
segment_cache: {{enabled: false, memory_mb: 0}}
log: {{level: warn}}
providers:
  - {{name: fake, host: 127.0.0.1, port: {nntp_port}, tls: false,
      max_connections: {opts.connections}, inflight_requests: {opts.depth}}}
"""


def _call(target: Target, method: str, path: str) -> Any:
    conn = target.connect()
    try:
        conn.request(method, path, headers=target.headers())
        response = conn.getresponse()
        body = response.read()
        if response.status >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {response.status} {body[:200]!r}")
        return json.loads(body) if body else None
    finally:
        conn.close()


class _Load:
    """Imports and health checks kept running in two threads until `stop()`."""

    def __init__(self, target: Target, nzb: bytes, paths: list[str], first: int = 0) -> None:
        self.target, self.nzb, self.paths = target, nzb, paths
        self.imports_added = first  # also the number in the next copy's name
        self.health_checks = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._guard, args=(self._imports,), daemon=True),
            threading.Thread(target=self._guard, args=(self._health,), daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(120)

    def _guard(self, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception as exc:  # reported with the result, not lost in a thread
            self.errors.append(f"{work.__name__}: {exc}")

    def waiting(self) -> int:
        counts = _call(self.target, "GET", "/api/queue/stats")["counts"]
        return int(counts.get("pending", 0)) + int(counts.get("processing", 0))

    def _imports(self) -> None:
        while not self._stop.is_set():
            if self.waiting() < QUEUED_IMPORTS:
                add_nzb(self.target, API_KEY, self.nzb, f"pack-{self.imports_added}")
                self.imports_added += 1
            else:
                self._stop.wait(0.1)

    def _health(self) -> None:
        while not self._stop.is_set():
            for path in self.paths:
                if self._stop.is_set():
                    return
                _call(self.target, "POST", f"/api/health/files{quote(path)}/check")
                self.health_checks += 1


def _completed(target: Target) -> int:
    return int(_call(target, "GET", "/api/queue/stats")["counts"].get("completed", 0))


def _seek_times(run: _Run, opts: ContendOptions, rng: random.Random) -> list[tuple[float, float]]:
    """(TTFB, time to the last byte) of `opts.seeks` random reads of `seek_mb`."""
    length = min(int(opts.seek_mb * 1024 * 1024), run.size)
    times = []
    for _ in range(opts.seeks):
        transfer = timed_get(run.target, run.path, rng.randrange(0, run.size - length + 1), length)
        times.append((transfer.ttfb, transfer.seconds))
    return times


def _figures(times: list[tuple[float, float]]) -> dict[str, Any]:
    ttfbs, fulls = [t for t, _ in times], [f for _, f in times]

    def ms(values: list[float], q: float) -> float:
        return round((percentile(values, q) or 0.0) * 1000, 1)

    return {
        "ttfb_p50_ms": ms(ttfbs, 50),
        "ttfb_p95_ms": ms(ttfbs, 95),
        "seek_p50_ms": ms(fulls, 50),
        "seek_p99_ms": ms(fulls, 99),
    }


def run_contend_bench(
    opts: ContendOptions, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Idle seeks, then the same seeks under import + health load; the figures."""
    log = progress or (lambda message: None)
    workdir = Path(tempfile.mkdtemp(prefix="altmount-contend-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        log("generating the releases and starting the fake NNTP server")
        pack = workdir / "pack"
        pack.mkdir()
        rng = np.random.default_rng(opts.seed + 7)
        for index in range(opts.files):
            data = rng.integers(0, 256, int(opts.file_mb * 1024 * 1024), dtype=np.uint8)
            (pack / f"Show.S01E{index + 1:02d}.mkv").write_bytes(data.tobytes())
        nntp_dir = workdir / "nntp"
        argv = ["-m", "altmount.bench.fakeserver", "--out", str(nntp_dir)]
        argv += ["--size-mb", str(opts.size_mb), "--click-size-mb", "1"]
        argv += ["--article-size", str(opts.article_size), "--latency-ms", str(opts.latency_ms)]
        argv += ["--seed", str(opts.seed), "--post", str(pack)]
        procs.append(subprocess.Popen(python_argv(*argv)))
        port_file = nntp_dir / "port"
        wait_for(lambda: port_file.exists() or procs[0].poll() is not None, 900, "fake server")
        if procs[0].poll() is not None:
            raise RuntimeError("the fake NNTP server exited before listening")
        http_port = free_port()
        config = workdir / "altmount.yaml"
        config.write_text(_config(workdir, int(port_file.read_text()), http_port, opts))
        log("importing the media file")
        imported = subprocess.run(
            altmount_argv(
                "import", str(nntp_dir / "release.nzb"), "--wait", "--config", str(config)
            ),
            check=True,
            capture_output=True,
            text=True,
        )
        path, size = imported.stdout.strip().splitlines()[0].split("\t")
        server, target = start_serve(config, http_port)
        procs.append(server)
        run = _Run(target, path, int(size), None)
        _seeks(run, 5, opts.seek_mb, random.Random(opts.seed + 1))  # open the connections
        nzb = (nntp_dir / "pack.nzb").read_bytes()
        quiet: list[tuple[float, float]] = []
        busy: list[tuple[float, float]] = []
        seconds, added, checks, errors = 0.0, 0, 0, []
        done_before = _completed(target)
        for round_ in range(opts.rounds):
            # Both phases of a round read the same offsets.
            log(f"round {round_ + 1}: {opts.seeks} seeks idle, then loaded")
            quiet += _seek_times(run, opts, random.Random(opts.seed + round_))
            load = _Load(target, nzb, [path], first=added)
            load.start()
            time.sleep(1.0)  # let the imports and checks fill their share of connections
            started = time.perf_counter()
            busy += _seek_times(run, opts, random.Random(opts.seed + round_))
            seconds += time.perf_counter() - started
            load.stop()
            added, checks = load.imports_added, checks + load.health_checks
            errors += load.errors
            wait_for(lambda load=load: load.waiting() == 0, 600, "the queued imports")
        idle, loaded = _figures(quiet), _figures(busy)
        result: dict[str, Any] = {
            "options": asdict(opts),
            "idle": idle,
            "loaded": loaded,
            "ratio": {
                key: round(loaded[key] / idle[key], 2) if idle[key] else None
                for key in ("ttfb_p50_ms", "seek_p50_ms")
            },
            "load": {
                "seconds": round(seconds, 1),
                "imports_added": added,
                "imports_completed": _completed(target) - done_before,
                "health_checks": checks,
                "errors": errors,
            },
        }
        return result
    finally:
        stop_processes(procs)
        shutil.rmtree(workdir, ignore_errors=True)


def contend_table(result: dict[str, Any]) -> list[str]:
    """The result as lines of text."""
    idle, loaded, ratio, load = result["idle"], result["loaded"], result["ratio"], result["load"]
    lines = [
        f"{'':24}{'idle':>10}{'loaded':>10}{'ratio':>8}",
        f"{'seek TTFB p50 ms':24}{idle['ttfb_p50_ms']:>10}{loaded['ttfb_p50_ms']:>10}"
        f"{ratio['ttfb_p50_ms']:>8}",
        f"{'seek TTFB p95 ms':24}{idle['ttfb_p95_ms']:>10}{loaded['ttfb_p95_ms']:>10}",
        f"{'seek done p50 ms':24}{idle['seek_p50_ms']:>10}{loaded['seek_p50_ms']:>10}"
        f"{ratio['seek_p50_ms']:>8}",
        f"{'seek done p99 ms':24}{idle['seek_p99_ms']:>10}{loaded['seek_p99_ms']:>10}",
        f"meanwhile ({load['seconds']} s): {load['imports_completed']} imports completed "
        f"({load['imports_added']} added), {load['health_checks']} health checks"
        + (f"; errors: {load['errors']}" if load["errors"] else ""),
    ]
    return lines
