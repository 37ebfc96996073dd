"""Run the project's fake NNTP server in its own process with a generated release.

Writes `<out>/release.nzb`, `<out>/release.md5` and `<out>/port` (once listening),
then serves until killed. Separate from altmount's process so the benchmark can
charge CPU and memory to altmount alone.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np


def generate(size: int, seed: int) -> bytes:
    """Incompressible deterministic bytes (what a video file looks like to yEnc)."""
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--article-size", type=int, default=716_800)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--name", default="bench.mkv")
    args = parser.parse_args()

    from twisted.internet import reactor

    from altmount.testing import nntpserver
    from altmount.testing.articles import post_release

    data = generate(args.size_mb * 1024 * 1024, args.seed)
    release = post_release({args.name: data}, article_size=args.article_size,
                           meta={"name": "bench"}, salt=f"bench{args.seed}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "release.nzb").write_bytes(release.nzb)
    (args.out / "release.md5").write_text(hashlib.md5(data).hexdigest())
    del data
    faults = nntpserver.Faults(latency=args.latency_ms / 1000.0)
    port, _factory = nntpserver.listen(reactor, release.articles, faults=faults, port=0)
    (args.out / "port").write_text(str(port.getHost().port))
    reactor.run()


if __name__ == "__main__":
    main()
