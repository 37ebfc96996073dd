"""Sonarr's path end to end against INN2: nyuu posts, SABnzbd addfile, history, WebDAV reads.

Three releases are posted with nyuu to the local INN2: a single mkv, a season
pack of three mkvs in one NZB, and an obfuscated release (every file renamed to
a random 32-hex stem with no extension, subjects showing only those stems, a
`par2 create -r10` set made from the real names and posted with them). Each is
added with `mode=addfile` exactly as Sonarr does (multipart field `name`, key in
the query), `mode=history` is polled until Completed, and the files under the
reported `storage` folder are read over WebDAV: MD5 of the whole file and random
ranges against the originals.
"""

from __future__ import annotations

import json
import random
import secrets
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from inn2lib import (
    GROUP,
    INN2_HOST,
    NYUU,
    READER_PORT,
    AltmountServer,
    make_movie,
    md5,
    provider,
    run,
    skip_without_peers,
    write_config,
)

skip_without_peers()
pytestmark = pytest.mark.inn2

API_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
HISTORY_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Release:
    """A posted release: its NZB and the original bytes of every media file by real name."""

    nzb: Path
    originals: dict[str, bytes]


def _post_many(files: list[Path], nzb: Path) -> None:
    server = f"-h {INN2_HOST} -P {READER_PORT} -n 4 -g {GROUP} -a 716800 -q"
    run([str(NYUU), *server.split(), "-o", str(nzb), "-O", *map(str, files)])


@pytest.fixture(scope="module")
def sab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AltmountServer]:
    """An altmount server with the SABnzbd API on and a fixed API key."""
    directory = tmp_path_factory.mktemp("altmount-sab")
    extra = {
        "api": {"key_override": API_KEY},
        "sabnzbd": {"enabled": True, "mount_dir": "/mnt/altmount"},
        "import": {"queue_processing_interval_seconds": 0.5},
    }
    server = AltmountServer(write_config(directory, [provider("inn2")], extra), name="sab")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def sab(request: pytest.FixtureRequest, sab_server: AltmountServer) -> AltmountServer:
    """The module's server, its log attached to the report of a failing test."""
    request.node.altmount_servers = [sab_server]
    return sab_server


def _api(server: AltmountServer, params: dict[str, str], upload: Path | None = None) -> dict:
    query = urllib.parse.urlencode({**params, "apikey": API_KEY, "output": "json"})
    url = f"{server.base_url}/sabnzbd/api?{query}"
    data = None
    headers = {}
    if upload is not None:
        boundary = secrets.token_hex(12)
        data = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="name"; '
                f'filename="{upload.name}"\r\nContent-Type: application/x-nzb\r\n\r\n'
            ).encode()
            + upload.read_bytes()
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _add_and_wait(server: AltmountServer, release: Release, category: str) -> dict:
    added = _api(server, {"mode": "addfile", "cat": category, "priority": "0"}, release.nzb)
    assert added["status"] is True, added
    (nzo_id,) = added["nzo_ids"]
    deadline = time.monotonic() + HISTORY_TIMEOUT
    while time.monotonic() < deadline:
        slots = _api(server, {"mode": "history", "nzo_ids": nzo_id})["history"]["slots"]
        if slots and slots[0]["status"] in ("Completed", "Failed"):
            assert slots[0]["status"] == "Completed", slots[0]["fail_message"]
            return slots[0]
        time.sleep(0.2)
    raise AssertionError(f"{release.nzb.name}: not in history after {HISTORY_TIMEOUT:.0f} s")


def _check_files(server: AltmountServer, slot: dict, release: Release) -> None:
    storage = slot["storage"]
    assert storage.startswith("/mnt/altmount/complete/"), storage
    folder = storage[len("/mnt/altmount") :]
    listed = {e.path.rstrip("/").rsplit("/", 1)[-1]: e for e in server.propfind(folder + "/")}
    assert set(listed) == set(release.originals), (sorted(listed), sorted(release.originals))
    rng = random.Random(slot["nzo_id"])
    for name, original in release.originals.items():
        path = f"{folder}/{name}"
        code, status, body, _ = server.curl(path)
        assert (code, status) == (0, 200), (path, code, status)
        assert md5(body) == md5(original), path
        for _ in range(4):
            start = rng.randrange(len(original))
            end = min(len(original) - 1, start + rng.randrange(1, 3_000_000))
            code, status, body, _ = server.curl(path, f"{start}-{end}")
            assert (code, status) == (0, 206), (path, start, end, status)
            assert body == original[start : end + 1], (path, start, end)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for this module's media, par2 sets and NZBs."""
    return tmp_path_factory.mktemp("sab-media")


def test_direct_mkv(sab: AltmountServer, work: Path) -> None:
    """One mkv added with addfile is Completed and reads back byte-exact over WebDAV."""
    movie = make_movie(work / "Direct.Movie.2024.720p.mkv", seconds=12)
    nzb = work / "Direct.Movie.2024.720p.nzb"
    _post_many([movie], nzb)
    release = Release(nzb, {movie.name: movie.read_bytes()})
    slot = _add_and_wait(sab, release, "movies")
    assert slot["name"] == "Direct.Movie.2024.720p" and slot["category"] == "movies"
    assert slot["bytes"] == len(release.originals[movie.name])
    _check_files(sab, slot, release)


def test_season_pack(sab: AltmountServer, work: Path) -> None:
    """A season pack of three mkvs in one NZB keeps every episode."""
    folder = work / "pack"
    folder.mkdir()
    episodes = [make_movie(folder / f"Show.S01E0{n}.720p.mkv", seconds=6) for n in (1, 2, 3)]
    nzb = work / "Show.S01.720p.nzb"
    _post_many(episodes, nzb)
    release = Release(nzb, {e.name: e.read_bytes() for e in episodes})
    slot = _add_and_wait(sab, release, "tv")
    assert slot["bytes"] == sum(len(b) for b in release.originals.values())
    _check_files(sab, slot, release)


def test_obfuscated_release_with_par2(sab: AltmountServer, work: Path) -> None:
    """Random hex names without extensions get their real names back from the PAR2 set."""
    if shutil.which("par2") is None:
        pytest.fail("par2 is not installed (scripts/inn2-setup.sh installs it)", pytrace=False)
    folder = work / "obfuscated"
    folder.mkdir()
    real = make_movie(folder / "Hidden.Film.2023.1080p.mkv", seconds=10)
    original = real.read_bytes()
    subprocess.run(
        ["par2", "create", "-q", "-r10", "-n1", "Hidden.Film.2023.1080p.par2", real.name],
        cwd=folder,
        check=True,
        capture_output=True,
        timeout=120,
    )
    posted = []
    for path in sorted(folder.iterdir()):
        hidden = folder / secrets.token_hex(16)
        path.rename(hidden)
        posted.append(hidden)
    nzb = work / "Hidden.Film.2023.1080p.nzb"
    _post_many(posted, nzb)
    release = Release(nzb, {real.name: original})
    slot = _add_and_wait(sab, release, "movies")
    _check_files(sab, slot, release)
