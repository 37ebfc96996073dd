"""Run the project's fake NNTP server in its own process with generated releases.

`python -m altmount.bench.fakeserver --out DIR ...` writes `DIR/release.nzb` (the
benchmark file, `--size-mb`), `DIR/release.md5`, `DIR/click.nzb` (a small release
without a name in its NZB, for the click→first byte scenario) and, once listening,
`DIR/port`; then it serves until killed. On SIGUSR1 it writes the commands it has
answered so far, by name, to `DIR/commands.json` (what `bench scan` counts). With `--tls` it serves TLS on connect, with a
certificate for localhost signed by a fresh test CA whose certificate is `DIR/ca.pem`. `--post FOLDER` (repeatable) also posts the
files of FOLDER as one release, its NZB written to `DIR/<FOLDER name>.nzb`. A separate
process so that the benchmark charges CPU and memory to altmount alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
from pathlib import Path

import numpy as np

__all__ = ["generate", "main"]


def generate(size: int, seed: int) -> bytes:
    """Incompressible deterministic bytes (what a video file looks like to yEnc)."""
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def main(argv: list[str] | None = None) -> None:
    """Generate the releases, listen on 127.0.0.1, write the port file, serve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size-mb", type=float, default=300)
    parser.add_argument("--click-size-mb", type=float, default=20)
    parser.add_argument("--article-size", type=int, default=716_800)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument(
        "--bandwidth-mbps", type=float, default=0.0, help="cap per connection, MB/s (0: none)"
    )
    parser.add_argument("--max-connections", type=int, default=0)
    parser.add_argument("--missing-rate", type=float, default=0.0)
    parser.add_argument("--corrupt-rate", type=float, default=0.0)
    parser.add_argument("--disconnect-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tls", action="store_true", help="TLS on connect (CA: OUT/ca.pem)")
    parser.add_argument("--name", default="bench.mkv", help="file name of the main release")
    parser.add_argument(
        "--post",
        type=Path,
        action="append",
        default=[],
        metavar="FOLDER",
        help="also post the files of FOLDER as one release (NZB: OUT/<FOLDER name>.nzb)",
    )
    args = parser.parse_args(argv)

    from twisted.internet import reactor

    from altmount.testing import nntpserver
    from altmount.testing.articles import post_release

    data = generate(int(args.size_mb * 1024 * 1024), args.seed)
    release = post_release(
        {args.name: data},
        article_size=args.article_size,
        meta={"name": "bench"},
        salt=f"bench{args.seed}",
    )
    click = post_release(
        {"click.mkv": generate(int(args.click_size_mb * 1024 * 1024), args.seed + 1)},
        article_size=args.article_size,
        salt=f"click{args.seed}",
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "release.nzb").write_bytes(release.nzb)
    (args.out / "release.md5").write_text(hashlib.md5(data).hexdigest())
    (args.out / "click.nzb").write_bytes(click.nzb)
    del data
    posted = {}
    for folder in args.post:
        extra = post_release(
            {path.name: path.read_bytes() for path in sorted(folder.iterdir())},
            article_size=args.article_size,
            salt=folder.name,
        )
        (args.out / f"{folder.name}.nzb").write_bytes(extra.nzb)
        posted.update(extra.articles)
    faults = nntpserver.Faults(
        latency=args.latency_ms / 1000.0,
        bandwidth=int(args.bandwidth_mbps * 1e6),
        max_connections=args.max_connections,
        missing_rate=args.missing_rate,
        corrupt_rate=args.corrupt_rate,
        disconnect_rate=args.disconnect_rate,
    )
    tls = None
    if args.tls:
        from altmount.testing.certs import TestCA, server_options

        ca = TestCA.make("altmount bench CA")
        tls = server_options(*ca.issue())
        (args.out / "ca.pem").write_bytes(ca.pem)
    port, factory = nntpserver.listen(
        reactor,
        {**release.articles, **click.articles, **posted},
        faults=faults,
        port=0,
        seed=args.seed,
        tls=tls,
    )

    def dump_commands() -> None:
        temp = args.out / "commands.json.tmp"
        temp.write_text(json.dumps(dict(factory.commands)))
        os.replace(temp, args.out / "commands.json")

    signal.signal(signal.SIGUSR1, lambda *_: reactor.callFromThread(dump_commands))
    (args.out / "port").write_text(str(port.getHost().port))
    reactor.run()


if __name__ == "__main__":
    main()
