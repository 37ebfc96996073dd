"""`altmount bench cached` and `altmount bench scan`: what the segment cache saves.

`cached`: one file on the fake server (no latency), `altmount serve` once with the
RAM tier holding it and once with the disk tier alone (RAM tier 0, so cached bytes go
out with sendfile); per tier a first read from the provider, then reads from the
cache, each with MB/s and the server's CPU s/GiB (from /proc). In the same run, the
ceiling of this machine's loopback: a minimal server that sendfiles the same number
of bytes from a file to the same client.

`scan`: N files and a real Matroska file (ffmpeg, when installed) on the fake server
with 30 ms latency, served with the default cache: the BODY requests of a first
ffprobe right after import, then a media server's probe pattern (10 MiB head, 1 MiB
tail, three 1 MiB seeks) over every file, twice; per pass the provider's BODY count
(counted by the fake server) and the latency of each kind of read.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from altmount.bench.common import MIB, ProcessTree, free_port, percentile, wait_for
from altmount.bench.fakeserver import generate
from altmount.bench.httpclient import Target, timed_get
from altmount.bench.stream import (
    StreamOptions,
    serve_config_text,
    start_fakeserver,
    start_serve,
    stop_processes,
)
from altmount.selfexec import altmount_argv

__all__ = ["run_cached_bench", "run_scan_bench"]

GIB = 1 << 30


def _import(config: Path, nzb: Path) -> list[tuple[str, int]]:
    """`altmount import NZB --wait`: (path, size) of each imported file."""
    done = subprocess.run(
        altmount_argv("import", str(nzb), "--wait", "--config", str(config)),
        check=True,
        capture_output=True,
        text=True,
    )
    rows = [line.split("\t") for line in done.stdout.strip().splitlines()]
    return [(path, int(size)) for path, size in rows]


def _segments(nzb: Path) -> int:
    """How many articles an NZB names."""
    from altmount.nzb import parse_nzb

    return sum(len(f.segments) for f in parse_nzb(nzb.read_bytes()).files)


def _commands(workdir: Path, fake: subprocess.Popen[bytes]) -> dict[str, int]:
    """The commands the fake server has answered so far (it writes them on SIGUSR1)."""
    out = workdir / "nntp" / "commands.json"
    out.unlink(missing_ok=True)
    fake.send_signal(signal.SIGUSR1)
    wait_for(out.exists, 30, "the fake server's command counts")
    return json.loads(out.read_text())


def _bodies(workdir: Path, fake: subprocess.Popen[bytes]) -> int:
    """BODY requests the fake server answered, once none has come for 0.5 s (a client that
    hangs up leaves the read-ahead it caused in flight: those count for it too)."""
    last = _commands(workdir, fake).get("BODY", 0)
    while True:
        time.sleep(0.5)
        now = _commands(workdir, fake).get("BODY", 0)
        if now == last:
            return now
        last = now


def _cache_report(target: Target) -> dict[str, Any]:
    """The `cache` figures of /api/health/streaming."""
    conn = target.connect()
    try:
        conn.request("GET", "/api/health/streaming", headers=target.headers())
        return json.loads(conn.getresponse().read())["cache"]
    finally:
        conn.close()


def _timed_read(target: Target, path: str, tree: ProcessTree) -> dict[str, Any]:
    before = tree.cpu_seconds()
    transfer = timed_get(target, path)
    cpu = tree.cpu_seconds() - before
    return {
        "mb_s": round(transfer.size / transfer.seconds / 1e6, 1),
        "cpu_s_per_gib": round(cpu / (transfer.size / GIB), 3),
        "bytes": transfer.size,
    }


class _SendfileCeiling:
    """A one-request HTTP server that sends a file with os.sendfile (the loopback ceiling)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.cpu = 0.0

    def serve_one(self) -> None:
        conn, _ = self.sock.accept()
        started = time.thread_time()
        with conn, open(self.path, "rb") as source:
            conn.recv(65536)
            size = os.fstat(source.fileno()).st_size
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            offset = 0
            while offset < size:
                offset += os.sendfile(conn.fileno(), source.fileno(), offset, size - offset)
        self.cpu = time.thread_time() - started


