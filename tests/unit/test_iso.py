"""The ISO 9660 / UDF lister on images made by genisoimage, xorriso and mkudffs (made at test
time) and by the test-side writers in tests/data/iso, fed whole and in article-sized pieces."""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from altmount.archive.iso import RECOGNITION_OFFSET, ImageScan, is_disc_image
from altmount.archive.udf import SECTOR
from altmount.errors import ArchiveError

DATA = Path(__file__).parent.parent / "data" / "iso"
VOB = random.Random(1).randbytes(300_000)
M2TS = random.Random(2).randbytes(5_000)
TREE = {"VIDEO_TS/VTS_01_1.VOB": VOB, "BDMV/STREAM/00000.m2ts": M2TS, "readme.txt": b"hi\n"}


def writer(name: str):
    """A test-side image writer module from tests/data/iso."""
    spec = importlib.util.spec_from_file_location(name, DATA / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def need(tool: str) -> None:
    """Skip without `tool`, except under CI where it is required."""
    if shutil.which(tool) is None:
        if os.environ.get("CI") == "true":
            raise AssertionError(f"{tool} is required under CI (scripts/inn2-setup.sh installs it)")
        pytest.skip(f"{tool} is not installed")


def master(tmp_path: Path, *command: str, files: dict[str, bytes] = TREE) -> bytes:
    """Write `files` under a folder, run the mastering command (IMAGE and SOURCE stand for
    the paths) and return the image."""
    need(command[0])
    source, image = tmp_path / "source", tmp_path / "disc.iso"
    for path, data in files.items():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        (source / path).write_bytes(data)
    args = [{"IMAGE": str(image), "SOURCE": str(source)}.get(a, a) for a in command]
    subprocess.run(args, check=True, capture_output=True)
    return image.read_bytes()


def scan(data: bytes, label: str = "disc.iso", article: int | None = None) -> ImageScan:
    """List an image; with `article`, every read is answered with whole `article`-sized
    pieces, as the stage's article reads are."""
    walk = ImageScan(len(data), label)
    while (wanted := walk.want()) is not None:
        start, end = wanted[0], wanted[0] + wanted[1]
        if article:
            start, end = start - start % article, min(-(-end // article) * article, len(data))
        walk.feed(start, data[start:end])
    return walk


def contents(data: bytes, walk: ImageScan) -> dict[str, bytes]:
    """Each listed file's bytes, joined from its extents."""
    return {f.path: b"".join(data[o : o + n] for o, n in f.extents) for f in walk.files}


def test_plain_iso9660_names(tmp_path):
    """Without extensions the primary tree's 8.3 names are listed, versions stripped."""
    data = master(tmp_path, "genisoimage", "-quiet", "-o", "IMAGE", "SOURCE")
    walk = scan(data)
    assert walk.kind == "iso9660"
    assert contents(data, walk) == {
        "VIDEO_TS/VTS_01_1.VOB": VOB,
        "BDMV/STREAM/00000.M2T": M2TS,
        "README.TXT": b"hi\n",
    }


@pytest.mark.parametrize(
    "command",
    [
        ("genisoimage", "-quiet", "-J", "-o", "IMAGE", "SOURCE"),
        ("genisoimage", "-quiet", "-R", "-o", "IMAGE", "SOURCE"),
        ("genisoimage", "-quiet", "-R", "-J", "-o", "IMAGE", "SOURCE"),
        ("xorriso", "-outdev", "IMAGE", "-map", "SOURCE", "/"),
        (
            "xorriso",
            "-joliet",
            "on",
            "-rockridge",
            "off",
            "-outdev",
            "IMAGE",
            "-map",
            "SOURCE",
            "/",
        ),
    ],
    ids=["joliet", "rock-ridge", "both", "xorriso", "xorriso-joliet"],
)
def test_joliet_and_rock_ridge_names(tmp_path, command):
    """Joliet or Rock Ridge names are the real ones, lower case and long extensions kept."""
    data = master(tmp_path, *command)
    walk = scan(data)
    assert (walk.kind, contents(data, walk)) == ("iso9660", TREE)


def test_udf_bridge_is_preferred(tmp_path):
    """An ISO 9660 + UDF 1.02 bridge image (genisoimage -udf) is listed from its UDF side."""
    data = master(tmp_path, "genisoimage", "-quiet", "-udf", "-o", "IMAGE", "SOURCE")
    walk = scan(data)
    assert (walk.kind, contents(data, walk)) == ("udf", TREE)


def test_damaged_udf_side_falls_back_to_iso9660(tmp_path):
    """A bridge image whose UDF anchors are damaged is listed from its ISO 9660 side."""
    data = bytearray(
        master(tmp_path, "genisoimage", "-quiet", "-udf", "-J", "-o", "IMAGE", "SOURCE")
    )
    last = len(data) // SECTOR - 1
    for sector in (256, last, last - 256):
        if data[sector * SECTOR : sector * SECTOR + 2] == b"\x02\x00":  # an anchor's tag
            data[sector * SECTOR : sector * SECTOR + 16] = bytes(16)
    walk = scan(bytes(data))
    assert (walk.kind, contents(bytes(data), walk)) == ("iso9660", TREE)


def test_multi_extent_file_keeps_its_extents_in_order():
    """A file in four non-adjacent extents is one file of four extents, in record order."""
    files = {"VTS_01_1.VOB": VOB[:20_000], "VIDEO_TS.IFO": b"DVDVIDEO-VMG" + bytes(100)}
    data = writer("isowriter").write_iso9660(files)
    walk = scan(data)
    (vob,) = [f for f in walk.files if f.path == "VIDEO_TS/VTS_01_1.VOB"]
    assert len(vob.extents) == 4 and vob.size == 20_000
    assert [o for o, _ in vob.extents] == sorted(o for o, _ in vob.extents)
    assert contents(data, walk) == {f"VIDEO_TS/{k}": v for k, v in files.items()}


def test_multi_extent_writer_matches_7zip(tmp_path):
    """7-Zip extracts the test writer's multi-extent file to the same bytes."""
    need("7zz")
    files = {"VTS_01_1.VOB": VOB[:20_000]}
    (tmp_path / "me.iso").write_bytes(writer("isowriter").write_iso9660(files))
    subprocess.run(
        ["7zz", "x", "-bd", "-bso0", f"-o{tmp_path}/x", str(tmp_path / "me.iso")], check=True
    )
    assert (tmp_path / "x" / "VIDEO_TS" / "VTS_01_1.VOB").read_bytes() == files["VTS_01_1.VOB"]


BLU_RAY = {
    "BDMV/STREAM/00000.m2ts": M2TS,
    "BDMV/STREAM/00001.m2ts": VOB[:100_000],
    "BDMV/index.bdmv": b"INDX0200",
    "CERTIFICATE/id.bdmv": b"x" * 100,
}


def blu_ray() -> bytes:
    """A UDF 2.50 image with a metadata partition, a split .m2ts and embedded small files."""
    return writer("udfwriter").write_udf250(BLU_RAY, split=("BDMV/STREAM/00001.m2ts",))


def test_udf250_metadata_partition():
    """Blu-ray UDF 2.50: ICBs in the metadata partition, data by long ADs, a split file in two
    extents, small files embedded in their entries."""
    data = blu_ray()
    walk = scan(data)
    assert (walk.kind, contents(data, walk)) == ("udf", BLU_RAY)
    by_path = {f.path: f for f in walk.files}
    assert len(by_path["BDMV/STREAM/00001.m2ts"].extents) == 2
    assert len(by_path["BDMV/index.bdmv"].extents) == 1


def test_udf250_writer_matches_udfinfo_and_7zip(tmp_path):
    """udfinfo accepts the test writer's image as UDF 2.50 and 7-Zip extracts the same bytes."""
    need("udfinfo")
    need("7zz")
    image = tmp_path / "bd.iso"
    image.write_bytes(blu_ray())
    info = subprocess.run(["udfinfo", str(image)], check=True, capture_output=True, text=True)
    assert "udfrev=2.50" in info.stdout
    subprocess.run(["7zz", "x", "-bd", "-bso0", f"-o{tmp_path}/x", str(image)], check=True)
    for path, data in BLU_RAY.items():
        assert (tmp_path / "x" / path).read_bytes() == data


def test_udf_mirror_serves_when_the_metadata_file_is_damaged():
    """A broken metadata file entry is replaced by its mirror."""
    data = bytearray(blu_ray())
    partition = writer("udfwriter").PARTITION_START
    data[partition * SECTOR] ^= 0xFF  # the metadata file entry's tag
    walk = scan(bytes(data))
    assert contents(bytes(data), walk) == BLU_RAY


@pytest.mark.parametrize("article", [1000, 4096, 65_537, 716_800])
def test_article_sized_pieces_give_the_same_listing(article):
    """Reads answered with whole articles (bytes before and after) list the same files."""
    data = blu_ray()
    assert scan(data, article=article).files == scan(data).files


def test_empty_mkudffs_image_lists_nothing(tmp_path):
    """An empty UDF 2.01 file system formatted by mkudffs lists no file."""
    need("mkudffs")
    image = tmp_path / "empty.udf"
    image.write_bytes(bytes(4 << 20))
    subprocess.run(
        ["mkudffs", "--media-type=hd", "--blocksize=2048", str(image)],
        check=True,
        capture_output=True,
    )
    walk = scan(image.read_bytes())
    assert (walk.kind, walk.files) == ("udf", [])


def test_recordable_disc_image_is_refused_clearly(tmp_path):
    """A UDF image with a virtual partition (mkudffs for BD-R) is refused naming that."""
    need("mkudffs")
    image = tmp_path / "bdr.udf"
    image.write_bytes(bytes(8 << 20))
    subprocess.run(["mkudffs", "--media-type=bdr", str(image)], check=True, capture_output=True)
    with pytest.raises(
        ArchiveError, match=r"bdr\.udf: UDF partition type '\*UDF Virtual Partition'"
    ):
        scan(image.read_bytes(), "bdr.udf")


def test_truncated_image_is_refused_naming_it():
    """A file whose extent lies past the image's end is an error naming the image."""
    data = writer("isowriter").write_iso9660({"VTS_01_1.VOB": VOB[:20_000]})
    with pytest.raises(ArchiveError, match=r"^cut\.iso: .*past the end of the image"):
        scan(data[: len(data) - 3 * SECTOR], "cut.iso")


def test_iso9660_directory_loop_is_refused():
    """A subdirectory record pointing back at the root is refused as a loop."""
    data = bytearray(writer("isowriter").write_iso9660({"A.VOB": b"x" * 10}))
    root = 20 * SECTOR
    record = root + 68  # the third record of the root: VIDEO_TS
    assert data[record + 33 : record + 41] == b"VIDEO_TS"
    data[record + 2 : record + 10] = struct.pack("<I", 20) + struct.pack(">I", 20)
    with pytest.raises(ArchiveError, match="loop"):
        scan(bytes(data))


def test_not_a_disc_image():
    """Random bytes are not an image, and the error says so."""
    data = random.Random(3).randbytes(RECOGNITION_OFFSET + 4 * SECTOR)
    with pytest.raises(ArchiveError, match=r"^x\.bin: not an ISO 9660 or UDF disc image$"):
        scan(data, "x.bin")
    assert not is_disc_image(data[RECOGNITION_OFFSET:])


def test_recognition_of_both_file_systems():
    """Sector 16 tells an image: ISO 9660 (CD001) or UDF (BEA01)."""
    iso = writer("isowriter").write_iso9660({"A.VOB": b"x"})
    assert is_disc_image(iso[RECOGNITION_OFFSET:]) and is_disc_image(blu_ray()[RECOGNITION_OFFSET:])


def test_feed_must_cover_the_request():
    """Bytes that do not cover what was asked are an error, not a guess."""
    data = blu_ray()
    walk = ImageScan(len(data), "disc.iso")
    offset, size = walk.want()
    with pytest.raises(ArchiveError, match="were asked"):
        walk.feed(offset + 1, data[offset + 1 : offset + size])
