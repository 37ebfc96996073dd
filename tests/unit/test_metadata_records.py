"""Tests for altmount.metadata.records: segment tables, file records, binary encoding."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from altmount.errors import MetadataError
from altmount.metadata.records import (
    RECORD_VERSION,
    STATUSES,
    Cipher,
    FileRecord,
    SegmentTable,
    decode_record,
    encode_record,
)


def _record(table: SegmentTable | None = None, **changes: object) -> FileRecord:
    table = table or SegmentTable.uniform(["a@x", "b@x", "c@x"], 100, 250, ("alt.binaries.test",))
    fields: dict[str, object] = {
        "path": "/complete/movies/Name/file.mkv",
        "size": table.size,
        "mtime": 1700000000.25,
        "status": "ok",
        "segments": table,
        "release": "Name",
        "password": "",
    }
    fields.update(changes)
    return FileRecord(**fields)  # type: ignore[arg-type]


def test_uniform_table() -> None:
    """uniform() gives equal parts, a short last part, zero skips and part begins."""
    table = SegmentTable.uniform(["a@x", "b@x", "c@x"], 100, 250)
    assert table.offsets.tolist() == [0, 100, 200, 250]
    assert table.skips.tolist() == [0, 0, 0]
    assert table.part_begins.tolist() == [0, 100, 200]
    assert table.size == 250 and len(table) == 3


def test_uniform_empty_file() -> None:
    """A zero-byte file has no segments and offsets [0]."""
    table = SegmentTable.uniform([], 100, 0)
    assert table.offsets.tolist() == [0] and len(table) == 0


@pytest.mark.parametrize(("count", "size"), [(2, 250), (4, 250), (1, 0), (3, -1)])
def test_uniform_rejects_wrong_counts(count: int, size: int) -> None:
    """uniform() refuses a segment count that cannot make the file size."""
    with pytest.raises(MetadataError):
        SegmentTable.uniform([f"{i}@x" for i in range(count)], 100, size)


def test_segment_at() -> None:
    """segment_at() finds the segment holding an offset, skipping empty contributions."""
    table = SegmentTable(("a@x", "b@x", "c@x"), [0, 10, 10, 30], [0, 0, 5], [0, 10, 20])
    assert [table.segment_at(o) for o in (0, 9, 10, 29)] == [0, 0, 2, 2]
    with pytest.raises(MetadataError):
        table.segment_at(30)


@pytest.mark.parametrize(
    "arrays",
    [
        ([0, 20, 10], [0, 0], [0, 0]),  # decreasing offsets
        ([5, 10, 20], [0, 0], [0, 0]),  # offsets not starting at 0
        ([0, 10], [0, 0], [0, 0]),  # too few offsets
        ([0, 10, 20], [0], [0, 0]),  # too few skips
        ([0, 10, 20], [0, -1], [0, 0]),  # negative skip
        ([0, 10, 20], [0, 0], [0, -5]),  # negative part begin
        ([[0, 10, 20]], [0, 0], [0, 0]),  # two-dimensional
    ],
)
def test_table_validation(arrays: tuple[list[int], list[int], list[int]]) -> None:
    """Inconsistent arrays are refused when the table is built."""
    offsets, skips, begins = arrays
    with pytest.raises(MetadataError):
        SegmentTable(("a@x", "b@x"), offsets, skips, begins)  # type: ignore[arg-type]


@pytest.mark.parametrize("ids", [("",), ("a\x00b",)])
def test_table_rejects_bad_message_ids(ids: tuple[str, ...]) -> None:
    """Empty or NUL-bearing message-ids cannot be stored."""
    with pytest.raises(MetadataError):
        SegmentTable(ids, [0, 1], [0], [0])


def test_table_arrays_are_read_only_copies() -> None:
    """The table copies caller arrays and exposes read-only ones."""
    offsets = np.array([0, 10], dtype=np.int64)
    table = SegmentTable(("a@x",), offsets, [0], [0])
    offsets[1] = 99
    assert table.offsets.tolist() == [0, 10]
    with pytest.raises(ValueError):
        table.offsets[1] = 5


def test_tables_compare_and_hash_by_value() -> None:
    """Equal tables are == and hash alike, so records can be compared."""
    first = SegmentTable.uniform(["a@x", "b@x"], 10, 15)
    second = SegmentTable(("a@x", "b@x"), [0, 10, 15], [0, 0], [0, 10])
    assert first == second and hash(first) == hash(second)
    assert first != SegmentTable(("a@x", "b@x"), [0, 10, 15], [0, 1], [0, 10])


def test_record_validation() -> None:
    """A record whose size, status or path is inconsistent is refused."""
    with pytest.raises(MetadataError, match="size"):
        _record(size=1)
    with pytest.raises(MetadataError, match="status"):
        _record(status="fine")
    with pytest.raises(MetadataError, match="path"):
        _record(path="relative/file.mkv")


def test_round_trip() -> None:
    """encode then decode gives back an equal record."""
    record = _record(password="s3cr\u00e9t", status="degraded")
    assert decode_record(encode_record(record)) == record


def test_encrypted_record_round_trip() -> None:
    """A record with a cipher keeps key, IV and plaintext window; its size is the plaintext's."""
    cipher = Cipher(bytes(range(32)), bytes(range(16, 32)), 7, 200)
    record = _record(size=200, cipher=cipher)
    decoded = decode_record(encode_record(record))
    assert decoded == record and decoded.cipher == cipher


