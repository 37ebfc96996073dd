"""Sonarr's library move through `rclone mount`: `mkdir` + `mv` of an imported 300 MiB file
are WebDAV MKCOL + MOVE, metadata renames that read no article, and the moved file reads
byte-exact. The provider (altmount.testing.nntpserver in its own process) counts every
command it serves, so "no data read" is measured at the provider, not taken from altmount.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from livestack import PASSWORD, USER, basic, make_stack, release_data, request

from altmount.testing.articles import DEFAULT_ARTICLE_SIZE

SIZE = 300 * 1024 * 1024


@pytest.fixture
def big_stack(tmp_path: Path):
    """A provider serving one 300 MiB movie in nyuu-sized articles, altmount serving it."""
    stack = make_stack(
        tmp_path,
        size=SIZE,
        latency=0.0,
        article_size=DEFAULT_ARTICLE_SIZE,
        segment_cache={"enabled": False},
        streaming={
            "max_download_workers": 8,
            "streaming_chunk_size": 8 << 20,
            "max_range_size": 32 << 20,
        },
    )
    try:
        yield stack
    finally:
        stack.close()


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as source:
        while chunk := source.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def test_mkdir_and_mv_through_rclone_mount_read_nothing(big_stack, rclone_mount) -> None:
    """`mkdir -p` + `mv` of the 300 MiB file into a new library folder cost 0 BODY at the
    provider, the old folder can be removed (`rmdir`, a DELETE), and the file at its new
    place reads byte-exact through the mount."""
    mount = rclone_mount(big_stack.web_port, USER, PASSWORD)
    source = mount.path(big_stack.file_path)
    assert source.stat().st_size == SIZE
    library = mount.path("/library/Some Movie (2024)")
    target = library / "Some Movie (2024) Bluray-1080p.mkv"
    before = big_stack.commands()
    started = time.monotonic()
    subprocess.run(["mkdir", "-p", str(library)], check=True, timeout=30)
    subprocess.run(["mv", str(source), str(target)], check=True, timeout=30)
    seconds = time.monotonic() - started
    after = big_stack.commands()
    read = {verb: after.get(verb, 0) - before.get(verb, 0) for verb in ("BODY", "ARTICLE")}
    assert read == {"BODY": 0, "ARTICLE": 0}, (read, seconds)
    print(f"mkdir + mv of {SIZE >> 20} MiB through rclone mount: {seconds:.3f} s, 0 BODY")

    release_folder = source.parent
    assert sorted(p.name for p in release_folder.iterdir()) == []
    subprocess.run(["rmdir", str(release_folder)], check=True, timeout=30)
    assert _gone(big_stack.web_port, big_stack.file_path)
    assert _gone(big_stack.web_port, big_stack.file_path.rsplit("/", 1)[0])

    assert target.stat().st_size == SIZE
    expected = hashlib.md5(release_data(SIZE)).hexdigest()
    assert file_md5(target) == expected


def _gone(port: int, path: str) -> bool:
    """Whether PROPFIND of `path` answers 404."""
    status, _, _ = request(port, "PROPFIND", quote(path), {**basic(), "Depth": "0"})
    return status == 404