def _ceiling(workdir: Path, size: int) -> dict[str, Any]:
    """Loopback ceiling: the same client reading `size` bytes sendfiled by a minimal server."""
    path = workdir / "ceiling.bin"
    path.write_bytes(generate(size, 7))
    server = _SendfileCeiling(path)
    thread = threading.Thread(target=server.serve_one)
    thread.start()
    transfer = timed_get(Target("127.0.0.1", server.port), "/ceiling")
    thread.join()
    server.sock.close()
    path.unlink()
    return {
        "mb_s": round(transfer.size / transfer.seconds / 1e6, 1),
        "cpu_s_per_gib": round(server.cpu / (transfer.size / GIB), 3),
    }


def run_cached_bench(
    size_mb: float, reads: int, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Reads of one file from the provider, the RAM tier and the disk tier (see above)."""
    log = progress or (lambda message: None)
    workdir = Path(tempfile.mkdtemp(prefix="altmount-bench-cached-"))
    procs: list[subprocess.Popen[bytes]] = []
    opts = StreamOptions(size_mb=size_mb)
    ram_mb = int(size_mb) + 64
    tiers = {
        "ram": f"{{enabled: false, memory_mb: {ram_mb}}}",
        "disk": f"{{enabled: true, cache_path: {workdir / 'disk'}, memory_mb: 0}}",
    }
    result: dict[str, Any] = {"size_mb": size_mb, "reads": reads}
    try:
        log("generating the file and starting the fake NNTP server")
        fake, nntp_port = start_fakeserver(
            workdir, "--size-mb", str(size_mb), "--click-size-mb", "1"
        )
        procs.append(fake)
        path = ""
        for tier, cache in tiers.items():
            http_port = free_port()
            config = workdir / f"{tier}.yaml"
            text = serve_config_text(workdir, nntp_port, http_port, opts, segment_cache=cache)
            budget = f"streaming:\n  memory_budget_mb: {max(512, ram_mb + 128)}\n"
            config.write_text(text.replace("streaming:\n", budget, 1))
            if not path:
                log("importing")
                path = _import(config, workdir / "nntp" / "release.nzb")[0][0]
                segments = _segments(workdir / "nntp" / "release.nzb")
            server, target = start_serve(config, http_port)
            procs.append(server)
            tree = ProcessTree(server.pid)
            log(f"{tier}: first read (from the provider)")
            first = _timed_read(target, path, tree)
            # The disk tier writes in the background and skips what would pile up: read
            # again until it holds the whole file (or three tries).
            for _ in range(3):
                report = _cache_report(target)
                if tier == "ram" or report["disk"]["entries"] >= segments:
                    break
                timed_get(target, path)
            bodies = _bodies(workdir, fake)
            cached = []
            for i in range(reads):
                log(f"{tier}: cached read {i + 1}")
                cached.append(_timed_read(target, path, tree))
            report = _cache_report(target)
            best = max(cached, key=lambda r: r["mb_s"])
            result[tier] = {
                "provider_read": first,
                "cached_reads": cached,
                "cached_best_mb_s": best["mb_s"],
                "cached_cpu_s_per_gib_median": sorted(r["cpu_s_per_gib"] for r in cached)[
                    len(cached) // 2
                ],
                "body_during_cached_reads": _bodies(workdir, fake) - bodies,
                "sendfile_segments": report.get("sendfile_segments"),
                "ratio_cached_to_provider": round(best["mb_s"] / first["mb_s"], 2),
            }
            stop_processes([procs.pop()])
        log("loopback ceiling (a minimal sendfile server)")
        ceiling = _ceiling(workdir, int(size_mb * MIB))
        result["loopback_sendfile_ceiling"] = ceiling
        for tier in tiers:
            result[tier]["ratio_to_ceiling"] = round(
                result[tier]["cached_best_mb_s"] / ceiling["mb_s"], 2
            )
    finally:
        stop_processes(procs)
        shutil.rmtree(workdir, ignore_errors=True)
    return result


#: A media server's probe of a new file: (name, start as a fraction of the size or a
#: negative offset from the end, bytes).
PROBE = (
    ("head", 0.0, 10 * MIB),
    ("tail", -MIB, MIB),
    ("seek25", 0.25, MIB),
    ("seek50", 0.5, MIB),
    ("seek75", 0.75, MIB),
)


def _probe_pass(target: Target, files: list[tuple[str, int]]) -> dict[str, list[float]]:
    """The probe pattern over every file; seconds per read, by kind."""
    times: dict[str, list[float]] = {name: [] for name, _, _ in PROBE}
    for path, size in files:
        for name, where, length in PROBE:
            length = min(length, size)
            start = int(where * size) if where >= 0 else size + int(where)
            start = max(0, min(start, size - length))
            times[name].append(timed_get(target, path, start, length).seconds)
    return times


def _ffprobe(target: Target, path: str) -> float:
    """Run ffprobe on the file over HTTP; returns its wall time (raises if it fails)."""
    url = f"http://{target.user}:{target.password}@{target.host}:{target.port}{quote(path)}"
    started = time.perf_counter()
    subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", url],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def _make_media(folder: Path) -> bool:
    """A 40 s 720p H.264/AAC Matroska file (TESTING.md's recipe); False without ffmpeg."""
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        return False
    folder.mkdir(parents=True)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=24",
         "-f", "lavfi", "-i", "sine", "-t", "40", "-c:v", "libx264", "-preset", "ultrafast",
         "-c:a", "aac", str(folder / "movie.mkv")],
        check=True,
    )  # fmt: skip
    return True


