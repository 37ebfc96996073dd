"""Fuzzing the ISO 9660 / UDF lister: damaged, truncated and hostile images raise only
ArchiveError, within bounded reads and time.

UDF descriptors carry a checksum and a CRC; mutated images get them recomputed
(`retag`) so the fuzzing reaches the structures behind the tags. Hostile shapes
(directory loops, allocation extents continuing into themselves, absurd sizes)
get explicit tests.
"""

from __future__ import annotations

import functools
import struct
import time
from binascii import crc_hqx

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_iso import BLU_RAY, VOB, blu_ray, writer

from altmount.archive.iso import MAX_READ_BYTES, ImageScan
from altmount.archive.udf import SECTOR
from altmount.errors import ArchiveError

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_TAG_IDS = {*range(1, 10), *range(256, 267)}
_EXTREMES = [0, 1, 0x7FF, 0x800, 0xFFFF, 0x3FFFFFFF, 0x40000000, 0xC0000800, 0x7FFFFFFF, 0xFFFFFFFF]


def tag_positions(data: bytes) -> list[int]:
    """Offsets of the valid UDF descriptor tags of an image (checksum and CRC right)."""
    found = []
    for position in range(0, len(data) - 16, 4):
        ident, version = struct.unpack_from("<HH", data, position)
        if ident not in _TAG_IDS or version not in (2, 3):
            continue
        head = data[position : position + 16]
        if (sum(head[0:4]) + sum(head[5:16])) & 0xFF != head[4]:
            continue
        crc, length = struct.unpack_from("<HH", data, position + 8)
        if crc_hqx(data[position + 16 : position + 16 + length], 0) == crc:
            found.append(position)
    return found


def retag(data: bytearray, positions: list[int]) -> None:
    """Recompute the CRC and checksum of every tag at `positions` after a mutation."""
    for position in positions:
        (length,) = struct.unpack_from("<H", data, position + 10)
        body = data[position + 16 : position + 16 + length]
        struct.pack_into("<H", data, position + 8, crc_hqx(body, 0))
        data[position + 4] = (
            sum(data[position : position + 4]) + sum(data[position + 5 : position + 16])
        ) & 0xFF


@functools.cache
def images() -> dict[str, tuple[bytes, list[int]]]:
    """The images fuzzed, with the offsets of their descriptor tags."""
    bd = blu_ray()
    dvd = writer("isowriter").write_iso9660(
        {"VTS_01_1.VOB": VOB[:20_000], "VIDEO_TS.IFO": b"x" * 300}
    )
    return {"udf250": (bd, tag_positions(bd)), "iso9660": (dvd, [])}


def listed(data: bytes) -> ImageScan | None:
    """Scan an image as the stage does; None when it is refused with ArchiveError.

    Any other exception fails the test; so do reads past the image, more bytes asked
    than MAX_READ_BYTES, or listed extents outside the image.
    """
    asked = 0
    started = time.perf_counter()
    try:
        walk = ImageScan(len(data), "fuzz.iso")
        while (wanted := walk.want()) is not None:
            offset, size = wanted
            assert 0 <= offset and size > 0 and offset + size <= len(data)
            asked += size
            walk.feed(offset, data[offset : offset + size])
    except ArchiveError as exc:
        assert str(exc).startswith("fuzz.iso: ")
        return None
    finally:
        assert asked <= MAX_READ_BYTES
        assert time.perf_counter() - started < 10
    for file in walk.files:
        assert file.size == sum(length for _, length in file.extents)
        assert all(0 <= o and o + n <= len(data) for o, n in file.extents)
    return walk


mutation = st.tuples(
    st.integers(min_value=0),  # which descriptor (or sector) to hit
    st.integers(min_value=0, max_value=SECTOR - 4),  # where in it
    st.one_of(st.integers(0, 255), st.sampled_from(_EXTREMES).map(lambda v: -1 - v)),
)


@FUZZ
@given(
    kind=st.sampled_from(["udf250", "iso9660"]),
    mutations=st.lists(mutation, min_size=1, max_size=6),
    fix_tags=st.booleans(),
)
def test_mutated_images_raise_only_archive_error(kind, mutations, fix_tags):
    """Bytes changed in the descriptors, directories and entries: a listing or ArchiveError."""
    pristine, positions = images()[kind]
    data = bytearray(pristine)
    for which, where, value in mutations:
        base = positions[which % len(positions)] if positions else (16 + which % 6) * SECTOR
        position = min(base + where, len(data) - 4)
        if value >= 0:
            data[position] = value
        else:
            struct.pack_into("<I", data, position, -1 - value)
    if fix_tags:
        retag(data, positions)
    listed(bytes(data))


