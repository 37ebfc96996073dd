"""nzbget vs altmount on INN2: the same NZB downloaded by nzbget and streamed by altmount.

A release of `--size-mb` random bytes is posted to the local INN2 with nyuu (what
`make test` sets up: scripts/setup-peers.sh). Then, `--trials` times and alternating:

* nzbget (Debian's) in standalone mode downloads the NZB: a temporary config
  pointing at INN2, no par check or repair, no unpack, files under /dev/shm so that
  the disk is not what is measured;
* `altmount serve` (started once, before the trials) imports the same NZB through
  the SABnzbd API (`mode=addfile`, a new name each trial) and the whole file is read
  with one GET over WebDAV.

Both use the same number of NNTP connections. Reported per client: wall time
(nzbget: start to exit; altmount: addfile to the last byte, the import included),
MB/s of the file's bytes and CPU seconds (nzbget's own, from its exit status;
altmount's serve process and its threads). Every byte both deliver is checked
against the posted file (md5).

    .venv/bin/python benchmarks/nzbget_vs_altmount.py --size-mb 300 --trials 3 --out result.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from altmount.bench.common import ProcessTree, free_port, wait_for
from altmount.bench.httpclient import Target, add_nzb, timed_get, wait_first_byte
from altmount.importer.layout import release_dir

ROOT = Path(__file__).resolve().parents[1]
NYUU = Path(os.environ.get("ALTMOUNT_NYUU", ROOT / "tools/poster/node_modules/.bin/nyuu"))
INN2 = ("127.0.0.1", 1119)
#: INN2's TLS reader (scripts/inn2-setup.sh): its certificate names localhost and is signed
#: by the test CA `INN2_TLS_CA`.
INN2_TLS = ("localhost", 1563)
INN2_TLS_CA = Path("/etc/news/altmount-tls/ca.pem")
GROUP = "alt.binaries.test"
ARTICLE_SIZE = 716_800
API_KEY = "nzbget-vs-altmount"
DAV = ("bench", "bench")
#: A media extension: altmount exposes only import.allowed_file_extensions.
POSTED_NAME = "release.mkv"


def problem() -> str | None:
    """Why the comparison cannot run here, or None."""
    try:
        with socket.create_connection(INN2, timeout=3) as sock:
            greeting = sock.makefile("rb").readline()
    except OSError as exc:
        return f"INN2 is not reachable on {INN2[0]}:{INN2[1]} ({exc}): run scripts/setup-peers.sh"
    if not greeting.startswith(b"200"):
        return f"INN2 answered {greeting[:60]!r}: run scripts/setup-peers.sh"
    if not NYUU.exists():
        return f"nyuu is not installed at {NYUU}: run scripts/setup-peers.sh"
    if shutil.which("nzbget") is None:
        return "nzbget is not installed: apt-get install nzbget"
    return None


def post(work: Path, size: int) -> tuple[Path, str]:
    """Post `size` random bytes with nyuu; (the NZB, md5 of the file)."""
    source = work / POSTED_NAME
    data = os.urandom(size)
    source.write_bytes(data)
    nzb = work / "release.nzb"
    server = f"-h {INN2[0]} -P {INN2[1]} -n 4 -g {GROUP} -a {ARTICLE_SIZE} -q"
    command = [str(NYUU), *server.split(), "-o", str(nzb), "-O", str(source)]
    # nyuu now and then dies of "Timer already set" when INN2 is busy: the post is retried.
    for attempt in range(3):
        if subprocess.run(command).returncode == 0:
            break
        print(f"nyuu failed (attempt {attempt + 1} of 3)", file=sys.stderr)
    else:
        raise RuntimeError("nyuu could not post the release to INN2 three times in a row")
    source.unlink()
    return nzb, hashlib.md5(data).hexdigest()


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def nzbget_config(main_dir: Path, connections: int, ca_file: Path | None = None) -> Path:
    """A standalone nzbget config: INN2 as the only server, no post-processing.

    With `ca_file`, INN2's TLS reader, its certificate checked against that CA.
    """
    host, port = INN2_TLS if ca_file else INN2
    options = {
        "MainDir": main_dir,
        "DestDir": main_dir / "dst",
        "InterDir": main_dir / "inter",
        "NzbDir": main_dir / "nzb",
        "QueueDir": main_dir / "queue",
        "TempDir": main_dir / "tmp",
        "LockFile": main_dir / "nzbget.lock",
        "LogFile": main_dir / "nzbget.log",
        "WebDir": "",
        "ConfigTemplate": "",
        "ScriptDir": "",
        "Server1.Active": "yes",
        "Server1.Name": "inn2",
        "Server1.Level": 0,
        "Server1.Host": host,
        "Server1.Port": port,
        "Server1.Encryption": "yes" if ca_file else "no",
        "Server1.JoinGroup": "no",
        "Server1.Connections": connections,
        "ArticleCache": 0,
        "DirectWrite": "yes",
        "CrcCheck": "yes",
        "ParCheck": "manual",
        "ParRepair": "no",
        "Unpack": "no",
        "DirectUnpack": "no",
        "HealthCheck": "none",
        "DupeCheck": "no",
        "AppendCategoryDir": "no",
        "OutputMode": "log",
        "WriteLog": "append",
    }
    if ca_file:
        options |= {"CertStore": ca_file, "CertCheck": "yes"}
    config = main_dir / "nzbget.conf"
    config.write_text("".join(f"{key}={value}\n" for key, value in options.items()))
    return config


def run_nzbget(
    nzb: Path, size: int, md5: str, connections: int, ca_file: Path | None = None
) -> dict[str, float]:
    """Download the NZB with nzbget in standalone mode (over TLS with `ca_file`); wall, CPU, MB/s."""
    scratch = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    main_dir = Path(tempfile.mkdtemp(prefix="nzbget-", dir=scratch))
    try:
        config = nzbget_config(main_dir, connections, ca_file)
        started = time.perf_counter()
        proc = subprocess.Popen(
            ["nzbget", "-c", str(config), str(nzb)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            log = (main_dir / "nzbget.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"nzbget exited {proc.returncode}\n{log}")
        outputs = [p for p in (main_dir / "dst").rglob("*") if p.is_file()]
        if len(outputs) != 1 or outputs[0].stat().st_size != size or file_md5(outputs[0]) != md5:
            raise RuntimeError(f"nzbget did not deliver the posted file: {outputs}")
        return _figures(wall, usage.ru_utime + usage.ru_stime, size)
    finally:
        shutil.rmtree(main_dir, ignore_errors=True)


def _figures(wall: float, cpu: float, size: int) -> dict[str, float]:
    return {
        "wall_s": round(wall, 2),
        "mb_s": round(size / wall / 1e6, 1),
        "cpu_s": round(cpu, 2),
    }


def altmount_config(
    work: Path, connections: int, ca_file: Path | None = None
) -> tuple[Path, Target]:
    """An altmount config reading from INN2 with the benchmarks' streaming settings.

    With `ca_file`, INN2's TLS reader, its certificate verified against that CA.
    """
    port = free_port()
    host, nntp_port = INN2_TLS if ca_file else INN2
    provider: dict[str, object] = {
        "name": "inn2-tls" if ca_file else "inn2",
        "host": host,
        "port": nntp_port,
        "tls": ca_file is not None,
        "max_connections": connections,
    }
    if ca_file:
        provider["ca_file"] = str(ca_file)
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
        # Off, so that every read measures the provider path, not the segment cache.
        "segment_cache": {"enabled": False, "memory_mb": 0},
        "log": {"level": "warn"},
        "providers": [provider],
    }
    work.mkdir(parents=True, exist_ok=True)
    path = work / "altmount.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, Target("127.0.0.1", port, *DAV)


def run_altmount(
    target: Target, tree: ProcessTree, nzb: Path, name: str, size: int, md5: str
) -> dict[str, float]:
    """Import the NZB as `name` through the SABnzbd API and GET the whole file."""
    path = f"{release_dir('/complete', 'complete', name)}/{POSTED_NAME}"
    cpu = tree.cpu_seconds()
    started = time.perf_counter()
    add_nzb(target, API_KEY, nzb.read_bytes(), name)
    wait_first_byte(target, path, timeout=120)
    imported = time.perf_counter()
    transfer = timed_get(target, path, md5=md5)
    if transfer.size != size:
        raise RuntimeError(f"altmount served {transfer.size} bytes of {size}")
    wall = time.perf_counter() - started
    return {
        **_figures(wall, tree.cpu_seconds() - cpu, size),
        "import_s": round(imported - started, 2),
        "get_mb_s": round(size / transfer.seconds / 1e6, 1),
    }


def summary(rows: list[dict[str, float]]) -> dict[str, object]:
    """Median and range of each figure over the trials."""
    return {
        key: {
            "median": statistics.median(r[key] for r in rows),
            "min": min(r[key] for r in rows),
            "max": max(r[key] for r in rows),
        }
        for key in rows[0]
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=300)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    args = parser.parse_args()
    why = problem()
    if why:
        print(why, file=sys.stderr)
        return 2
    size = int(args.size_mb * 1e6)
    work = Path(tempfile.mkdtemp(prefix="nzbget-vs-altmount-"))
    server = None
    try:
        print(f"posting {size:,} bytes to INN2 with nyuu", file=sys.stderr)
        nzb, md5 = post(work, size)
        config, target = altmount_config(work, args.connections)
        server = subprocess.Popen(
            [sys.executable, "-m", "altmount", "serve", "--config", str(config)],
            stdout=subprocess.DEVNULL,
        )
        wait_for(lambda: _live(target, server), 60, "altmount serve")
        tree = ProcessTree(server.pid)
        trials = []
        for trial in range(args.trials):
            print(f"trial {trial + 1}: nzbget, then altmount", file=sys.stderr)
            trials.append(
                {
                    "nzbget": run_nzbget(nzb, size, md5, args.connections),
                    "altmount": run_altmount(target, tree, nzb, f"trial-{trial}", size, md5),
                }
            )
        result = {
            "size_bytes": size,
            "connections": args.connections,
            "trials": trials,
            "nzbget": summary([t["nzbget"] for t in trials]),
            "altmount": summary([t["altmount"] for t in trials]),
        }
    finally:
        if server is not None:
            server.terminate()
            server.wait(15)
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


def _live(target: Target, server: subprocess.Popen[bytes]) -> bool:
    if server.poll() is not None:
        raise RuntimeError(f"altmount serve exited with code {server.returncode}")
    try:
        conn = target.connect(0.5)
        conn.request("GET", "/live")
        return conn.getresponse().status == 200
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
