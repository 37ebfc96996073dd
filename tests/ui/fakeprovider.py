"""A fake NNTP provider process for the browser suite (altmount.testing).

`python fakeprovider.py OUT_DIR NAME SIZE_MB USER PASSWORD [MISSING]` posts NAME (SIZE_MB of
random bytes) to the project's fake NNTP server on 127.0.0.1 (login USER/PASSWORD), writes
`OUT_DIR/release.nzb` and, once listening, `OUT_DIR/port`; then serves until killed.
MISSING (comma-separated article numbers, 0-based) are answered 430, as expired articles.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def main() -> None:
    """Generate the release, listen on an ephemeral port, write the port file, serve."""
    out, name, size_mb = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    user, password = sys.argv[4], sys.argv[5]
    missing = [int(n) for n in sys.argv[6].split(",")] if len(sys.argv) > 6 else []
    from twisted.internet import reactor

    from altmount.testing import nntpserver
    from altmount.testing.articles import post_release

    data = np.random.default_rng(7).integers(0, 256, int(size_mb * 2**20), np.uint8).tobytes()
    release = post_release({name: data}, article_size=256 * 1024, meta={"name": "ui"}, salt="ui")
    out.mkdir(parents=True, exist_ok=True)
    (out / "release.nzb").write_bytes(release.nzb)
    ids = release.files[0].message_ids
    faults = nntpserver.Faults(missing={ids[n] for n in missing})
    port, _factory = nntpserver.listen(
        reactor, release.articles, faults, port=0, username=user, password=password
    )
    (out / "port").write_text(str(port.getHost().port))
    reactor.run()


if __name__ == "__main__":
    main()
