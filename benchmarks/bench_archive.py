"""Archive benchmark (issue 4): what streaming from inside a stored archive costs, and
how many provider round trips importing an archive set takes.

Streaming: the same random media bytes are posted, to the fake NNTP server
(`altmount.bench.fakeserver --post`, its own process), as (a) a plain file, (b) a
stored multi-volume RAR5 set (`rar a -m0 -v50m`), (c) the same with a password (`-p`:
AES-256 data) and with encrypted headers too (`-hp`), (d) a stored 7z split (`7zz a
-mx=0 -v50m`) and the same AES-encrypted with encrypted headers (`-p -mhe=on`). Each
is added to one `altmount serve` through SABnzbd `addfile` (a password as
`{{password}}` in the NZB name) and timed until its first byte is served; then each
variant's media file is read in full over WebDAV and md5-checked, once per trial, in
an order that alternates between trials. Reported per variant (median over trials):
MB/s, CPU seconds of altmount's process tree per GiB served, peak RSS (VmHWM) of the
altmount process during the read.

Import (`--latency-ms` > 0): in this process, an Engine imports a 10-volume 7z split
with encrypted headers (`-mhe=on`), a 20-volume RAR5 set and the same file posted
plain, over the fake server with that latency before every answer, connections
already open. Reported: ms, round trips (ms / latency), the archive stage's ms and
the BODY commands of the import (header articles fetched, first segments included).

    make test   # once: the venv, rar and 7zz
    .venv/bin/python benchmarks/bench_archive.py [--size-mb 256] [--trials 3] \\
        [--latency-ms 50] [--out result.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_import import engine_for
from twisted.internet import defer, task

from altmount.bench.common import ProcessTree, free_port, wait_for
from altmount.bench.fakeserver import generate
from altmount.bench.httpclient import Target, add_nzb, timed_get, wait_first_byte
from altmount.bench.stream import (
    API_KEY,
    StreamOptions,
    serve_config_text,
    start_serve,
    stop_processes,
)
from altmount.testing.articles import post_release
from altmount.testing.nntpserver import Faults, listen

GIB = 1 << 30
MEDIA = "Bench.Movie.2026.1080p.mkv"
PASSWORD = "bench-secret"
ARTICLE = 716_800

#: Variant → (archiver command line before the archive name, password or None).
VARIANTS: dict[str, tuple[list[str], str | None]] = {
    "plain": ([], None),
    "rar5": (["rar", "a", "-idq", "-ma5", "-m0", "-v50m"], None),
    "rar5-p": (["rar", "a", "-idq", "-ma5", "-m0", "-v50m", f"-p{PASSWORD}"], PASSWORD),
    "rar5-hp": (["rar", "a", "-idq", "-ma5", "-m0", "-v50m", f"-hp{PASSWORD}"], PASSWORD),
    "7z": (["7zz", "a", "-bd", "-bso0", "-mx=0", "-v50m"], None),
    "7z-aes-mhe": (
        ["7zz", "a", "-bd", "-bso0", "-mx=0", "-v50m", f"-p{PASSWORD}", "-mhe=on"],
        PASSWORD,
    ),
}


def archive(command: list[str], media: Path, out: Path) -> None:
    """Write `media` into folder `out` as the archive `command` makes (plain: a copy)."""
    out.mkdir(parents=True)
    if not command:
        shutil.copy(media, out / media.name)
        return
    name = "bench.rar" if command[0] == "rar" else "bench.7z"
    subprocess.run([*command, str(out / name), media.name], cwd=media.parent, check=True)


def start_altmount(workdir: Path, folders: list[Path], connections: int):
    """The fake server posting `folders` and `altmount serve`; (procs, target, nzbs)."""
    python = sys.executable
    nntp = workdir / "nntp"
    procs = [
        subprocess.Popen(
            [
                python,
                "-m",
                "altmount.bench.fakeserver",
                "--out",
                str(nntp),
                "--size-mb",
                "1",
                "--click-size-mb",
                "1",
                "--article-size",
                str(ARTICLE),
                *[arg for folder in folders for arg in ("--post", str(folder))],
            ]
        )
    ]
    port_file = nntp / "port"
    wait_for(lambda: port_file.exists() or procs[0].poll() is not None, 900, "the fake server")
    if procs[0].poll() is not None:
        raise RuntimeError("the fake NNTP server exited before listening")
    http_port = free_port()
    config = workdir / "altmount.yaml"
    opts = StreamOptions(connections=connections)
    config.write_text(serve_config_text(workdir, int(port_file.read_text()), http_port, opts))
    server, target = start_serve(config, http_port)
    procs.append(server)
    nzbs = {folder.name: (nntp / f"{folder.name}.nzb").read_bytes() for folder in folders}
    return procs, target, nzbs


def imported_folder(target: Target, name: str, timeout: float = 300) -> str:
    """Poll SABnzbd `history` until the NZB added as `name` is done; its WebDAV folder.

    Raises RuntimeError with the import's failure message."""
    found: list[dict[str, Any]] = []

    def done() -> bool:
        conn = target.connect()
        try:
            conn.request("GET", f"/sabnzbd/api?mode=history&output=json&apikey={API_KEY}")
            slots = json.loads(conn.getresponse().read())["history"]["slots"]
        finally:
            conn.close()
        found[:] = [s for s in slots if s["nzb_name"].removesuffix(".nzb") == name]
        return bool(found)

    wait_for(done, timeout, f"the import of {name}")
    if found[0]["status"] != "Completed":
        raise RuntimeError(f"import of {name} failed: {found[0]['fail_message']}")
    return found[0]["storage"]


