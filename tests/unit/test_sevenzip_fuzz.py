"""Fuzzing the 7z parser: damaged, truncated and hostile archives raise only ArchiveError.

Mutated headers are re-wrapped with correct CRCs so the fuzzing reaches the
header parser instead of stopping at the checksum; hostile shapes (absurd
counts and sizes, coder loops, huge dictionaries and key derivations) get
explicit tests that bound time and peak memory.
"""

from __future__ import annotations

import struct
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sevenzip import writer

from altmount.archive.sevenzip import MAX_HEADER_SIZE, MAX_ITEMS
from altmount.archive.sevenzip_codec import KeyRing
from altmount.archive.sevenzip_members import SevenZipMember
from altmount.archive.sevenzip_model import SIGNATURE
from altmount.archive.sevenzip_scan import SevenZipScan
from altmount.errors import ArchiveError

DATA = Path(__file__).parent.parent / "data" / "7z"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PLAIN_HEADERS = ["copy-plain.7z", "tree.7z", "solid-copy.7z", "solid-aes.7z", "encrypted-data.7z"]
ARCHIVES = [*PLAIN_HEADERS, "copy-lzma-header.7z", "encrypted-headers.7z", "compressed.7z"]


def wrap(body: bytes, header: bytes) -> bytes:
    """An archive of `body` and `header` with a valid signature header (both CRCs right)."""
    start = struct.pack("<QQI", len(body), len(header), zlib.crc32(header))
    return SIGNATURE + b"\x00\x04" + struct.pack("<I", zlib.crc32(start)) + start + body + header


def split_archive(archive: bytes) -> tuple[bytes, bytes]:
    """(body, next header) of an archive."""
    offset, size = struct.unpack_from("<QQ", archive, 12)
    return archive[32 : 32 + offset], archive[32 + offset : 32 + offset + size]


