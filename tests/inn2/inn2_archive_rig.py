"""Shared steps of the archive INN2 tests: the tools they need, posting files with nyuu,
ranges read back with curl, and the streams ffprobe sees over HTTP."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from inn2lib import GROUP, INN2_HOST, READER_PORT, AltmountServer, md5, run_nyuu

#: Article size the archive tests post with: not a divisor of their volume sizes, so
#: volumes end inside articles.
ARTICLE = 256 * 1024


def need(*tools: str) -> None:
    """Fail unless every tool is installed (scripts/inn2-setup.sh installs them with the peers)."""
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.fail(
                f"{tool} is not installed: run scripts/inn2-setup.sh as root", pytrace=False
            )


def post(files: Sequence[Path | str], nzb: Path, meta: str | None = None) -> Path:
    """Post the files (in this order) to INN2 with nyuu, `meta` ("key=value") in the NZB;
    the NZB it wrote."""
    server = f"-h {INN2_HOST} -P {READER_PORT} -n 4 -g {GROUP} -a {ARTICLE} -q"
    extra = ["-M", meta] if meta is not None else []
    run_nyuu([*server.split(), *extra, "-o", str(nzb), "-O", *map(str, files)])
    return nzb


def assert_ranges(
    altmount: AltmountServer, path: str, data: bytes, cases: Sequence[tuple[int, int]]
) -> None:
    """Every inclusive byte range (first, last) of `path` fetched with curl is `data`'s."""
    for first, last in cases:
        code, status, body, _ = altmount.curl(path, f"{first}-{last}")
        assert (code, status) == (0, 206), f"{path} {first}-{last}: curl {code}, HTTP {status}"
        assert md5(body) == md5(data[first : last + 1]), f"{path} {first}-{last}: wrong bytes"


def assert_whole(altmount: AltmountServer, path: str, data: bytes) -> None:
    """A plain GET of `path` returns `data`, byte for byte."""
    code, status, body, _ = altmount.curl(path)
    assert (code, status) == (0, 200)
    assert md5(body) == md5(data)


def ffprobe_streams(altmount: AltmountServer, path: str) -> list[dict]:
    """The streams ffprobe, a real client seeking over HTTP, finds in `path`."""
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", altmount.url(path)],
        capture_output=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)["streams"]
