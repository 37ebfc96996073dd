"""What an idle `altmount serve` costs: CPU of a server with providers and nothing to do.

One `altmount serve` with the demo provider on and two providers configured (INN2's
plain reader :1119 and its verified TLS reader :1563, as scripts/setup-peers.sh runs
them), the queue, health checks, heartbeat and metrics at their defaults. After
`--warmup` seconds (start-up probes, the demo release imported), the CPU of the
process (its threads included, from /proc/<pid>/stat) is read over `--seconds`; no
request is made meanwhile. Reported: CPU seconds and the percentage of one core.

    .venv/bin/python benchmarks/idle_cpu.py --seconds 60 --trials 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from nzbget_vs_altmount import INN2, INN2_TLS, INN2_TLS_CA, _live

from altmount.bench.common import free_port, wait_for
from altmount.bench.httpclient import Target

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def config(work: Path) -> tuple[Path, Target]:
    """A server with the demo provider and INN2 plain + TLS; defaults otherwise."""
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    document = {
        "webdav": {"port": port, "bind_address": "127.0.0.1", "user": "idle", "password": "idle"},
        "metadata": {"root_path": str(work / "metadata")},
        "database": {"path": str(work / "altmount.db")},
        "demo": {"enabled": True},
        "segment_cache": {"cache_path": str(work / "cache")},
        "log": {"level": "warn"},
        "providers": [
            {"name": "inn2", "host": INN2[0], "port": INN2[1], "tls": False},
            {
                "name": "inn2-tls",
                "host": INN2_TLS[0],
                "port": INN2_TLS[1],
                "tls": True,
                "ca_file": str(INN2_TLS_CA),
            },
        ],
    }
    path = work / "altmount.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path, Target("127.0.0.1", port, "idle", "idle")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=15)
    parser.add_argument("--trials", type=int, default=1)
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="idle-cpu-"))
    rows = []
    try:
        for trial in range(args.trials):
            path, target = config(work / str(trial))
            server = subprocess.Popen(
                [sys.executable, "-m", "altmount", "serve", "--config", str(path)],
                stdout=subprocess.DEVNULL,
            )
            try:
                wait_for(lambda t=target, s=server: _live(t, s), 60, "altmount serve")
                time.sleep(args.warmup)
                before, started = cpu_seconds(server.pid), time.monotonic()
                time.sleep(args.seconds)
                used, wall = cpu_seconds(server.pid) - before, time.monotonic() - started
            finally:
                server.terminate()
                server.wait(30)
            rows.append({"cpu_s": round(used, 3), "core_percent": round(100 * used / wall, 3)})
            print(f"trial {trial + 1}: {rows[-1]}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "seconds": args.seconds,
        "trials": rows,
        "median_core_percent": statistics.median(r["core_percent"] for r in rows),
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