def stream_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Post, import and read every variant; per-trial and median results."""
    workdir = Path(tempfile.mkdtemp(prefix="altmount-bench-archive-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        data = generate(int(args.size_mb * 1024 * 1024), args.seed)
        md5 = hashlib.md5(data).hexdigest()
        media = workdir / "src" / MEDIA
        media.parent.mkdir()
        media.write_bytes(data)
        del data
        folders = []
        for name, (command, _) in VARIANTS.items():
            print(f"building {name}", file=sys.stderr)
            archive(command, media, workdir / "posted" / name)
            folders.append(workdir / "posted" / name)
        media.unlink()
        volumes = {f.name: len(list(f.iterdir())) for f in folders}
        print("posting and starting altmount serve", file=sys.stderr)
        procs, target, nzbs = start_altmount(workdir, folders, args.connections)
        tree = ProcessTree(procs[-1].pid)
        paths, import_ms = {}, {}
        for name, (_, password) in VARIANTS.items():
            started = time.perf_counter()
            add_nzb(target, API_KEY, nzbs[name], f"{name}{{{{{password}}}}}" if password else name)
            paths[name] = f"{imported_folder(target, name)}/{MEDIA}"
            wait_first_byte(target, paths[name], timeout=120)
            import_ms[name] = round((time.perf_counter() - started) * 1000)
        trials: list[dict[str, Any]] = []
        order = list(VARIANTS)
        for trial in range(args.trials):
            for name in order if trial % 2 == 0 else order[::-1]:
                cpu_before = tree.cpu_seconds()
                tree.reset_peak_rss()
                transfer = timed_get(target, paths[name], md5=md5)
                cpu = tree.cpu_seconds() - cpu_before
                row = {
                    "trial": trial,
                    "variant": name,
                    "bytes": transfer.size,
                    "mb_s": round(transfer.size / transfer.seconds / 1e6, 1),
                    "cpu_s_per_gib": round(cpu / (transfer.size / GIB), 2),
                    "peak_rss_mib": round(tree.peak_rss_mib(), 1),
                }
                print(json.dumps(row), file=sys.stderr)
                trials.append(row)
        medians = {
            name: {
                "volumes": volumes[name],
                "import_ms": import_ms[name],
                **{
                    key: statistics.median(r[key] for r in trials if r["variant"] == name)
                    for key in ("mb_s", "cpu_s_per_gib", "peak_rss_mib")
                },
            }
            for name in VARIANTS
        }
        return {"size_mib": args.size_mb, "md5_verified": True, "trials": trials, **medians}
    finally:
        stop_processes(procs)
        shutil.rmtree(workdir, ignore_errors=True)


def import_sets(size: int, seed: int) -> dict[str, dict[str, bytes]]:
    """The import part's releases: plain, a 10-volume -mhe 7z split, a 20-volume RAR5 set."""
    with tempfile.TemporaryDirectory(prefix="altmount-bench-archive-") as folder:
        media = Path(folder) / "src" / MEDIA
        media.parent.mkdir()
        media.write_bytes(generate(size, seed))
        volume = f"{size // 10 // 1024 + 1}k"
        rar_volume = f"{size // 20 // 1024 + 1}k"
        commands = {
            "plain": [],
            "7z-mhe x10": ["7zz", "a", "-bd", "-bso0", "-mx=0", f"-v{volume}"]
            + [f"-p{PASSWORD}", "-mhe=on"],
            "rar5 x20": ["rar", "a", "-idq", "-ma5", "-m0", f"-v{rar_volume}"],
        }
        sets = {}
        for name, command in commands.items():
            out = Path(folder) / name.replace(" ", "_")
            archive(command, media, out)
            sets[name] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
        return sets


