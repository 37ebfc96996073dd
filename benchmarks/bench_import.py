"""Import benchmark: how many provider round trips an import costs, with injected latency.

Runs in one process on 127.0.0.1: the fake NNTP server (altmount.testing.nntpserver,
`Faults(latency=...)`) and an Engine importing (1) a direct release of N files
with real names and (2) the same files obfuscated (random stems, no extensions)
with a PAR2 set from the real `par2` tool. Each is imported cold (no provider
connection open yet) and warm (connections open). Reported: ms, round trips
(elapsed / latency), the time of each pipeline stage, BODY and STAT counts;
last, how long a dead post (no article on the provider) takes to fail.

Note: the fake server answers the commands of one connection one after another,
each after `latency`, so parallelism comes from connections (`--connections`),
not from pipelining on one connection, as it would with a real network delay.

    python benchmarks/bench_import.py [--files 10] [--file-mb 20] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import yaml
from twisted.internet import defer, task

from altmount.config import parse_config
from altmount.engine import Engine
from altmount.errors import ImportFailed
from altmount.testing.articles import post_release
from altmount.testing.nntpserver import Faults, listen

MKV = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska"


def make_files(count: int, size: int) -> dict[str, bytes]:
    """Episode-named files of `size` bytes (random content behind a Matroska header)."""
    rng = random.Random(1)
    return {
        f"Show.S01E{i:02d}.1080p.mkv": MKV + rng.randbytes(size - len(MKV))
        for i in range(1, count + 1)
    }


def obfuscated(files: dict[str, bytes], article_size: int):
    """Post the files and their par2cmdline PAR2 set under random stems, no extensions."""
    rng = random.Random(2)
    with tempfile.TemporaryDirectory() as folder:
        for name, data in files.items():
            (Path(folder) / name).write_bytes(data)
        subprocess.run(
            ["par2", "create", "-q", "-q", "-r5", "release.par2", *files], cwd=folder, check=True
        )
        par2 = [p.read_bytes() for p in sorted(Path(folder).glob("*.par2"))]
    posted = {rng.randbytes(16).hex(): data for data in [*files.values(), *par2]}
    subjects = {
        stem: f'[{i + 1}/{len(posted)}] - "{stem}" yEnc (1/1)' for i, stem in enumerate(posted)
    }
    return post_release(posted, article_size=article_size, subjects=subjects, salt="obf")


def engine_for(reactor, port: int, workdir: Path, args) -> Engine:
    text = yaml.safe_dump(
        {
            "metadata": {"root_path": str(workdir / "metadata"), "map_size_mb": 256},
            "database": {"path": str(workdir / "altmount.db")},
            "import": {"segment_sample_percentage": args.sample_percent},
            "log": {"level": "warn"},
            "providers": [
                {
                    "name": "fake",
                    "host": "127.0.0.1",
                    "port": port,
                    "tls": False,
                    "max_connections": args.connections,
                    "inflight_requests": args.depth,
                }
            ],
        }
    )
    config, _ = parse_config(text, base_dir=".")
    return Engine(reactor, config)


@defer.inlineCallbacks
def measure(engine, factory, label: str, nzb: bytes, category: str, latency: float):
    factory.commands.clear()
    started = time.perf_counter()
    result = yield engine.importer.import_nzb(nzb, f"{label}.nzb", category)
    ms = (time.perf_counter() - started) * 1000
    stages = " ".join(
        f"{name}={stage_ms:.0f}" for name, stage_ms in result.stage_ms if stage_ms >= 1
    )
    print(
        f"{label:28s} {len(result.files):3d} files {ms:7.0f} ms "
        f"{ms / (latency * 1000):5.1f} round trips  BODY={factory.commands['BODY']:<4d} "
        f"STAT={factory.commands['STAT']:<5d} [{stages}]"
    )
    return result


@defer.inlineCallbacks
def main(reactor, args):
    latency = args.latency_ms / 1000
    files = make_files(args.files, args.file_mb * 1024 * 1024)
    article = 716_800
    releases = [("direct", post_release(files, article_size=article))]
    if shutil.which("par2"):
        releases.append(("obfuscated+par2", obfuscated(files, article)))
    else:
        print("par2 tool not installed (apt-get install par2): obfuscated release skipped")
    articles = {mid: body for _, rel in releases for mid, body in rel.articles.items()}
    port, factory = listen(reactor, articles, Faults(latency=latency))
    with tempfile.TemporaryDirectory() as workdir:
        engine = engine_for(reactor, port.getHost().port, Path(workdir), args)
        try:
            print(
                f"{args.files} files of {args.file_mb} MiB, {article} B articles, "
                f"{args.latency_ms:g} ms latency, {args.connections} connections x {args.depth} deep, "
                f"{args.sample_percent:g}% STAT sample"
            )
            for label, release in releases:
                # A fresh engine per release would be colder still; the first import
                # pays for opening the connections (greeting + CAPABILITIES/MODE).
                yield measure(
                    engine,
                    factory,
                    f"{label} (cold)" if label == "direct" else label,
                    release.nzb,
                    "tv",
                    latency,
                )
                yield measure(engine, factory, f"{label} (warm)", release.nzb, "movies", latency)
            dead = post_release(files, article_size=article, salt="dead")
            started = time.perf_counter()
            try:
                yield engine.importer.import_nzb(dead.nzb, "dead.nzb", "tv")
            except ImportFailed as exc:
                ms = (time.perf_counter() - started) * 1000
                print(
                    f"{'dead post (all missing)':28s} failed  {ms:7.0f} ms "
                    f"{ms / (latency * 1000):5.1f} round trips  ({str(exc)[:60]}...)"
                )
        finally:
            yield engine.close()
            yield port.stopListening()


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--file-mb", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--depth", type=int, default=4, help="pipelined requests per connection")
    parser.add_argument("--sample-percent", type=float, default=1)
    return parser.parse_args()


if __name__ == "__main__":
    options = parse_args()
    task.react(lambda reactor: main(reactor, options))
