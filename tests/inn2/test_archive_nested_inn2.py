"""A RAR set holding a disc image and another RAR, made by genisoimage and rar, posted to INN2
with nyuu, imported by a running altmount and read back with curl and ffprobe."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from inn2lib import (
    GROUP,
    INN2_HOST,
    NYUU,
    READER_PORT,
    AltmountServer,
    make_wav,
    md5,
    run,
    skip_without_peers,
)

pytestmark = pytest.mark.inn2
skip_without_peers()

VOLUME = 1_000_000  # rar -v: the outer set's volume size
ARTICLE = 256 * 1024  # not a divisor of the volume size: volumes end inside articles
M2TS = "Disc/BDMV/STREAM/00001.m2ts"
WAV = "Track.wav"  # an inner archive is extracted in place, an image into a folder


def need(tool: str) -> None:
    """A tool scripts/inn2-setup.sh installs with the peers."""
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed: run scripts/inn2-setup.sh as root", pytrace=False)


@pytest.fixture(scope="module")
def posted_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    """(NZB, expected files): Nested.part*.rar holding Disc.iso (UDF bridge with a Blu-ray
    .m2ts) and Extras.rar (a WAV), posted to INN2."""
    for tool in ("rar", "genisoimage", "ffmpeg"):
        need(tool)
    folder = tmp_path_factory.mktemp("nested")
    stream = folder / "disc" / "BDMV" / "STREAM"
    stream.mkdir(parents=True)
    video = "-f lavfi -i testsrc2=size=640x360:rate=24 -f lavfi -i sine=sample_rate=48000 -t 8"
    codecs = "-c:v libx264 -preset ultrafast -crf 36 -c:a aac -f mpegts -mpegts_m2ts_mode 1"
    run(
        ["ffmpeg", "-v", "error", "-y", *video.split(), *codecs.split(), str(stream / "00001.m2ts")]
    )
    run(["genisoimage", "-quiet", "-udf", "-o", str(folder / "Disc.iso"), str(folder / "disc")])
    wav = make_wav(folder / "Track.wav", 1_500_000, seed=11)
    run(["rar", "a", "-idq", "-m0", "Extras.rar", wav.name], cwd=folder)
    run(
        ["rar", "a", "-idq", "-m0", f"-v{VOLUME}b", "Nested.rar", "Disc.iso", "Extras.rar"],
        cwd=folder,
    )
    volumes = sorted(str(p) for p in folder.glob("Nested.part*.rar"))
    assert len(volumes) >= 2, volumes
    nzb = folder / "Nested.Release.nzb"
    server = f"-h {INN2_HOST} -P {READER_PORT} -n 4 -g {GROUP} -a {ARTICLE} -q"
    run([str(NYUU), *server.split(), "-o", str(nzb), "-O", *volumes])
    expected = {M2TS: (stream / "00001.m2ts").read_bytes(), WAV: wav.read_bytes()}
    return nzb, expected


@pytest.fixture(scope="module")
def imported(session_server: AltmountServer, posted_set) -> dict[str, str]:
    """The WebDAV paths of the expected files after `altmount import`, by relative path."""
    nzb, expected = posted_set
    session_server.import_nzb(nzb)
    paths = {}
    for relative in expected:
        parent, _, name = f"{nzb.stem}/{relative}".rpartition("/")
        paths[relative] = session_server.find_file(parent.rsplit("/", 1)[-1], name).path
        assert f"/{nzb.stem}/{relative}" in paths[relative]
    return paths


def test_release_lists_the_inner_files(altmount, imported, posted_set) -> None:
    """The image and the inner RAR are replaced by their files, with their sizes."""
    _, expected = posted_set
    for relative, path in imported.items():
        folder = path.rsplit("/", 1)[0]
        entries = {e.path: e.size for e in altmount.propfind(folder + "/")}
        assert entries[path] == len(expected[relative])


def test_ranges_match(altmount, imported, posted_set) -> None:
    """Ranges at volume and article boundaries, and whole files, match the originals."""
    _, expected = posted_set
    for relative, path in imported.items():
        data = expected[relative]
        size = len(data)
        cases = [(0, 0), (0, size - 1), (ARTICLE - 7, ARTICLE + 7), (size // 2, size // 2 + 99_999)]
        cases += [(min(VOLUME - 40, size - 80), min(VOLUME + 40, size - 1)), (size - 17, size - 1)]
        for first, last in cases:
            code, status, body, _ = altmount.curl(path, f"{first}-{last}")
            assert (code, status) == (0, 206), (
                f"{relative} {first}-{last}: curl {code}, HTTP {status}"
            )
            assert md5(body) == md5(data[first : last + 1]), f"{relative} {first}-{last}"


def test_ffprobe_reads_the_blu_ray_stream(altmount, imported) -> None:
    """ffprobe, seeking over HTTP, finds the H.264 and AAC streams of the .m2ts in the image."""
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", altmount.url(imported[M2TS])],
        capture_output=True,
        timeout=60,
        check=True,
    )
    codecs = sorted(s["codec_name"] for s in json.loads(done.stdout)["streams"])
    assert codecs == ["aac", "h264"]
