"""A RAR set holding a disc image and another RAR, made by genisoimage and rar, and a disc
image posted as it is, posted to INN2 with nyuu, imported by a running altmount and read back
with curl and ffprobe."""

from __future__ import annotations

from pathlib import Path

import pytest
from inn2_archive_rig import ARTICLE, assert_ranges, assert_whole, ffprobe_streams, need, post
from inn2lib import AltmountServer, make_wav, run, skip_without_peers

pytestmark = pytest.mark.inn2
skip_without_peers()

VOLUME = 1_000_000  # rar -v: the outer set's volume size
M2TS = "Disc/BDMV/STREAM/00001.m2ts"
WAV = "Track.wav"  # an inner archive is extracted in place, an image into a folder
IMAGE_M2TS = "BDMV/STREAM/00002.m2ts"  # in the bare image (its own name: find_file is by name)


@pytest.fixture(scope="module")
def posted_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    """(NZB, expected files): Nested.part*.rar holding Disc.iso (UDF bridge with a Blu-ray
    .m2ts) and Extras.rar (a WAV), posted to INN2."""
    need("rar", "genisoimage", "ffmpeg")
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
    nzb = post(volumes, folder / "Nested.Release.nzb")
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
        assert_ranges(altmount, path, data, cases)


def test_ffprobe_reads_the_blu_ray_stream(altmount, imported) -> None:
    """ffprobe, seeking over HTTP, finds the H.264 and AAC streams of the .m2ts in the image."""
    codecs = sorted(s["codec_name"] for s in ffprobe_streams(altmount, imported[M2TS]))
    assert codecs == ["aac", "h264"]


@pytest.fixture(scope="module")
def posted_image(posted_set) -> tuple[Path, bytes]:
    """(NZB, .m2ts bytes): Feature.iso, a UDF bridge image of a Blu-ray stream posted as it
    is (no archive around it), to INN2 with nyuu."""
    nzb, expected = posted_set
    folder = nzb.parent
    stream = folder / "feature" / Path(IMAGE_M2TS).parent
    stream.mkdir(parents=True)
    (stream / Path(IMAGE_M2TS).name).write_bytes(expected[M2TS])
    image = folder / "Feature.iso"
    run(["genisoimage", "-quiet", "-udf", "-o", str(image), str(folder / "feature")])
    return post([image], folder / "Bare.Image.nzb"), expected[M2TS]


@pytest.fixture(scope="module")
def imported_image(session_server: AltmountServer, posted_image) -> str:
    """The WebDAV path of the image's .m2ts after `altmount import`."""
    nzb, _ = posted_image
    session_server.import_nzb(nzb)
    path = session_server.find_file("STREAM", Path(IMAGE_M2TS).name).path
    assert path.endswith(f"/{nzb.stem}/Feature/{IMAGE_M2TS}"), path
    return path


def test_posted_image_is_replaced_by_its_files(altmount, imported_image, posted_image) -> None:
    """The release lists the image's folder, not the .iso; the .m2ts has its size."""
    _, data = posted_image
    release = imported_image.split("/Feature/")[0]
    names = [e.path.rstrip("/").rsplit("/", 1)[1] for e in altmount.propfind(release + "/")]
    assert names == ["Feature"]
    folder = imported_image.rsplit("/", 1)[0]
    entries = {e.path: e.size for e in altmount.propfind(folder + "/")}
    assert entries == {imported_image: len(data)}


def test_posted_image_ranges_match(altmount, imported_image, posted_image) -> None:
    """Ranges at article boundaries, and the whole file, match the original stream; ffprobe
    finds its H.264 and AAC streams."""
    _, data = posted_image
    size = len(data)
    cases = [(0, 0), (0, 4095), (ARTICLE - 7, ARTICLE + 7), (size // 2, size // 2 + 99_999)]
    assert_ranges(altmount, imported_image, data, [*cases, (size - 17, size - 1)])
    assert_whole(altmount, imported_image, data)
    codecs = sorted(s["codec_name"] for s in ffprobe_streams(altmount, imported_image))
    assert codecs == ["aac", "h264"]
