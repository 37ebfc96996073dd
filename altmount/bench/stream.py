"""`altmount bench stream`: altmount serving over loopback against its own raw ceiling.

Three processes unless `--server` is given: the fake NNTP server
(`altmount.bench.fakeserver`, with latency, bandwidth cap and fault rates), the
altmount server under test (`altmount serve`, its decode workers included in its
CPU and memory), and this process as the HTTP client. Scenarios, in order:

(a) one sequential full read; (b) N concurrent users each reading a random range
(`--range-mb`, 100 MB by default); (c) random seeks reading 4 MiB each (TTFB and
time to complete the read); (d) click→first byte: SABnzbd `addfile` until the first
byte of the media file arrives over WebDAV. Then the raw ceiling: the same articles
fetched and decoded by a minimal pipelined client with the same connection count.
Each charged scenario reports altmount's CPU s/GiB and peak RSS; `--preset` runs with
one of the operator guide's streaming presets (`altmount.bench.presets`) and the
report carries the guide's memory estimate for scenario (b) beside the measured peak.
"""

from __future__ import annotations

import posixpath
import random
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from altmount.bench.common import (
    MIB,
    ProcessTree,
    RssSampler,
    free_port,
    percentile,
    wait_for,
    windowed_rates,
)
from altmount.bench.httpclient import Target, Transfer, add_nzb, timed_get, wait_first_byte
from altmount.bench.presets import PRESETS, guide_estimate_mib
from altmount.bench.rawfetch import raw_fetch
from altmount.selfexec import altmount_argv, python_argv

__all__ = [
    "API_KEY",
    "StreamOptions",
    "local_altmount",
    "remote_altmount",
    "run_stream_bench",
    "serve_config_text",
    "start_fakeserver",
    "start_serve",
    "stop_processes",
]

GIB = 1 << 30
API_KEY = "altmount-bench-key"


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """What `altmount bench stream` runs (the CLI options, one to one)."""

    size_mb: float = 300
    article_size: int = 716_800
    latency_ms: float = 0.0
    bandwidth_mbps: float = 0.0
    connections: int = 20
    depth: int = 4
    window_mb: int = 16
    pool: str = "thread"
    processes: int = 1
    users: tuple[int, ...] = (10,)
    range_mb: float = 100
    seeks: int = 50
    seek_mb: float = 4
    clicks: int = 3
    click_size_mb: float = 20
    missing_rate: float = 0.0
    corrupt_rate: float = 0.0
    disconnect_rate: float = 0.0
    verify: bool = False
    tls: bool = False
    seed: int = 1
    preset: str | None = None
    server: str | None = None
    path: str | None = None
    pid: int | None = None

    def streaming(self) -> tuple[int, int, int]:
        """(max_range_size MiB, streaming_chunk_size MiB, max_download_workers) of the run:
        the preset's, else derived from the window and the connection count."""
        if self.preset is not None:
            return PRESETS[self.preset]
        return max(32, self.window_mb * 2), self.window_mb, self.connections


