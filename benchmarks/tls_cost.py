"""What TLS costs `altmount serve`: the same release read in full from INN2, plain and TLS.

A release of `--size-mb` random bytes is posted to the local INN2 with nyuu (what
`make test` sets up: scripts/setup-peers.sh, whose TLS reader on 127.0.0.1:1563 has a
certificate signed by the test CA /etc/news/altmount-tls/ca.pem). Two `altmount serve`
processes import it once each: one reads INN2's plain reader (:1119), the other its TLS
reader (:1563) with the certificate verified against that CA (`ca_file`). Then, `--trials`
times and alternating, one GET of the whole file from each. With `--nzbget`, nzbget over
the same TLS reader downloads the NZB in each trial as well (an independent client).

Reported per run: wall seconds, MB/s of the file's bytes, CPU seconds of the serve
process (its threads included) during the GET, and CPU-s/GiB; then the medians and the
TLS/plain ratios of the same run. Every byte is md5-checked. INN2's own CPU (it encrypts)
is in no figure.

    .venv/bin/python benchmarks/tls_cost.py --size-mb 300 --trials 3 --nzbget --out tls.json

With `--compare-tree DIR` a third server runs the source tree DIR over TLS as well (an
A/B of two versions in one run, alternating).
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

from nzbget_vs_altmount import (
    API_KEY,
    INN2_TLS_CA,
    POSTED_NAME,
    _live,
    altmount_config,
    post,
    problem,
    run_nzbget,
)

from altmount.bench.common import ProcessTree, wait_for
from altmount.bench.httpclient import Target, add_nzb, timed_get, wait_first_byte
from altmount.importer.layout import release_dir

GIB = 1 << 30


def measured_get(target: Target, tree: ProcessTree, path: str, size: int, md5: str) -> dict:
    """One GET of the whole file: wall, MB/s, CPU of the serve process, CPU-s/GiB."""
    cpu = tree.cpu_seconds()
    transfer = timed_get(target, path, md5=md5)
    used = tree.cpu_seconds() - cpu
    if transfer.size != size:
        raise RuntimeError(f"altmount served {transfer.size} bytes of {size}")
    return {
        "wall_s": round(transfer.seconds, 2),
        "mb_s": round(size / transfer.seconds / 1e6, 1),
        "cpu_s": round(used, 2),
        "cpu_s_per_gib": round(used / size * GIB, 2),
    }


def nzbget_tls(nzb: Path, size: int, md5: str, connections: int) -> dict:
    """nzbget over the TLS reader, the certificate checked against the test CA."""
    figures = run_nzbget(nzb, size, md5, connections, INN2_TLS_CA)
    figures["cpu_s_per_gib"] = round(figures["cpu_s"] / size * GIB, 2)
    return figures


def medians(rows: list[dict]) -> dict:
    """The median of each figure over the trials."""
    return {key: statistics.median(r[key] for r in rows) for key in rows[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=300 * 1.048576)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--nzbget", action="store_true", help="also nzbget over TLS")
    parser.add_argument(
        "--compare-tree",
        type=Path,
        help="also a TLS server running the altmount source tree at this path "
        "(compiled, e.g. a worktree of an older commit): kind tls_compared",
    )
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    args = parser.parse_args()
    why = problem() or (
        None if INN2_TLS_CA.exists() else f"{INN2_TLS_CA} missing: run scripts/setup-peers.sh"
    )
    if why:
        print(why, file=sys.stderr)
        return 2
    size = int(args.size_mb * 1e6)
    work = Path(tempfile.mkdtemp(prefix="tls-cost-"))
    servers: dict[str, tuple[subprocess.Popen[bytes], Target, ProcessTree]] = {}
    try:
        print(f"posting {size:,} bytes to INN2 with nyuu", file=sys.stderr)
        nzb, md5 = post(work, size)
        path = f"{release_dir('/complete', 'complete', 'release')}/{POSTED_NAME}"
        kinds = ("plain", "tls", "tls_compared") if args.compare_tree else ("plain", "tls")
        for kind in kinds:
            ca_file = None if kind == "plain" else INN2_TLS_CA
            config, target = altmount_config(work / kind, args.connections, ca_file)
            tree_env = {**os.environ, "PYTHONPATH": str(args.compare_tree)}
            process = subprocess.Popen(
                [sys.executable, "-m", "altmount", "serve", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                env=tree_env if kind == "tls_compared" else None,
            )
            servers[kind] = (process, target, ProcessTree(process.pid))
            wait_for(lambda t=target, p=process: _live(t, p), 60, f"altmount serve ({kind})")
            add_nzb(target, API_KEY, nzb.read_bytes(), "release")
            wait_first_byte(target, path, timeout=120)
        trials = []
        for trial in range(args.trials):
            print(f"trial {trial + 1}: {', '.join(kinds)}", file=sys.stderr)
            row = {}
            for kind in kinds:
                _, target, tree = servers[kind]
                row[kind] = measured_get(target, tree, path, size, md5)
            if args.nzbget:
                row["nzbget_tls"] = nzbget_tls(nzb, size, md5, args.connections)
            trials.append(row)
        result: dict = {
            "size_bytes": size,
            "connections": args.connections,
            "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "trials": trials,
            "median": {kind: medians([t[kind] for t in trials]) for kind in trials[0]},
        }
        plain, tls = result["median"]["plain"], result["median"]["tls"]
        result["tls_minus_plain_cpu_s_per_gib"] = round(
            tls["cpu_s_per_gib"] - plain["cpu_s_per_gib"], 2
        )
        result["tls_over_plain_throughput"] = round(tls["mb_s"] / plain["mb_s"], 2)
        if args.compare_tree:
            other = result["median"]["tls_compared"]
            result["tls_over_compared_cpu_s_per_gib"] = round(
                tls["cpu_s_per_gib"] / other["cpu_s_per_gib"], 2
            )
    finally:
        for process, _, _ in servers.values():
            process.terminate()
            process.wait(15)
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