def test_cipher_validation() -> None:
    """Bad key or IV lengths, negative windows and windows past the ciphertext are refused."""
    with pytest.raises(MetadataError, match="key"):
        Cipher(b"k" * 20, b"i" * 16, 0, 1)
    with pytest.raises(MetadataError, match="IV"):
        Cipher(b"k" * 32, b"i" * 8, 0, 1)
    with pytest.raises(MetadataError, match="negative"):
        Cipher(b"k" * 32, b"i" * 16, -1, 1)
    with pytest.raises(MetadataError, match="do not fit"):
        _record(size=250, cipher=Cipher(b"k" * 32, b"i" * 16, 1, 250))
    with pytest.raises(MetadataError, match="plaintext"):
        _record(size=100, cipher=Cipher(b"k" * 32, b"i" * 16, 0, 99))


def test_version_1_records_still_decode() -> None:
    """Records written before ciphers existed (version 1: five strings) decode unchanged."""
    record = _record(password="pw")
    data = encode_record(record)
    assert data.endswith(struct.pack("<II", 0, 0))  # the empty cipher and known blobs
    assert decode_record(bytes([1]) + data[1:-8]) == record
    assert decode_record(bytes([2]) + data[1:-4]) == record


def test_truncated_cipher_is_refused() -> None:
    """A cipher blob too short for its window and IV is corruption."""
    data = encode_record(_record())[:-8] + struct.pack("<I", 3) + b"abc" + struct.pack("<I", 0)
    with pytest.raises(MetadataError, match="cipher"):
        decode_record(data)


def test_encoding_layout() -> None:
    """The first byte is the version and the arrays are raw little-endian int64."""
    data = encode_record(_record())
    assert data[0] == RECORD_VERSION
    offsets = struct.unpack_from("<4q", data, 24)
    assert offsets == (0, 100, 200, 250)


def test_decoded_arrays_do_not_copy() -> None:
    """Decoding maps the arrays onto the encoded bytes instead of copying them."""
    data = encode_record(_record())
    table = decode_record(data).segments
    assert table.offsets.base is not None and not table.offsets.flags.writeable


def test_unknown_version() -> None:
    """A record with another version byte is refused, saying which."""
    data = bytearray(encode_record(_record()))
    data[0] = RECORD_VERSION + 1
    with pytest.raises(MetadataError, match=f"version {RECORD_VERSION + 1}"):
        decode_record(bytes(data))


