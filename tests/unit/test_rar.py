"""The sans-IO RAR header parsers on archives made by `rar` 7.01 and the RAR 4 writer."""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from altmount.archive.rar import Kind, Need, decode_rar4_name, detect, parse_block, rar4_method_name
from altmount.archive.scan import VolumeScan
from altmount.errors import ArchiveError

DATA = Path(__file__).parent.parent / "data" / "rar"
MOVIE = b"\x1a\x45\xdf\xa3" + random.Random(1).randbytes(6000)


def load(name: str) -> bytes:
    """A fixture archive's bytes."""
    return (DATA / name).read_bytes()


def scan(data: bytes, label: str = "test.rar", chunk=None) -> list:
    """Every block of a volume, fed whole or in chunks as the scan asks."""
    walker = VolumeScan(detect(data), len(data), label)
    rng = random.Random(len(data))
    while (wanted := walker.want()) is not None:
        start, size = wanted
        extra = 0 if chunk is None else chunk(rng)
        walker.feed(
            start, data[start : start + size + extra] if chunk is not None else data[start:]
        )
    return walker.blocks


def files(blocks) -> list:
    """The file blocks."""
    return [b for b in blocks if b.kind is Kind.FILE]


def test_detect_signatures():
    """RAR 5 and RAR 4 signatures are told apart; anything else is None."""
    assert detect(load("rar5-stored.rar")) == 5
    assert detect(load("rar4-stored.rar")) == 4
    assert detect(b"PK\x03\x04") is None


@pytest.mark.parametrize("chunk", [None, lambda rng: 0, lambda rng: rng.randint(0, 50)])
def test_rar5_stored_members_located(chunk):
    """A stored RAR 5 member's data area is exactly the original bytes, however fed."""
    data = load("rar5-stored.rar")
    found = files(scan(data, chunk=chunk))
    assert [b.name for b in found] == ["movie.mkv", "notes.txt"]
    movie = found[0]
    assert movie.stored and movie.method == 0 and not movie.encrypted
    assert data[movie.data_offset : movie.next_offset] == MOVIE


def test_rar5_volumes_numbers_and_split_flags():
    """RAR 5 volumes carry their number, the first-volume mark and split flags."""
    blocks = [scan(load(f"rar5-vol.part{n}.rar")) for n in (1, 2, 3)]
    mains = [b[0] for b in blocks]
    assert [m.volume_number for m in mains] == [0, 1, 2]
    assert [m.first_volume for m in mains] == [True, False, False]
    pieces = [files(b)[0] for b in blocks]
    assert [(p.split_before, p.split_after) for p in pieces] == [
        (False, True),
        (True, True),
        (True, False),
    ]
    joined = b"".join(
        load(f"rar5-vol.part{n}.rar")[p.data_offset : p.next_offset]
        for n, p in zip((1, 2, 3), pieces, strict=True)
    )
    assert joined == MOVIE


def test_rar5_compressed_method():
    """A -m3 member reports method 3 and is not stored."""
    (notes,) = files(scan(load("rar5-compressed.rar")))
    assert (notes.method, notes.stored) == (3, False)


def test_rar5_encryption_detected():
    """-p marks the member encrypted; -hp stops the walk at the encryption header."""
    assert files(scan(load("rar5-encrypted.rar")))[0].encrypted
    blocks = scan(load("rar5-headers-encrypted.rar"))
    assert [b.kind for b in blocks] == [Kind.ENCRYPTION]


def test_rar5_directory_tree():
    """Paths inside the archive keep their folders; directories are flagged."""
    found = files(scan(load("rar5-tree.rar")))
    assert {(b.name, b.is_dir) for b in found} == {("Season/E01.mkv", False), ("Season", True)}


@pytest.mark.parametrize("chunk", [None, lambda rng: 0, lambda rng: rng.randint(0, 30)])
def test_rar4_stored_and_volumes(chunk):
    """RAR 4 volumes: first-volume mark, end-block numbers, split pieces join to the original."""
    names = ["rar4-vol.rar", "rar4-vol.r00", "rar4-vol.r01"]
    blocks = [scan(load(n), chunk=chunk) for n in names]
    assert [b[0].first_volume for b in blocks] == [True, False, False]
    assert [b[-1].volume_number for b in blocks] == [0, 1, 2]
    assert [b[-1].more_volumes for b in blocks] == [True, True, False]
    pieces = [f for b in blocks for f in files(b) if not f.is_dir]
    assert {p.name for p in pieces} == {"Season/E01.mkv"}
    joined = b"".join(
        load(n)[p.data_offset : p.next_offset]
        for n, b in zip(names, blocks, strict=True)
        for p in files(b)
        if not p.is_dir
    )
    assert joined == MOVIE
    (single,) = files(scan(load("rar4-stored.rar"), chunk=chunk))
    assert single.stored and rar4_method_name(single.method) == "m0"


def test_need_when_header_incomplete():
    """With too few bytes the parser asks for more instead of guessing."""
    data = load("rar5-stored.rar")
    assert isinstance(parse_block(5, data[8:10], 8, len(data), "x.rar"), Need)
    need = parse_block(5, data[8:15], 8, len(data), "x.rar")
    assert isinstance(need, Need) and need.size > 7


def test_corrupt_crc_names_archive():
    """A flipped byte in a header is a CRC error naming the archive and offset."""
    data = bytearray(load("rar4-stored.rar"))
    data[30] ^= 0xFF
    with pytest.raises(ArchiveError, match=r"movie\.rar: block at byte 20: header CRC mismatch"):
        scan(bytes(data), "movie.rar")


def test_truncated_volume_names_the_problem():
    """A volume cut inside a member's data is reported as truncated."""
    data = load("rar5-stored.rar")[:3000]
    with pytest.raises(
        ArchiveError, match=r"cut\.rar: the data of movie\.mkv ends at byte .* truncated"
    ):
        scan(data, "cut.rar")


def rar5_header(fields: bytes) -> bytes:
    """A RAR 5 header with a correct CRC around `fields` (type onwards)."""
    body = bytes([len(fields)]) + fields
    return zlib.crc32(body).to_bytes(4, "little") + body


def test_absurd_rar5_size_refused():
    """A file header announcing an exabyte is refused, not believed."""
    huge = bytes([0xFF] * 8 + [0x7F])
    header = rar5_header(bytes([2, 0, 0]) + huge + bytes([0, 0, 0, 1]) + b"a")
    with pytest.raises(ArchiveError, match="absurd size"):
        parse_block(5, header, 8, 8 + len(header) + 10, "big.rar")


def test_rar4_unicode_name():
    """LHD_UNICODE names: UTF-8 when there is no NUL, else the packed UTF-16 form."""
    assert decode_rar4_name("Señor.mkv".encode()) == "Señor.mkv"
    packed = b"ab\x00" + bytes([0x00, 0b00_00_10_00]) + b"a" + b"b" + b"\x3a\x04"
    assert decode_rar4_name(packed) == "abк"


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=300),
    st.sampled_from(["rar5-stored.rar", "rar4-stored.rar", "rar5-vol.part2.rar"]),
    st.integers(0, 400),
)
def test_fuzzed_volumes_parse_or_raise_archive_error(noise, name, at):
    """Corrupted, truncated or garbage volumes either parse or raise ArchiveError, quickly."""
    data = bytearray(load(name))
    data[at : at + len(noise)] = noise
    try:
        scan(bytes(data[: max(at + len(noise), 8)] if len(noise) % 2 else data), name)
    except ArchiveError as exc:
        assert name in str(exc)
