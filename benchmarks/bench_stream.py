"""Full-GET benchmark: altmount serving a file from the fake NNTP server vs the raw ceiling.

Three processes: the fake NNTP server (benchmarks/fakeserver.py), `altmount serve`,
and this script as the HTTP client. Reported for altmount: MB/s of a full GET,
CPU seconds of the altmount process per GiB served, its peak RSS; and, in the
same run, the raw ceiling: the same articles fetched and decoded by a minimal
pipelined client (benchmarks/raw_fetch.py) with the same connection count.

    python benchmarks/bench_stream.py --size-mb 300 --connections 20 [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from raw_fetch import raw_fetch  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def write_config(workdir: Path, nntp_port: int, http_port: int, args) -> Path:
    config = workdir / "altmount.yaml"
    config.write_text(f"""
webdav: {{port: {http_port}, bind_address: 127.0.0.1, user: bench, password: bench}}
metadata: {{root_path: {workdir / 'metadata'}}}
database: {{path: {workdir / 'altmount.db'}}}
streaming:
  max_download_workers: {args.connections}
  streaming_chunk_size: {args.window_mb * 1024 * 1024}
  max_range_size: {max(32, args.window_mb * 2) * 1024 * 1024}
log: {{level: warn}}
providers:
  - {{name: fake, host: 127.0.0.1, port: {nntp_port}, tls: false,
      max_connections: {args.connections}, inflight_requests: {args.depth}}}
""")
    return config


def http_get(port: int, path: str, verify_md5: str | None) -> dict[str, float]:
    """GET the whole file, reading in 1 MiB chunks; returns bytes, seconds, TTFB."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    token = base64.b64encode(b"bench:bench").decode()
    started = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": f"Basic {token}"})
    response = conn.getresponse()
    if response.status != 200:
        raise RuntimeError(f"GET {path}: HTTP {response.status} {response.read()[:200]!r}")
    digest = hashlib.md5() if verify_md5 else None
    total = 0
    ttfb = None
    while chunk := response.read(1 << 20):
        if ttfb is None:
            ttfb = time.perf_counter() - started
        total += len(chunk)
        if digest:
            digest.update(chunk)
    elapsed = time.perf_counter() - started
    conn.close()
    if digest and digest.hexdigest() != verify_md5:
        raise RuntimeError("served bytes differ from the posted file (md5 mismatch)")
    return {"bytes": total, "seconds": elapsed, "ttfb_s": ttfb or elapsed}


def run(args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="altmount-bench-"))
    altmount = [sys.executable, "-m", "altmount"]
    procs: list[subprocess.Popen] = []
    try:
        procs.append(subprocess.Popen(
            [sys.executable, str(HERE / "fakeserver.py"), "--out", str(workdir / "nntp"),
             "--size-mb", str(args.size_mb), "--latency-ms", str(args.latency_ms)]))
        port_file = workdir / "nntp" / "port"
        wait_for(port_file.exists, 300, "the fake NNTP server")
        nntp_port = int(port_file.read_text())
        http_port = free_port()
        config = write_config(workdir, nntp_port, http_port, args)
        nzb = workdir / "nntp" / "release.nzb"
        started = time.perf_counter()
        imported = subprocess.run([*altmount, "import", str(nzb), "--wait", "--config", str(config)],
                                  check=True, capture_output=True, text=True)
        import_ms = (time.perf_counter() - started) * 1000
        path = imported.stdout.split("\t")[0].strip()
        server = subprocess.Popen([*altmount, "serve", "--config", str(config)])
        procs.append(server)

        def live() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", http_port), timeout=0.2):
                    return True
            except OSError:
                return False

        wait_for(live, 60, "altmount serve")
        md5 = (workdir / "nntp" / "release.md5").read_text() if args.verify else None
        cpu_before = cpu_seconds(server.pid)
        served = http_get(http_port, path, md5)
        cpu = cpu_seconds(server.pid) - cpu_before
        rss = peak_rss_mib(server.pid)

        from altmount.nzb import parse_nzb

        ids = [s.message_id for f in parse_nzb(nzb.read_bytes()).files for s in f.segments]
        raw = raw_fetch("127.0.0.1", nntp_port, ids, args.connections, args.depth)
        gib = served["bytes"] / (1 << 30)
        mb_s = served["bytes"] / served["seconds"] / 1e6
        return {
            "size_mb": args.size_mb, "connections": args.connections,
            "latency_ms": args.latency_ms, "window_mb": args.window_mb,
            "import_ms": round(import_ms),
            "altmount_mb_s": round(mb_s, 1),
            "altmount_ttfb_ms": round(served["ttfb_s"] * 1000, 1),
            "altmount_cpu_s_per_gib": round(cpu / gib, 2),
            "altmount_peak_rss_mib": round(rss, 1),
            "raw_mb_s": round(raw["mb_s"], 1),
            "ratio_to_raw": round(mb_s / raw["mb_s"], 3),
            "verified_md5": bool(args.verify),
        }
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--depth", type=int, default=4, help="pipelined requests per connection")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--window-mb", type=int, default=16, help="read-ahead per stream")
    parser.add_argument("--verify", action="store_true", help="md5 the served bytes")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        width = max(map(len, result))
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