@defer.inlineCallbacks
def import_bench(reactor, args: argparse.Namespace, report: dict[str, Any]):
    """Import each set warm over the fake server with `--latency-ms`; fills report."""
    latency = args.latency_ms / 1000
    sets = import_sets(args.import_mb * 1024 * 1024, args.seed)
    releases = {
        name: post_release(files, article_size=ARTICLE, salt=name) for name, files in sets.items()
    }
    articles = {mid: body for rel in releases.values() for mid, body in rel.articles.items()}
    port, factory = listen(reactor, articles, Faults(latency=latency))
    workdir = Path(tempfile.mkdtemp(prefix="altmount-bench-archive-"))
    engine = engine_for(reactor, port.getHost().port, workdir, args)
    rows: list[dict[str, Any]] = []
    try:
        # Each set once untimed first: the timed imports find their connections open.
        for name, release in releases.items():
            warmup = f"warmup.{name.replace(' ', '.')}{{{{{PASSWORD}}}}}.nzb"
            yield engine.importer.import_nzb(release.nzb, warmup, "warmup")
        for trial in range(args.trials):
            for name, release in releases.items():
                factory.commands.clear()
                nzb_name = f"{name.replace(' ', '.')}.{trial}{{{{{PASSWORD}}}}}.nzb"
                started = time.perf_counter()
                result = yield engine.importer.import_nzb(release.nzb, nzb_name, "tv")
                ms = (time.perf_counter() - started) * 1000
                stages = dict(result.stage_ms)
                rows.append(
                    {
                        "trial": trial,
                        "set": name,
                        "volumes": len(sets[name]),
                        "ms": round(ms),
                        "round_trips": round(ms / args.latency_ms, 1),
                        "archive_stage_ms": round(stages.get("archive", 0.0)),
                        "stages": {k: round(v) for k, v in stages.items() if v >= 1},
                        "body": factory.commands["BODY"] + factory.commands["ARTICLE"],
                        "stat": factory.commands["STAT"],
                    }
                )
                print(json.dumps(rows[-1]), file=sys.stderr)
    finally:
        yield engine.close()
        yield port.stopListening()
        shutil.rmtree(workdir, ignore_errors=True)
    report["import"] = {"latency_ms": args.latency_ms, "file_mib": args.import_mb, "rows": rows}


def table(report: dict[str, Any]) -> list[str]:
    """Markdown tables of the streaming medians and of the import rows."""
    lines = []
    if "stream" in report:
        lines += [
            "| variant | volumes | addfile → first byte ms | MB/s | CPU s/GiB | peak RSS MiB |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name in VARIANTS:
            row = report["stream"][name]
            lines.append(
                f"| {name} | {row['volumes']} | {row['import_ms']} | {row['mb_s']} | "
                f"{row['cpu_s_per_gib']} | {row['peak_rss_mib']} |"
            )
    if "import" in report:
        lines += [
            "",
            "| set | volumes | import ms | round trips | archive stage ms | BODY | STAT |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in report["import"]["rows"]:
            lines.append(
                f"| {row['set']} | {row['volumes']} | {row['ms']} | {row['round_trips']} | "
                f"{row['archive_stage_ms']} | {row['body']} | {row['stat']} |"
            )
    return lines


def finish(args: argparse.Namespace, report: dict[str, Any]) -> None:
    """Write the JSON (`--out`) and print the tables."""
    report["load_average_end"] = os.getloadavg()
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    print("\n".join(table(report)))
    print(f"load average: start {report['load_average']}, end {report['load_average_end']}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=256, help="media file of the stream part")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--depth", type=int, default=4, help="pipelined requests per connection")
    parser.add_argument("--latency-ms", type=float, default=50, help="import part; 0 skips it")
    parser.add_argument("--import-mb", type=int, default=40, help="media file of the import part")
    parser.add_argument("--sample-percent", type=float, default=1)
    parser.add_argument("--skip-stream", action="store_true", help="only the import part")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the JSON result here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    for tool in ("rar", "7zz"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (make test installs it)")
    report: dict[str, Any] = {"load_average": os.getloadavg()}
    if not args.skip_stream:
        report["stream"] = stream_bench(args)
    if args.latency_ms <= 0:
        finish(args, report)
        return

    @defer.inlineCallbacks
    def imports(reactor):
        yield import_bench(reactor, args, report)
        finish(args, report)

    task.react(imports)


if __name__ == "__main__":
    main()