def read(archive: bytes, password: str = "secret", volumes: int = 1) -> list[SevenZipMember]:
    """Walk the archive (cut into `volumes` pieces) and place its members."""
    step = max(1, -(-len(archive) // volumes))
    sizes = [len(archive[i : i + step]) for i in range(0, len(archive), step)] or [0]
    scan = SevenZipScan("fz.7z", archive[:1024], sizes, KeyRing(password))
    while (wanted := scan.want()) is not None:
        offset, size = wanted
        scan.feed(offset, archive[offset : offset + size])
    return scan.members()


def outcome(archive: bytes, password: str = "secret", volumes: int = 1) -> object:
    """The member count, or ArchiveError; any other exception fails the test."""
    try:
        return len(read(archive, password, volumes))
    except ArchiveError:
        return ArchiveError


def mutate(data: st.DataObject, blob: bytes) -> bytes:
    """`blob` with bytes changed, a slice dropped or duplicated, maybe cut short."""
    out = bytearray(blob)
    for _ in range(data.draw(st.integers(0, 6), label="flips")):
        if out:
            out[data.draw(st.integers(0, len(out) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans(), label="splice"):
        a = data.draw(st.integers(0, len(out)))
        b = data.draw(st.integers(a, min(len(out), a + 64)))
        out[a:a] = out[a:b] if data.draw(st.booleans()) else b""
        if data.draw(st.booleans()):
            del out[a:b]
    if data.draw(st.booleans(), label="big number"):
        at = data.draw(st.integers(0, len(out)))
        out[at:at] = b"\xff" + data.draw(st.binary(min_size=8, max_size=8))
    return bytes(out[: data.draw(st.integers(0, len(out)), label="cut")])


@contextmanager
def bounded(seconds: float, megabytes: float) -> Iterator[None]:
    """Fail if the block takes longer than `seconds` or allocates more than `megabytes` at peak."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < seconds, f"took {elapsed:.2f} s"
    assert peak < megabytes * 2**20, f"peak {peak / 2**20:.1f} MiB"


@FUZZ
@given(st.binary(max_size=4096), st.integers(1, 4))
def test_random_bytes(blob: bytes, volumes: int) -> None:
    """Random bytes, with or without a signature in front, raise only ArchiveError."""
    outcome(blob, volumes=volumes)
    outcome(SIGNATURE + blob, volumes=volumes)


@FUZZ
@given(st.data())
def test_mutated_archives(data: st.DataObject) -> None:
    """Damaged archives of every kind (CRCs left as they are) raise only ArchiveError."""
    name = data.draw(st.sampled_from(ARCHIVES))
    damaged = mutate(data, (DATA / name).read_bytes())
    assert outcome(damaged, volumes=data.draw(st.integers(1, 3))) in (ArchiveError, 0, 1, 2, 3)


@FUZZ
@given(st.data())
def test_mutated_headers_with_fixed_crcs(data: st.DataObject) -> None:
    """Damaged headers whose CRCs are made right again reach the parser: only ArchiveError."""
    body, header = split_archive((DATA / data.draw(st.sampled_from(PLAIN_HEADERS))).read_bytes())
    with bounded(5, 64):
        outcome(wrap(body, mutate(data, header)), password=data.draw(st.sampled_from(["", "pw"])))


@FUZZ
@given(st.data())
def test_mutated_encoded_header_streams(data: st.DataObject) -> None:
    """A damaged EncodedHeader or packed header raises only ArchiveError."""
    body, header = split_archive((DATA / "copy-lzma-header.7z").read_bytes())
    if data.draw(st.booleans()):
        body = mutate(data, body)
    else:
        header = mutate(data, header)
    with bounded(5, 64):
        outcome(wrap(body, header))


#: Bytes a header is made of: property ids, small NUMBERs, coder flags, long NUMBERs.
HEADER_BYTES = st.lists(
    st.one_of(st.integers(0, 0x19), st.sampled_from([0x21, 0x24, 0x80, 0xC0, 0xFF])),
    max_size=600,
).map(bytes)


@FUZZ
@given(
    st.sampled_from([b"\x01", b"\x01\x04", b"\x01\x04\x06", b"\x17\x06", b"\x01\x05"]), HEADER_BYTES
)
def test_header_soup(prefix: bytes, soup: bytes) -> None:
    """Headers built from the format's own vocabulary raise only ArchiveError."""
    with bounded(5, 64):
        outcome(wrap(b"\x00" * 4096, prefix + soup))


def number(value: int) -> bytes:
    """A 7z NUMBER (the longest form: 0xFF and eight bytes)."""
    return b"\xff" + value.to_bytes(8, "little")


@pytest.mark.parametrize(
    ("header", "phrase"),
    [
        (b"\x01\x05" + number(1 << 62), "files"),
        (b"\x01\x04\x06\x00" + number(10**9), "packed streams"),
        (b"\x01\x04\x06" + number(1 << 60), "absurd"),
        (b"\x01\x04\x07\x0b" + number(MAX_ITEMS + 1), "folders"),
        (b"\x01\x04\x07\x0b\x01\x00" + number(1 << 40), "coders"),
        (b"\x01\x05\x01\x11" + number(1 << 50), "truncated"),
        (b"\x01\x05\x01\x0e" + number(1 << 20) + b"\x00", "truncated"),
        (b"\x01\x02" + b"\x19\x00" * 100_000 + b"\x00\x00", "properties in a row"),
    ],
)
def test_absurd_counts_and_sizes_are_refused_cheaply(header, phrase):
    """Huge counts and sizes in a header fail fast, without allocating for them."""
    with bounded(1, 8), pytest.raises(ArchiveError, match=phrase):
        read(wrap(b"", header))


def test_coders_bound_in_a_loop_are_not_followed():
    """Two coders feeding each other beside the main one: no endless walk, nothing stored."""
    copy = b"\x01\x00"
    folder = b"\x03" + copy * 3 + b"\x01\x02\x02\x01"  # bonds: 1 <- coder 2, 2 <- coder 1
    header = (
        b"\x01\x04\x06\x00\x01\x09\x05\x00\x07\x0b\x01\x00"
        + folder
        + b"\x0c\x05\x05\x05\x00\x00\x05\x01\x11\x05\x00a\x00\x00\x00\x00\x00"
    )
    with bounded(1, 8):
        (item,) = read(wrap(b"x" * 5, header))
    assert not item.member.stored and item.member.pieces == ()


def test_stored_member_past_the_header_is_refused():
    """Packed streams that run into the header are damage, not bytes to stream."""
    streams = b"\x06\x00\x01\x09\x40\x00" + b"\x07\x0b\x01\x00\x01\x01\x00\x0c\x40\x00" + b"\x00"
    files = b"\x05\x01\x11\x05\x00a\x00\x00\x00\x00"
    header = b"\x01\x04" + streams + files + b"\x00"  # one 64-byte copy folder in 16 bytes
    with pytest.raises(ArchiveError, match="run past the header"):
        read(wrap(b"x" * 16, header))


def lzma_encoded(props: bytes, unpack_size: int, packed: bytes) -> bytes:
    """An archive whose EncodedHeader says: `packed` is LZMA with `props`, unpacking to a size."""
    header = (
        b"\x17\x06\x00\x01\x09"
        + number(len(packed))
        + b"\x00\x07\x0b\x01\x00\x01\x23\x03\x01\x01\x05"
        + props
        + b"\x0c"
        + number(unpack_size)
        + b"\x00\x00"
    )
    return wrap(packed, header)


def test_huge_lzma_dictionary_is_clamped():
    """A header claiming a 4 GiB LZMA dictionary decodes with one of its own size, quickly."""
    body, header = split_archive((DATA / "copy-lzma-header.7z").read_bytes())
    assert header.count(b"\x5d\x00\x10\x00\x00") == 1
    header = header.replace(b"\x5d\x00\x10\x00\x00", b"\x5d\xff\xff\xff\xff")
    with bounded(1, 16):
        assert len(read(wrap(body, header))) == 2


def test_header_bomb_is_refused_before_decoding():
    """An EncodedHeader that claims to unpack to more than the header limit is refused."""
    with bounded(1, 8), pytest.raises(ArchiveError, match="more than"):
        read(lzma_encoded(b"\x5d\x00\x00\x01\x00", MAX_HEADER_SIZE + 1, b"\x00" * 64))


@pytest.mark.parametrize(("cycles", "phrase"), [(40, "not supported"), (24, "would hash more")])
def test_costly_key_derivations_are_refused(cycles, phrase):
    """AES properties asking for 2^40 rounds, or 2^24 with a long password, fail at once."""
    body, header = split_archive((DATA / "encrypted-data.7z").read_bytes())
    at = header.index(b"\x06\xf1\x07\x01") + 5  # after the id and the property size
    assert header[at] & 0x3F == 19
    archive = wrap(body, header[:at] + bytes([header[at] & 0xC0 | cycles]) + header[at + 1 :])
    scan = SevenZipScan("fz.7z", archive[:1024], [len(archive)], KeyRing(""))
    while (wanted := scan.want()) is not None:
        scan.feed(wanted[0], archive[wanted[0] : sum(wanted)])
    (member,) = scan.members()
    with bounded(1, 8), pytest.raises(ArchiveError, match=phrase):
        KeyRing("x" * 40).key(member.aes, "fz.7z")


def test_many_files_parse_in_bounded_time():
    """A solid folder of 100,000 files (the item limit) is read and placed in a few seconds."""
    archive = writer().write_7z([(f"Release/f{i:06d}.bin", b"x") for i in range(MAX_ITEMS)])
    started = time.perf_counter()
    assert len(read(archive)) == MAX_ITEMS
    assert time.perf_counter() - started < 5
