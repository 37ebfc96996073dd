"""PAR2 packet parsing against files made by the real par2cmdline tool, and damaged ones."""

from __future__ import annotations

import hashlib
import random
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from altmount.errors import Par2Error
from altmount.par2 import MAGIC, Par2Parser, parse_par2
from altmount.par2.packets import TYPE_CREATOR, TYPE_FILE_DESC, TYPE_MAIN

DATA = Path(__file__).parent.parent / "data" / "par2"
INDEX = (DATA / "index.par2").read_bytes()
VOLUME = (DATA / "index.vol0+1.par2").read_bytes()
#: The files the fixture protects, rebuilt from the seeds in tests/data/par2/README.md.
SOURCES = {
    "movie.mkv": random.Random(5).randbytes(40000),
    "small.nfo": b"hello nfo\n",
    "Ünïcode name.srt": random.Random(6).randbytes(3000),
}
SET_ID = b"S" * 16
TYPE_RECOVERY = b"PAR 2.0\0RecvSlic"


def packet(kind: bytes, body: bytes, set_id: bytes = SET_ID, length: int | None = None) -> bytes:
    """One PAR2 packet with a correct MD5 (and, if given, a false length field)."""
    body += b"\0" * (-len(body) % 4)
    signed = set_id + kind + body
    size = 32 + len(signed) if length is None else length
    return MAGIC + struct.pack("<Q", size) + hashlib.md5(signed).digest() + signed


def file_desc(name: str, data: bytes) -> bytes:
    """A FileDesc packet for `data` named `name`."""
    file_id = hashlib.md5(name.encode()).digest()
    fields = struct.pack(
        "<16s16s16sQ",
        file_id,
        hashlib.md5(data).digest(),
        hashlib.md5(data[:16384]).digest(),
        len(data),
    )
    return packet(TYPE_FILE_DESC, fields + name.encode())


def names(data: bytes) -> list[str]:
    """The file names parse_par2 finds in `data`."""
    return [f.name for f in parse_par2(data).files]


def test_index_file_from_par2cmdline():
    """The tool's index file yields every name, size and both MD5s of the protected files."""
    parsed = parse_par2(INDEX)
    assert parsed.bad_packets == 0
    assert parsed.main is not None and parsed.main.slice_size == 4096
    assert len(parsed.main.recovery_file_ids) == 3
    assert parsed.creator.startswith("Created by par2cmdline")
    found = {f.name: f for f in parsed.files}
    assert set(found) == set(SOURCES)
    for name, data in SOURCES.items():
        assert found[name].size == len(data)
        assert found[name].md5 == hashlib.md5(data).digest()
        assert found[name].md5_16k == hashlib.md5(data[:16384]).digest()


def test_volume_file_skips_recovery_slices():
    """A recovery volume gives the same descriptions; its slices are skipped, not counted bad."""
    assert parse_par2(VOLUME) == parse_par2(INDEX)


@pytest.mark.parametrize("blob", [INDEX, VOLUME], ids=["index", "volume"])
def test_byte_by_byte_equals_whole(blob):
    """Feeding one byte at a time gives the same result as feeding the whole file."""
    parser = Par2Parser()
    for i in range(len(blob)):
        parser.feed(blob[i : i + 1])
    assert parser.close() == parse_par2(blob)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=40))
def test_random_chunks_equal_whole(cuts):
    """Any chunking of the volume file gives the same result as feeding it whole."""
    parser = Par2Parser()
    position = 0
    for cut in cuts:
        parser.feed(VOLUME[position : position + cut])
        position += cut
    parser.feed(VOLUME[position:])
    assert parser.close() == parse_par2(VOLUME)


def test_truncated_file_keeps_complete_packets():
    """A file cut in the middle of a packet yields the packets before the cut."""
    cut = INDEX.find(MAGIC, INDEX.find(TYPE_FILE_DESC) + 1) + 40
    parsed = parse_par2(INDEX[:cut])
    assert [f.name for f in parsed.files] == ["movie.mkv"]


@pytest.mark.parametrize(
    "length",
    [0, 8, 63, 66, 1 << 40, (1 << 64) - 4, 10_000],
    ids=["zero", "tiny", "below-header", "not-multiple-of-4", "absurd", "max", "beyond-buffer"],
)
def test_bad_packet_length_is_skipped(length):
    """A packet whose length is impossible is counted bad and the next packet is still read."""
    good = file_desc("b.mkv", b"x" * 100)
    blob = file_desc("a.mkv", b"a" * 10)[:8] + struct.pack("<Q", length) + good[16:] + good
    started = time.perf_counter()
    parsed = parse_par2(blob)
    assert time.perf_counter() - started < 0.5
    assert "b.mkv" in [f.name for f in parsed.files]
    assert parsed.bad_packets >= 1


