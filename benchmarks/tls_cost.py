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
from nzbget_vs_altmount import (
    API_KEY,
    DAV,
    INN2,
    POSTED_NAME,
    _live,
    nzbget_config,
    post,
    problem,
    run_nzbget,
)

from altmount.bench.common import ProcessTree, free_port, wait_for
from altmount.bench.httpclient import Target, add_nzb, timed_get, wait_first_byte
from altmount.importer.layout import release_dir

TLS_PORT = 1563
CA_FILE = Path("/etc/news/altmount-tls/ca.pem")
GIB = 1 << 30


def server_config(work: Path, connections: int, tls: bool) -> tuple[Path, Target]:
    """An altmount config reading INN2 plain or over verified TLS, 20 connections."""
    port = free_port()
    provider = {
        "name": "inn2-tls" if tls else "inn2",
        "host": "localhost" if tls else INN2[0],
        "port": TLS_PORT if tls else INN2[1],
        "tls": tls,
        "max_connections": connections,
    }
    if tls:
        provider["ca_file"] = str(CA_FILE)
    config = {
        "webdav": {"port": port, "bind_address": "127.0.0.1", "user": DAV[0], "password": DAV[1]},
        "api": {"key_override": API_KEY},
        "sabnzbd": {"enabled": True},
        "metadata": {"root_path": str(work / "metadata")},
        "database": {"path": str(work / "altmount.db")},
        "demo": {"enabled": False},
        "import": {"queue_processing_interval_seconds": 0.1},
        "streaming": {
            "max_download_workers": connections,
            "streaming_chunk_size": 16 << 20,
            "max_range_size": 32 << 20,
        },
        "log": {"level": "warn"},
        "providers": [provider],
    }
    work.mkdir(parents=True, exist_ok=True)
    path = work / "altmount.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, Target("127.0.0.1", port, *DAV)


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
    import nzbget_vs_altmount as peer

    def config(main_dir: Path, count: int) -> Path:
        path = nzbget_config(main_dir, count)
        text = path.read_text()
        text = text.replace(f"Server1.Port={INN2[1]}", f"Server1.Port={TLS_PORT}")
        text = text.replace("Server1.Host=127.0.0.1", "Server1.Host=localhost")
        text = text.replace("Server1.Encryption=no", "Server1.Encryption=yes")
        path.write_text(text + f"CertStore={CA_FILE}\nCertCheck=yes\n")
        return path

    plain, peer.nzbget_config = peer.nzbget_config, config
    try:
        figures = run_nzbget(nzb, size, md5, connections)
    finally:
        peer.nzbget_config = plain
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
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    args = parser.parse_args()
    why = problem() or (None if CA_FILE.exists() else f"{CA_FILE} missing: run setup-peers.sh")
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
        for kind in ("plain", "tls"):
            config, target = server_config(work / kind, args.connections, kind == "tls")
            # SSL_CERT_FILE too, so that builds from before `ca_file` verify the same way.
            env = {**os.environ, "SSL_CERT_FILE": str(CA_FILE)} if kind == "tls" else None
            process = subprocess.Popen(
                [sys.executable, "-m", "altmount", "serve", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                env=env,
            )
            servers[kind] = (process, target, ProcessTree(process.pid))
            wait_for(lambda t=target, p=process: _live(t, p), 60, f"altmount serve ({kind})")
            add_nzb(target, API_KEY, nzb.read_bytes(), "release")
            wait_first_byte(target, path, timeout=120)
        trials = []
        for trial in range(args.trials):
            print(f"trial {trial + 1}: plain, TLS", file=sys.stderr)
            row = {}
            for kind in ("plain", "tls"):
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