@dataclass(slots=True)
class _Run:
    """What the scenarios share: where to read, whom to charge, what was served."""

    target: Target
    path: str
    size: int
    tree: ProcessTree | None
    served: int = 0
    cpu: float = 0.0
    peak_rss: float = 0.0


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _charge(run: _Run, scenario: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a scenario; add the served bytes, CPU s/GiB and peak RSS of altmount's tree."""
    tree = run.tree
    before = tree.cpu_seconds() if tree else 0.0
    peak_known = tree.reset_peak_rss() if tree else False
    result = scenario()
    cpu = (tree.cpu_seconds() - before) if tree else None
    served = result["bytes"]
    run.served += served
    if cpu is not None:
        run.cpu += cpu
    result["cpu_s_per_gib"] = round(cpu / (served / GIB), 2) if cpu is not None and served else None
    peak = tree.peak_rss_mib() if tree and peak_known else None
    result["peak_rss_mib"] = None if peak is None else round(peak, 1)
    run.peak_rss = max(run.peak_rss, peak or 0.0)
    return result


def _rates(transfers: list[Transfer]) -> dict[str, Any]:
    windows = [r for t in transfers for r in windowed_rates(t.samples, t.started)]
    total = sum(t.size for t in transfers)
    wall = max(t.ended for t in transfers) - min(t.started for t in transfers)
    mb_s = total / wall / 1e6 if wall > 0 else None
    p05 = percentile(windows, 5)
    return {
        "bytes": total,
        "seconds": round(wall, 3),
        "mb_s": None if mb_s is None else round(mb_s, 1),
        # Transfers shorter than one window: the mean rate is the only rate there is.
        "p05_mb_s": round(p05 if p05 is not None else (mb_s or 0.0) / len(transfers), 1),
    }


def _sequential(run: _Run, md5: str | None) -> dict[str, Any]:
    transfer = timed_get(run.target, run.path, md5=md5)
    return {**_rates([transfer]), "ttfb_ms": _ms(transfer.ttfb), "verified_md5": md5 is not None}


def _concurrent(run: _Run, users: int, range_mb: float, rng: random.Random) -> dict[str, Any]:
    length = min(int(range_mb * 1e6), run.size)
    starts = [rng.randrange(0, run.size - length + 1) for _ in range(users)]
    transfers: list[Transfer | None] = [None] * users
    errors: list[BaseException] = []

    def user(slot: int) -> None:
        try:
            transfers[slot] = timed_get(run.target, run.path, starts[slot], length)
        except BaseException as exc:  # reported below, in the calling thread
            errors.append(exc)

    threads = [threading.Thread(target=user, args=(i,)) for i in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    done = [t for t in transfers if t is not None]
    ttfbs = [t.ttfb for t in done]
    return {
        "users": users,
        "range_bytes": length,
        **_rates(done),
        "ttfb_p50_ms": _ms(percentile(ttfbs, 50)),
        "ttfb_p99_ms": _ms(percentile(ttfbs, 99)),
    }


def _seeks(run: _Run, count: int, seek_mb: float, rng: random.Random) -> dict[str, Any]:
    length = min(int(seek_mb * MIB), run.size)
    transfers = [
        timed_get(run.target, run.path, rng.randrange(0, run.size - length + 1), length)
        for _ in range(count)
    ]
    ttfbs = [t.ttfb for t in transfers]
    fulls = [t.seconds for t in transfers]
    return {
        "count": count,
        "read_bytes": length,
        "bytes": sum(t.size for t in transfers),
        "ttfb_p50_ms": _ms(percentile(ttfbs, 50)),
        "ttfb_p95_ms": _ms(percentile(ttfbs, 95)),
        "ttfb_p99_ms": _ms(percentile(ttfbs, 99)),
        "seek_p50_ms": _ms(percentile(fulls, 50)),
        "seek_p99_ms": _ms(percentile(fulls, 99)),
    }


def _clicks(run: _Run, nzb: bytes, count: int) -> dict[str, Any]:
    # The click release's NZB names no release, so its folder is the nzbname given.
    category_dir = posixpath.dirname(posixpath.dirname(run.path))
    times = []
    for i in range(count):
        name = f"click-{i}"
        started = time.perf_counter()
        add_nzb(run.target, API_KEY, nzb, name)
        wait_first_byte(run.target, f"{category_dir}/{name}/click.mkv", timeout=120)
        times.append(time.perf_counter() - started)
    return {
        "count": count,
        "p50_ms": _ms(percentile(times, 50)),
        "min_ms": _ms(min(times) if times else None),
        "max_ms": _ms(max(times) if times else None),
    }


def serve_config_text(
    workdir: Path,
    nntp_port: int,
    http_port: int,
    opts: StreamOptions,
    segment_cache: str = "{enabled: false, memory_mb: 0}",
) -> str:
    """The `altmount serve` config of a bench run: one provider, the fake server; the
    segment cache off unless `segment_cache` (a YAML flow mapping) says otherwise."""
    max_range_mib, chunk_mib, workers = opts.streaming()
    # Over TLS the certificate (for localhost) is verified against the fake server's CA.
    tls = f"tls: true, ca_file: {workdir / 'nntp' / 'ca.pem'}" if opts.tls else "tls: false"
    host = "localhost" if opts.tls else "127.0.0.1"
    return f"""
webdav: {{port: {http_port}, bind_address: 127.0.0.1, user: bench, password: bench}}
api: {{key_override: {API_KEY}}}
sabnzbd: {{enabled: true}}
metadata: {{root_path: {workdir / "metadata"}}}
database: {{path: {workdir / "altmount.db"}}}
import: {{queue_processing_interval_seconds: 0.1}}
engine: {{pool: {opts.pool}, processes: {opts.processes}}}
streaming:
  max_download_workers: {workers}
  streaming_chunk_size: {chunk_mib * MIB}
  max_range_size: {max_range_mib * MIB}
segment_cache: {segment_cache}
log: {{level: warn}}
providers:
  - {{name: fake, host: {host}, port: {nntp_port}, {tls},
      max_connections: {opts.connections}, inflight_requests: {opts.depth}}}
"""


def _streaming_report(opts: StreamOptions) -> dict[str, Any]:
    """The streaming settings of the run and the guide's memory estimate for scenario (b)
    (one active range per user)."""
    max_range_mib, chunk_mib, workers = opts.streaming()
    return {
        "preset": opts.preset,
        "max_range_size": max_range_mib * MIB,
        "streaming_chunk_size": chunk_mib * MIB,
        "max_download_workers": workers,
        "guide_estimate_mib": guide_estimate_mib(max_range_mib, workers, max(opts.users)),
    }


def start_serve(config: Path, http_port: int) -> tuple[subprocess.Popen[bytes], Target]:
    """`altmount serve` with `config` (listening on `http_port`), once it answers /live."""
    server = subprocess.Popen(altmount_argv("serve", "--config", str(config)))
    target = Target("127.0.0.1", http_port, "bench", "bench")

    def live() -> bool:
        if server.poll() is not None:
            raise RuntimeError(f"altmount serve exited with code {server.returncode}")
        try:
            target.connect(0.2).request("GET", "/live")
            return True
        except OSError:
            return False

    try:
        wait_for(live, 60, "altmount serve")
    except BaseException:
        stop_processes([server])
        raise
    return server, target


def stop_processes(procs: list[subprocess.Popen[bytes]]) -> None:
    """Terminate the processes, newest first; kill one that does not exit in 10 s."""
    for proc in reversed(procs):
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def start_fakeserver(workdir: Path, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    """The fake NNTP server (`altmount.bench.fakeserver ARGS`, writing to workdir/nntp)
    once it listens; returns the process and its port."""
    proc = subprocess.Popen(
        python_argv("-m", "altmount.bench.fakeserver", "--out", str(workdir / "nntp"), *args)
    )
    port_file = workdir / "nntp" / "port"
    try:
        wait_for(lambda: port_file.exists() or proc.poll() is not None, 900, "the fake NNTP server")
        if proc.poll() is not None:
            raise RuntimeError("the fake NNTP server exited before listening")
    except BaseException:
        stop_processes([proc])
        raise
    return proc, int(port_file.read_text())


@contextmanager
def local_altmount(opts: StreamOptions, log: Callable[[str], None]) -> Iterator[dict[str, Any]]:
    """Fake server + imported release + `altmount serve`; yields what the run needs."""
    workdir = Path(tempfile.mkdtemp(prefix="altmount-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        log("generating the release and starting the fake NNTP server")
        fake, nntp_port = start_fakeserver(
            workdir,
            "--size-mb",
            str(opts.size_mb),
            "--click-size-mb",
            str(opts.click_size_mb),
            "--article-size",
            str(opts.article_size),
            "--latency-ms",
            str(opts.latency_ms),
            "--bandwidth-mbps",
            str(opts.bandwidth_mbps),
            "--missing-rate",
            str(opts.missing_rate),
            "--corrupt-rate",
            str(opts.corrupt_rate),
            "--disconnect-rate",
            str(opts.disconnect_rate),
            "--seed",
            str(opts.seed),
            *(["--tls"] if opts.tls else []),
        )
        procs.append(fake)
        http_port = free_port()
        config = workdir / "altmount.yaml"
        config.write_text(serve_config_text(workdir, nntp_port, http_port, opts))
        log("importing the release")
        started = time.perf_counter()
        imported = subprocess.run(
            altmount_argv(
                "import", str(workdir / "nntp" / "release.nzb"), "--wait", "--config", str(config)
            ),
            check=True,
            capture_output=True,
            text=True,
        )
        import_ms = (time.perf_counter() - started) * 1000
        path, size = imported.stdout.strip().splitlines()[0].split("\t")
        server, target = start_serve(config, http_port)
        procs.append(server)
        from altmount.nzb import parse_nzb

        nzb = parse_nzb((workdir / "nntp" / "release.nzb").read_bytes())
        yield {
            "target": target,
            "path": path,
            "size": int(size),
            "pid": server.pid,
            "import_ms": round(import_ms),
            "nntp_port": nntp_port,
            "ca_file": str(workdir / "nntp" / "ca.pem") if opts.tls else None,
            "message_ids": [s.message_id for f in nzb.files for s in f.segments],
            "md5": (workdir / "nntp" / "release.md5").read_text() if opts.verify else None,
            "click_nzb": (workdir / "nntp" / "click.nzb").read_bytes(),
        }
    finally:
        stop_processes(procs)
        shutil.rmtree(workdir, ignore_errors=True)


def remote_altmount(opts: StreamOptions) -> dict[str, Any]:
    """What the scenarios need of an already-running altmount (`--server`, `--path`)."""
    if not opts.path:
        raise ValueError("--server needs --path: the WebDAV path of a file to read")
    target = Target.from_url(opts.server or "")
    conn = target.connect()
    conn.request("HEAD", opts.path, headers=target.headers())
    response = conn.getresponse()
    response.read()
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"HEAD {opts.path}: HTTP {response.status}")
    return {
        "target": target,
        "path": opts.path,
        "size": int(response.getheader("Content-Length") or 0),
        "pid": opts.pid,
        "import_ms": None,
        "nntp_port": None,
        "ca_file": None,
        "message_ids": [],
        "md5": None,
        "click_nzb": None,
    }


def _process_shares(target: Target) -> list[dict[str, Any]]:
    """Bytes each serving process served (`/api/health`'s processes component), and its
    share of the total: how evenly the kernel spread the connections."""
    import json

    deadline = time.monotonic() + 5
    while True:  # each process publishes its figures once a second
        conn = target.connect(timeout=10)
        try:
            conn.request("GET", "/api/health", headers=target.headers())
            report = json.loads(conn.getresponse().read())["components"]["processes"]
        finally:
            conn.close()
        rows = report.get("processes", [])
        total = sum(row["bytes_served"] for row in rows)
        if time.monotonic() > deadline or (rows and all(row["bytes_served"] for row in rows)):
            break
        time.sleep(0.5)
    return [
        {
            "index": row["index"],
            "bytes_served": row["bytes_served"],
            "share": round(row["bytes_served"] / total, 3) if total else None,
        }
        for row in rows
    ]


def run_stream_bench(
    opts: StreamOptions, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Run every scenario once; returns the nested result (see the module docstring)."""
    log = progress or (lambda message: None)
    rng = random.Random(opts.seed)
    setup = local_altmount(opts, log) if opts.server is None else nullcontext(remote_altmount(opts))
    with setup as env:
        tree = ProcessTree(env["pid"]) if env["pid"] else None
        run = _Run(env["target"], env["path"], env["size"], tree)
        sampler = RssSampler(tree) if tree else None
        result: dict[str, Any] = {
            "options": asdict(opts),
            "import_ms": env["import_ms"],
            "streaming": _streaming_report(opts),
        }
        with sampler or nullcontext():
            log("(a) sequential full read")
            result["sequential"] = _charge(run, lambda: _sequential(run, env["md5"]))
            sweep = []
            for users in opts.users:
                log(f"(b) {users} concurrent users")
                sweep.append(_charge(run, lambda u=users: _concurrent(run, u, opts.range_mb, rng)))
            result["concurrent"] = sweep[-1]
            result["concurrent_sweep"] = [
                {k: s[k] for k in ("users", "mb_s", "p05_mb_s", "peak_rss_mib")} for s in sweep
            ]
            log(f"(c) {opts.seeks} random seeks")
            result["seeks"] = _charge(run, lambda: _seeks(run, opts.seeks, opts.seek_mb, rng))
            if env["click_nzb"] is not None and opts.clicks:
                log(f"(d) {opts.clicks} × click→first byte")
                result["click"] = _clicks(run, env["click_nzb"], opts.clicks)
            else:
                result["click"] = {"count": 0, "p50_ms": None, "min_ms": None, "max_ms": None}
        raw_mb_s = raw_cpu = None
        if env["nntp_port"] is not None:
            log("raw ceiling")
            raw = raw_fetch(
                "127.0.0.1",
                env["nntp_port"],
                env["message_ids"],
                opts.connections,
                opts.depth,
                env["ca_file"],
            )
            raw_mb_s = round(raw["mb_s"], 1)
            raw_cpu = round(raw["cpu_s_per_gib"], 2)
        if opts.processes > 1:
            result["process_shares"] = _process_shares(env["target"])
        seq = result["sequential"]["mb_s"]
        result["raw"] = {
            "mb_s": raw_mb_s,
            "ratio": round(seq / raw_mb_s, 3) if raw_mb_s and seq else None,
            "cpu_s_per_gib": raw_cpu,
        }
        result["process"] = {
            "cpu_s_per_gib": round(run.cpu / (run.served / GIB), 2)
            if tree and run.served
            else None,
            "peak_rss_mib": round(max(run.peak_rss, tree.peak_rss_mib()), 1) if tree else None,
            "peak_rss_tree_mib": round(sampler.peak_tree_mib, 1) if sampler else None,
            "rss_samples": sampler.samples if sampler else [],
        }
    return result