def test_wrong_md5_is_skipped():
    """A packet whose MD5 does not match its contents is dropped; later packets survive."""
    damaged = bytearray(file_desc("a.mkv", b"a" * 10))
    damaged[-5] ^= 0xFF
    parsed = parse_par2(bytes(damaged) + file_desc("b.mkv", b"b"))
    assert [f.name for f in parsed.files] == ["b.mkv"]
    assert parsed.bad_packets == 1


def test_lying_recovery_slice_does_not_swallow_packets():
    """A recovery slice claiming 1 GiB is cut short at the next magic, not skipped whole."""
    liar = packet(TYPE_RECOVERY, b"\1" * 64, length=1 << 30)
    assert names(liar + file_desc("a.mkv", b"a") + file_desc("b.mkv", b"b")) == ["a.mkv", "b.mkv"]


def test_garbage_between_packets_is_ignored():
    """Bytes between packets (as in a damaged download) are skipped."""
    blob = b"junk" * 100 + file_desc("a.mkv", b"a") + b"PAR2\0PK" + file_desc("b.mkv", b"b")
    assert names(blob) == ["a.mkv", "b.mkv"]


def test_other_recovery_set_ignored():
    """Packets of a second recovery set do not mix with the first one's."""
    other = packet(TYPE_CREATOR, b"someone else", set_id=b"O" * 16)
    parsed = parse_par2(file_desc("a.mkv", b"a") + other + packet(TYPE_CREATOR, b"me"))
    assert parsed.set_id == SET_ID and parsed.creator == "me"


def test_main_packet_orders_files():
    """Files are listed in the Main packet's order, whatever order they arrive in."""
    a, b = file_desc("a.mkv", b"a"), file_desc("b.mkv", b"b")
    ids = hashlib.md5(b"b.mkv").digest() + hashlib.md5(b"a.mkv").digest()
    main = packet(TYPE_MAIN, struct.pack("<QI", 4096, 2) + ids)
    assert names(a + b + main) == ["b.mkv", "a.mkv"]


def test_malformed_main_packet_is_bad():
    """A Main packet whose file count exceeds its id list is refused."""
    main = packet(TYPE_MAIN, struct.pack("<QI", 4096, 5) + b"i" * 16)
    parsed = parse_par2(main + file_desc("a.mkv", b"a"))
    assert parsed.main is None and parsed.bad_packets == 1


def test_latin1_name_decoded():
    """A name that is not UTF-8 is read as Latin-1 rather than refused."""
    blob = packet(TYPE_FILE_DESC, b"\0" * 56 + "café.mkv".encode("latin-1"))
    assert names(blob) == ["café.mkv"]


@pytest.mark.parametrize("blob", [b"", b"not a par2 file" * 100, MAGIC * 3])
def test_no_packet_raises(blob):
    """Input with no valid packet raises Par2Error naming what was found."""
    with pytest.raises(Par2Error, match="not a usable PAR2 file"):
        parse_par2(blob)


def test_hostile_overlapping_headers_bounded():
    """Thousands of headers claiming 1 MiB each end in Par2Error quickly, not hours of MD5."""
    fake = MAGIC + struct.pack("<Q", 1 << 20) + b"\0" * 32 + TYPE_FILE_DESC
    started = time.perf_counter()
    with pytest.raises(Par2Error):
        parse_par2(fake * 40_000)
    assert time.perf_counter() - started < 2


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutations_never_raise_anything_else(data):
    """Any damage to a real file parses, or raises Par2Error; never another error."""
    blob = bytearray(VOLUME)
    for _ in range(data.draw(st.integers(1, 8))):
        index = data.draw(st.integers(0, len(blob) - 1))
        blob[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(blob)))
    try:
        parsed = parse_par2(bytes(blob[:cut]))
    except Par2Error:
        return
    assert all(isinstance(f.name, str) for f in parsed.files)


@pytest.mark.skipif(
    shutil.which("par2") is None, reason="the par2 tool is not installed (apt-get install par2)"
)
def test_fresh_set_from_par2_tool(tmp_path):
    """A set made now by par2cmdline, files above and below 16 KiB, parses exactly."""
    sources = {
        f"{i:02d} episode {i}.mkv": random.Random(i).randbytes(i * 9000 + 1) for i in range(1, 5)
    }
    for name, data in sources.items():
        (tmp_path / name).write_bytes(data)
    subprocess.run(
        ["par2", "create", "-q", "-q", "-r5", "set.par2", *sources], cwd=tmp_path, check=True
    )
    parsed = parse_par2((tmp_path / "set.par2").read_bytes())
    got = {f.name: (f.size, f.md5, f.md5_16k) for f in parsed.files}
    assert got == {
        name: (len(d), hashlib.md5(d).digest(), hashlib.md5(d[:16384]).digest())
        for name, d in sources.items()
    }