def test_unknown_status_code() -> None:
    """A status code past the known ones is refused."""
    data = bytearray(encode_record(_record()))
    data[1] = len(STATUSES)
    with pytest.raises(MetadataError, match="status"):
        decode_record(bytes(data))


def test_every_truncation_is_refused() -> None:
    """Every strict prefix of a record raises MetadataError."""
    data = encode_record(_record())
    for length in range(len(data)):
        with pytest.raises(MetadataError):
            decode_record(data[:length])


def test_trailing_bytes_are_refused() -> None:
    """Bytes after the last field mean corruption."""
    with pytest.raises(MetadataError, match="trailing"):
        decode_record(encode_record(_record()) + b"\x00")


_ids = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1)


@st.composite
def _tables(draw: st.DrawFn) -> SegmentTable:
    n = draw(st.integers(0, 40))
    lengths = draw(st.lists(st.integers(0, 1 << 40), min_size=n, max_size=n))
    return SegmentTable(
        message_ids=tuple(draw(st.lists(_ids, min_size=n, max_size=n))),
        offsets=np.concatenate(([0], np.cumsum(lengths, dtype=np.int64))),
        skips=draw(st.lists(st.integers(0, 1 << 40), min_size=n, max_size=n)),
        part_begins=draw(st.lists(st.integers(0, 1 << 50), min_size=n, max_size=n)),
        groups=tuple(draw(st.lists(_ids, max_size=3))),
    )


@settings(max_examples=150, deadline=None)
@given(
    table=_tables(),
    path=st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))),
    mtime=st.floats(allow_nan=False),
    status=st.sampled_from(STATUSES),
    release=st.text(st.characters(blacklist_categories=("Cs",))),
    password=st.text(st.characters(blacklist_categories=("Cs",))),
)
def test_round_trip_property(
    table: SegmentTable, path: str, mtime: float, status: str, release: str, password: str
) -> None:
    """Any valid record survives encode/decode unchanged."""
    record = FileRecord("/" + path, table.size, mtime, status, table, release, password)
    assert decode_record(encode_record(record)) == record


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_metadata_error(data: bytes) -> None:
    """Random bytes decode or raise MetadataError, never anything else."""
    try:
        decode_record(bytes([RECORD_VERSION]) + data)
    except MetadataError:
        pass


def _sparse() -> SegmentTable:
    """Five uneven parts of which only the first and last headers were read."""
    return SegmentTable.sparse(["a", "b", "c", "d", "e"], {0: 0, 1: 100, 4: 900, 5: 1000})


def test_sparse_table_round_trips_with_its_known_flags() -> None:
    """A sparse table keeps which offsets are estimates through encode/decode."""
    table = _sparse()
    record = FileRecord("/r/f.mkv", 1000, 1.0, "ok", table, "r")
    decoded = decode_record(encode_record(record)).segments
    assert decoded == table and not decoded.exact
    assert list(decoded.known) == [True, True, False, False, True, True]
    assert list(decoded.offsets) == [0, 100, 366, 633, 900, 1000]


def test_learning_every_offset_makes_the_table_exact() -> None:
    """Learned offsets replace the estimates; all known is an exact table."""
    table = _sparse().learn({2: 300}).learn({3: 450})
    assert table.exact and list(table.offsets) == [0, 100, 300, 450, 900, 1000]
    assert list(table.part_begins) == [0, 100, 300, 450, 900]


def test_contradicting_offset_is_refused() -> None:
    """An article claiming bytes that do not fit the known offsets is an error."""
    with pytest.raises(MetadataError, match="starts at byte 100, not 120"):
        _sparse().learn({1: 120})
    with pytest.raises(MetadataError, match="no bytes or go backwards"):
        _sparse().learn({2: 950})


def test_covers_tells_which_ranges_need_no_search() -> None:
    """Only ranges inside segments whose both offsets are known are covered."""
    table = _sparse()
    assert table.covers(0, 100) and table.covers(900, 1000)
    assert not table.covers(50, 150) and not table.covers(0, 1000)
    assert table.learn({2: 300}).covers(50, 300)
