"""The WebDAV root through `rclone mount` (Debian rclone + fuse3), as Sonarr, Radarr and
players use it: ffprobe and `ffmpeg -ss` read the INN2-imported movie from the mount, and
Sonarr's library move (`mkdir` + `mv`) works on it and leaves the file playable."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import pytest
from inn2lib import (
    DAV_PASSWORD,
    DAV_USER,
    AltmountServer,
    Posted,
    md5,
    provider,
    run,
    skip_without_peers,
)

from altmount.testing.rclonemount import RcloneMount

pytestmark = pytest.mark.inn2
skip_without_peers()


@pytest.fixture
def mounted(
    altmount: AltmountServer, imported_movie: str, rclone_mount: Callable[..., RcloneMount]
) -> tuple[RcloneMount, str]:
    """(the session server's WebDAV root mounted with rclone, the movie's WebDAV path)."""
    return rclone_mount(altmount.port, DAV_USER, DAV_PASSWORD), imported_movie


def test_ffprobe_through_the_mount(mounted: tuple[RcloneMount, str]) -> None:
    """ffprobe of the movie's path on the mount finds H.264 + AAC lasting 40 s."""
    mount, movie = mounted
    entries = "-show_entries stream=codec_type,codec_name:format=duration -of json"
    done = run(["ffprobe", "-v", "error", *entries.split(), str(mount.path(movie))], timeout=120)
    probe = json.loads(done.stdout)
    assert {(s["codec_type"], s["codec_name"]) for s in probe["streams"]} == {
        ("video", "h264"),
        ("audio", "aac"),
    }
    assert float(probe["format"]["duration"]) == pytest.approx(40.0, abs=0.5)


def test_ffmpeg_seek_through_the_mount(mounted: tuple[RcloneMount, str]) -> None:
    """`ffmpeg -ss 30 -i <mount path> -t 1` decodes a second (24 frames) near the end."""
    mount, movie = mounted
    quiet = "-v error -xerror -nostats -progress pipe:1"
    done = run(
        ["ffmpeg", *quiet.split(), "-ss", "30", "-i", str(mount.path(movie))]
        + ["-t", "1", "-f", "null", "-"],
        timeout=120,
    )
    progress = dict(line.split("=", 1) for line in done.stdout.decode().split() if "=" in line)
    assert int(progress["frame"]) >= 23, progress
    assert progress["progress"] == "end"


def test_sonarr_move_on_the_mount(
    altmount_factory: Callable[..., AltmountServer],
    posted_movie: Posted,
    rclone_mount: Callable[..., RcloneMount],
) -> None:
    """Sonarr's import into a root folder on the mount (`mkdir -p` + `mv`, then removing the
    emptied release folder) leaves the movie at its library path, byte-exact and playable."""
    server = altmount_factory([provider("inn2")], "sonarr-move")
    server.import_nzb(posted_movie.nzb)
    movie = server.find_file(posted_movie.release, posted_movie.name).path
    mount = rclone_mount(server.port, DAV_USER, DAV_PASSWORD)
    library = mount.path("/library/movies/Test Movie (2024)")
    target = library / "Test Movie (2024) WEBDL-720p.mkv"
    subprocess.run(["mkdir", "-p", str(library)], check=True, timeout=30)
    subprocess.run(["mv", str(mount.path(movie)), str(target)], check=True, timeout=30)
    subprocess.run(["rmdir", str(mount.path(movie).parent)], check=True, timeout=30)
    assert server.propfind(movie.rsplit("/", 1)[0]) == []
    assert [(e.path, e.size) for e in server.propfind("/library/movies/Test Movie (2024)")] == [
        (
            "/library/movies/Test Movie (2024)/Test Movie (2024) WEBDL-720p.mkv",
            len(posted_movie.data),
        )
    ]
    assert md5(target.read_bytes()) == md5(posted_movie.data)
    done = run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(target)],
        timeout=120,
    )
    assert float(json.loads(done.stdout)["format"]["duration"]) == pytest.approx(40.0, abs=0.5)
