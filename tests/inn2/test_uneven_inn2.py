"""A movie posted to INN2 in parts of uneven size, imported and read back with curl.

nyuu cuts every part to one size, so the articles are made by `post_release(part_sizes=...)`
and sent with a plain NNTP POST (RFC 3977 6.3.1); INN2 stores and serves them as any.
"""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path

import pytest
from inn2lib import GROUP, INN2_HOST, READER_PORT, AltmountServer, Posted, md5, skip_without_peers

from altmount.testing.articles import post_release, uneven_sizes

pytestmark = pytest.mark.inn2
skip_without_peers()


def _post_articles(articles: dict[str, bytes]) -> None:
    """POST each dot-stuffed yEnc body to the open reader; fail on any refusal."""
    with socket.create_connection((INN2_HOST, READER_PORT), timeout=30) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"20")
        for message_id, body in articles.items():
            sock.sendall(b"POST\r\n")
            assert reader.readline().startswith(b"340"), message_id
            head = (
                f"From: altmount <altmount@altmount.test>\r\nNewsgroups: {GROUP}\r\n"
                f"Subject: uneven {message_id}\r\nMessage-ID: <{message_id}>\r\n\r\n"
            )
            sock.sendall(head.encode() + body.rstrip(b"\r\n") + b"\r\n.\r\n")
            answer = reader.readline()
            assert answer.startswith(b"240"), (message_id, answer)
        sock.sendall(b"QUIT\r\n")


def test_uneven_post_from_inn2_reads_back_exact(
    altmount: AltmountServer, posted_movie: Posted, tmp_path: Path
) -> None:
    """The movie cut into 150-450 KB parts imports and its full GET and ranges are exact."""
    data = posted_movie.data
    sizes = uneven_sizes(len(data), 150_000, 450_000, seed=14)
    name = "uneven.mkv"
    release = post_release(
        {name: data}, part_sizes={name: sizes}, group=GROUP, salt=f"inn2-{time.time_ns()}"
    )
    _post_articles(dict(release.articles))
    nzb = tmp_path / "Uneven.Movie.nzb"
    nzb.write_bytes(release.nzb)
    imported = altmount.import_nzb(nzb)
    assert imported.returncode == 0, imported.stderr.decode() + altmount.log_tail()
    entry = altmount.find_file("Uneven.Movie", name)
    assert entry.size == len(data)
    rng = random.Random(7)
    for _ in range(10):
        first = rng.randrange(len(data))
        last = min(len(data) - 1, first + rng.choice((0, 999, 300_000, 1_000_000)))
        code, status, body, _ = altmount.curl(entry.path, f"{first}-{last}")
        assert (code, status) == (0, 206), f"range {first}-{last}: curl {code}, HTTP {status}"
        assert md5(body) == md5(data[first : last + 1]), f"range {first}-{last}: wrong bytes"
    code, status, body, _ = altmount.curl(entry.path)
    assert (code, status) == (0, 200)
    assert md5(body) == md5(data)