def run_scan_bench(
    files: int,
    file_mb: float,
    latency_ms: float,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """A library scan twice over N files, and a first ffprobe after import (see above)."""
    log = progress or (lambda message: None)
    workdir = Path(tempfile.mkdtemp(prefix="altmount-bench-scan-"))
    procs: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {"files": files, "file_mb": file_mb, "latency_ms": latency_ms}
    try:
        log("generating the files")
        scan = workdir / "scan"
        scan.mkdir()
        for i in range(files):
            (scan / f"episode-{i:02d}.mkv").write_bytes(generate(int(file_mb * MIB), 100 + i))
        media = _make_media(workdir / "probe")
        posts = ["--post", str(scan)] + (["--post", str(workdir / "probe")] if media else [])
        log("starting the fake NNTP server")
        fake, nntp_port = start_fakeserver(
            workdir, "--size-mb", "1", "--click-size-mb", "1",
            "--latency-ms", str(latency_ms), *posts,
        )  # fmt: skip
        procs.append(fake)
        http_port = free_port()
        config = workdir / "altmount.yaml"
        cache = f"{{enabled: true, cache_path: {workdir / 'cache'}}}"
        opts = StreamOptions()
        config.write_text(
            serve_config_text(workdir, nntp_port, http_port, opts, segment_cache=cache)
        )
        server, target = start_serve(config, http_port)
        procs.append(server)
        if media:
            log("importing the Matroska file, then a first ffprobe")
            movie = _import(config, workdir / "nntp" / "probe.nzb")[0][0]
            before = _bodies(workdir, fake)
            seconds = _ffprobe(target, movie)
            first = _bodies(workdir, fake) - before
            seconds_again = _ffprobe(target, movie)
            again = _bodies(workdir, fake) - before - first
            result["ffprobe"] = {
                "first_after_import_body": first,
                "first_seconds": round(seconds, 3),
                "second_body": again,
                "second_seconds": round(seconds_again, 3),
            }
        else:
            result["ffprobe"] = None
        log(f"importing {files} files")
        listed = _import(config, workdir / "nntp" / "scan.nzb")
        for number in (1, 2):
            log(f"probe pass {number}")
            before = _bodies(workdir, fake)
            started = time.perf_counter()
            times = _probe_pass(target, listed)
            wall = time.perf_counter() - started
            result[f"pass{number}"] = {
                "body": _bodies(workdir, fake) - before,
                "seconds": round(wall, 3),
                **{
                    f"{name}_ms": {
                        "p50": round(percentile(values, 50) * 1000, 1),
                        "max": round(max(values) * 1000, 1),
                    }
                    for name, values in times.items()
                },
            }
        first, second = result["pass1"], result["pass2"]
        result["ratio_pass2_to_pass1_seconds"] = round(second["seconds"] / first["seconds"], 3)
    finally:
        stop_processes(procs)
        shutil.rmtree(workdir, ignore_errors=True)
    return result
