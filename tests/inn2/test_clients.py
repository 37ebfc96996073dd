"""Real media clients on a release imported from INN2: ffprobe, ffmpeg seeks, rclone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from inn2lib import AltmountServer, Posted, md5, rclone, run, skip_without_peers

pytestmark = pytest.mark.inn2
skip_without_peers()


def test_ffprobe_sees_video_audio_and_duration(movie_over: tuple[AltmountServer, str]) -> None:
    """ffprobe over WebDAV finds an H.264 video and an AAC audio stream lasting 40 s."""
    altmount, imported_movie = movie_over
    entries = "-show_entries stream=codec_type,codec_name:format=duration -of json"
    done = run(
        ["ffprobe", "-v", "error", *entries.split(), altmount.url(imported_movie)], timeout=120
    )
    probe = json.loads(done.stdout)
    streams = {(s["codec_type"], s["codec_name"]) for s in probe["streams"]}
    assert streams == {("video", "h264"), ("audio", "aac")}
    assert float(probe["format"]["duration"]) == pytest.approx(40.0, abs=0.5)


def test_ffmpeg_seeks_and_decodes(movie_over: tuple[AltmountServer, str]) -> None:
    """`ffmpeg -ss 20 -i URL -t 1 -f null -` decodes one second (24 frames) from the middle."""
    altmount, imported_movie = movie_over
    quiet = "-v error -xerror -nostats -progress pipe:1"
    url = altmount.url(imported_movie)
    done = run(
        ["ffmpeg", *quiet.split(), "-ss", "20", "-i", url, "-t", "1", "-f", "null", "-"],
        timeout=120,
    )
    progress = dict(line.split("=", 1) for line in done.stdout.decode().split() if "=" in line)
    assert int(progress["frame"]) >= 23, progress
    assert progress["progress"] == "end"


def test_rclone_cat_reads_ranges(
    movie_over: tuple[AltmountServer, str], posted_movie: Posted, tmp_path: Path
) -> None:
    """`rclone cat --offset --count` returns the original bytes, across a segment boundary."""
    altmount, imported_movie = movie_over
    part = posted_movie.article_size
    for offset, count in [(0, 4096), (part - 2048, 4096), (5 * part + 777, 3 * part)]:
        window = f"--offset {offset} --count {count}"
        body = rclone(
            "cat",
            f":webdav:{imported_movie}",
            *window.split(),
            port=altmount.port,
            config_dir=tmp_path,
        )
        assert md5(body) == md5(posted_movie.data[offset : offset + count]), (offset, count)


def test_rclone_lsjson_lists_the_size(
    altmount: AltmountServer, imported_movie: str, posted_movie: Posted, tmp_path: Path
) -> None:
    """`rclone lsjson` of the release folder lists the movie with its exact size."""
    folder = imported_movie.rsplit("/", 1)[0]
    listing = json.loads(
        rclone("lsjson", f":webdav:{folder}", port=altmount.port, config_dir=tmp_path)
    )
    sizes = {item["Name"]: item["Size"] for item in listing if not item["IsDir"]}
    assert sizes.get(posted_movie.name) == len(posted_movie.data)