@FUZZ
@given(kind=st.sampled_from(["udf250", "iso9660"]), cut=st.floats(0, 1))
def test_truncated_images_raise_only_archive_error(kind, cut):
    """An image cut anywhere: a listing of what is whole, or ArchiveError."""
    pristine, _ = images()[kind]
    listed(pristine[: int(len(pristine) * cut)])


def test_udf_directory_loop_is_refused():
    """A subdirectory entry pointing back at the root directory's ICB is a loop."""
    data = bytearray(blu_ray())
    positions = tag_positions(bytes(data))
    root = _fsd_root(data, positions)
    fid = _fid_named(data, positions, b"STREAM")
    struct.pack_into("<I", data, fid + 24, root)
    retag(data, positions)
    with pytest.raises(
        ArchiveError, match=r"^fuzz\.iso: damaged UDF image: directory /BDMV/STREAM.* loop"
    ):
        _scan(bytes(data))


def test_allocation_extent_continuing_into_itself_is_bounded():
    """An allocation extent descriptor whose continuation is itself ends in ArchiveError."""
    data = bytearray(blu_ray())
    positions = tag_positions(bytes(data))
    spare = 30  # an unused metadata block
    metadata = (writer("udfwriter").PARTITION_START + 2 + spare) * SECTOR
    body = struct.pack("<II", 0, 16) + struct.pack("<IIH6x", 0xC0000000 | SECTOR, spare, 1)
    data[metadata : metadata + 16] = struct.pack("<HHBBHHHI", 258, 3, 0, 0, 1, 0, len(body), spare)
    data[metadata + 16 : metadata + 16 + len(body)] = body
    entry = _entry_of(data, positions, "BDMV/STREAM/00000.m2ts")
    struct.pack_into("<IIH", data, entry + 216, 0xC0000000 | SECTOR, spare, 1)
    retag(data, [*positions, metadata])
    started = time.perf_counter()
    with pytest.raises(ArchiveError, match="more than"):
        _scan(bytes(data))
    assert time.perf_counter() - started < 10


def test_absurd_file_size_is_refused():
    """A file entry announcing a petabyte is refused: its extents do not hold it."""
    data = bytearray(blu_ray())
    positions = tag_positions(bytes(data))
    entry = _entry_of(data, positions, "BDMV/STREAM/00001.m2ts")
    struct.pack_into("<QQ", data, entry + 56, 1 << 50, 1 << 50)
    retag(data, positions)
    with pytest.raises(ArchiveError, match=r"00001\.m2ts: its extents hold 100000 of its"):
        _scan(bytes(data))


def test_pristine_images_list_every_file():
    """The fuzzed images themselves list completely (the fuzzing starts from good input)."""
    walk = listed(images()["udf250"][0])
    assert walk is not None and {f.path for f in walk.files} == set(BLU_RAY)


def _scan(data: bytes) -> ImageScan:
    walk = ImageScan(len(data), "fuzz.iso")
    while (wanted := walk.want()) is not None:
        walk.feed(wanted[0], data[wanted[0] : wanted[0] + wanted[1]])
    return walk


def _fids(data: bytearray, positions: list[int]) -> list[int]:
    return [p for p in positions if struct.unpack_from("<H", data, p)[0] == 257]


def _fid_named(data: bytearray, positions: list[int], name: bytes) -> int:
    for fid in _fids(data, positions):
        length = data[fid + 19]
        if data[fid + 38 : fid + 38 + length] == b"\x08" + name:
            return fid
    raise AssertionError(f"no entry named {name!r}")


def _fsd_root(data: bytearray, positions: list[int]) -> int:
    fsd = next(p for p in positions if struct.unpack_from("<H", data, p)[0] == 256)
    return struct.unpack_from("<I", data, fsd + 404)[0]


def _entry_of(data: bytearray, positions: list[int], path: str) -> int:
    """The offset of a file's extended file entry in the (main) metadata extent."""
    fid = _fid_named(data, positions, path.rsplit("/", 1)[1].encode())
    block = struct.unpack_from("<I", data, fid + 24)[0]
    return (writer("udfwriter").PARTITION_START + 2 + block) * SECTOR
