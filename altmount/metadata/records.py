"""Metadata records of virtual files and their compact binary encoding (no I/O).

A `FileRecord` says where each byte of a virtual file lives: segment i (an
article) contributes the file bytes `offsets[i]:offsets[i+1]`, taken from its
decoded data starting at `skips[i]`. Plain posted files have `skips == 0`;
members of stored archives start inside a segment, so the first segment of a
member skips the archive header bytes.

Members of encrypted archives carry a `Cipher`: their segment table holds
AES-CBC ciphertext and the file is a window of the plaintext.

A file posted in parts of uneven size is imported from its first and last
articles alone: its table is *sparse*. `known` marks the offsets read from a yEnc
header (`=ypart begin= end=`); the others are estimates, interpolated between the
known ones, until a read learns them (`SegmentTable.learn`, stream/locate.py).

Encoding (version 3, little-endian; version 2 is version 3 without the known
mask, version 1 is version 2 without the cipher):

    header   <B B 2x I q d   version, status code, segment count n, size, mtime
    arrays   offsets (n+1) int64, skips n int64, part_begins n int64
    blobs    7 x (<I length + bytes): path, release, password,
             groups joined by NUL, message-ids joined by NUL,
             cipher (empty, or <q q offset, size + 16-byte IV + key),
             known (empty when every offset is known, else numpy.packbits of n+1 flags)

The 24-byte header keeps the arrays 8-byte aligned so decoding maps them with
`numpy.frombuffer` without copying.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from altmount.errors import MetadataError

__all__ = [
    "RECORD_VERSION",
    "STATUSES",
    "SegmentTable",
    "Cipher",
    "FileRecord",
    "encode_record",
    "decode_record",
]

RECORD_VERSION = 3
#: Record versions `decode_record` reads.
READABLE_VERSIONS = (1, 2, 3)
#: Strings stored after the arrays, per record version.
_BLOBS = {1: 5, 2: 6, 3: 7}
#: File health: every article found / some missing but repairable / unreadable.
STATUSES = ("ok", "degraded", "corrupted")

_HEADER = struct.Struct("<BB2xIqd")
_LENGTH = struct.Struct("<I")
_INT64 = np.dtype("<i8")
_CIPHER_WINDOW = struct.Struct("<qq")

Int64Array = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def _frozen_array(values: Iterable[int] | Int64Array, name: str) -> Int64Array:
    """A read-only 1-D int64 array; caller-owned writable arrays are copied."""
    try:
        array = np.asarray(values, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise MetadataError(f"segment table {name} is not a sequence of int64: {exc}") from None
    if array.ndim != 1:
        raise MetadataError(f"segment table {name} must be one-dimensional")
    if array.flags.writeable:
        array = array.copy()
        array.flags.writeable = False
    return array


@dataclass(frozen=True, slots=True, eq=False)
class SegmentTable:
    """Where the bytes of one virtual file come from, segment by segment.

    `offsets[i]` is the file offset where segment i's contribution starts and
    `offsets[n]` the file size; `skips[i]` is where that contribution starts
    inside segment i's decoded data; `part_begins[i]` is the 0-based yEnc part
    begin expected in the article (checked at stream time). Arrays are
    read-only int64.

    `known` is None when every offset is exact; else n+1 flags, and an offset not
    flagged is an estimate (a sparse table: a plain file of uneven parts, skips 0,
    part begins equal to the offsets; see the module docstring).
    """

    message_ids: tuple[str, ...]
    offsets: Int64Array
    skips: Int64Array
    part_begins: Int64Array
    groups: tuple[str, ...] = ()
    known: BoolArray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "message_ids", tuple(self.message_ids))
        object.__setattr__(self, "groups", tuple(self.groups))
        for name in ("offsets", "skips", "part_begins"):
            object.__setattr__(self, name, _frozen_array(getattr(self, name), name))
        n = len(self.message_ids)
        if len(self.offsets) != n + 1 or len(self.skips) != n or len(self.part_begins) != n:
            raise MetadataError(
                f"segment table lengths disagree: {n} message-ids, {len(self.offsets)} offsets "
                f"(need n+1), {len(self.skips)} skips, {len(self.part_begins)} part begins"
            )
        if self.offsets[0] != 0 or (n and bool(np.any(np.diff(self.offsets) < 0))):
            raise MetadataError("segment table offsets must start at 0 and never decrease")
        if n and (self.skips.min() < 0 or self.part_begins.min() < 0):
            raise MetadataError("segment table skips and part begins must be >= 0")
        for text in (*self.message_ids, *self.groups):
            if not text or "\x00" in text:
                raise MetadataError(f"empty or NUL-bearing message-id or group: {text!r}")
        if self.known is not None:
            known = np.array(self.known, dtype=np.bool_)
            if known.shape != (n + 1,) or not (known[0] and known[-1]):
                raise MetadataError(
                    "segment table known flags must be n+1 long and mark the first and last offset"
                )
            if known.all():
                object.__setattr__(self, "known", None)
            else:
                if self.skips.any() or not np.array_equal(self.part_begins, self.offsets[:-1]):
                    raise MetadataError("a sparse segment table must describe a plain posted file")
                known.flags.writeable = False
                object.__setattr__(self, "known", known)

    @classmethod
    def sparse(
        cls,
        message_ids: Sequence[str],
        points: Mapping[int, int],
        groups: Sequence[str] = (),
    ) -> SegmentTable:
        """The table of a plain file of which only the offsets in `points` (boundary
        index -> file offset, with 0 and n) are known; the others are interpolated."""
        n = len(message_ids)
        if points.get(0) != 0 or n not in points:
            raise MetadataError("a sparse segment table needs its first and last offset")
        known = np.zeros(n + 1, dtype=np.bool_)
        values = np.zeros(n + 1, dtype=np.int64)
        for index, offset in points.items():
            if not 0 <= index <= n:
                raise MetadataError(f"known offset index {index} outside 0..{n}")
            known[index], values[index] = True, offset
        offsets = _interpolated(values, known)
        return cls(
            tuple(message_ids), offsets, np.zeros(n, np.int64), offsets[:-1], tuple(groups), known
        )

    @classmethod
    def uniform(
        cls,
        message_ids: Sequence[str],
        part_size: int,
        file_size: int,
        groups: Sequence[str] = (),
    ) -> SegmentTable:
        """The table of a plain posted file: every part `part_size` bytes but the last."""
        n = len(message_ids)
        if part_size <= 0 or file_size < 0 or n != math.ceil(file_size / part_size):
            raise MetadataError(
                f"{n} segments of {part_size} bytes cannot make a file of {file_size} bytes"
            )
        begins = np.arange(n, dtype=np.int64) * part_size
        offsets = np.append(begins, np.int64(file_size))
        return cls(
            message_ids=tuple(message_ids),
            offsets=offsets,
            skips=np.zeros(n, dtype=np.int64),
            part_begins=begins,
            groups=tuple(groups),
        )

    def __len__(self) -> int:
        return len(self.message_ids)

    @property
    def exact(self) -> bool:
        """True when every offset is known (not an estimate)."""
        return self.known is None

    def segment_known(self, index: int) -> bool:
        """True when both offsets of segment `index` are known."""
        return self.known is None or bool(self.known[index] and self.known[index + 1])

    def covers(self, start: int, end: int) -> bool:
        """True when every offset needed to serve file bytes [start, end) is known."""
        if self.known is None or start >= end:
            return True
        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        last = int(np.searchsorted(self.offsets, end - 1, side="right")) - 1
        return bool(self.known[first : last + 2].all())

    def learn(self, points: Mapping[int, int]) -> SegmentTable:
        """This table with the offsets in `points` (index -> offset) known.

        MetadataError when a point contradicts what is known: offsets must never
        decrease and each segment holds at least one byte (the caller's article
        then does not belong where the NZB puts it)."""
        if self.known is None:
            for index, offset in points.items():
                if int(self.offsets[index]) != offset:
                    raise MetadataError(
                        f"segment {index} starts at byte {int(self.offsets[index])}, not {offset}"
                    )
            return self
        known = self.known.copy()
        values = self.offsets.copy()
        for index, offset in points.items():
            if known[index] and int(values[index]) != offset:
                raise MetadataError(
                    f"segment {index} starts at byte {int(values[index])}, not {offset}"
                )
            known[index], values[index] = True, offset
        indexes = np.flatnonzero(known)
        if np.any(np.diff(values[indexes]) < np.diff(indexes)):
            raise MetadataError("the learned offsets leave a segment with no bytes or go backwards")
        offsets = _interpolated(values, known)
        return SegmentTable(self.message_ids, offsets, self.skips, offsets[:-1], self.groups, known)

    def known_points(self) -> dict[int, int]:
        """Boundary index -> offset, for every known offset of a sparse table."""
        indexes = range(len(self.offsets)) if self.known is None else np.flatnonzero(self.known)
        return {int(i): int(self.offsets[i]) for i in indexes}

    @property
    def size(self) -> int:
        """Total bytes of the file the table describes."""
        return int(self.offsets[-1])

    def segment_at(self, offset: int) -> int:
        """Index of the segment holding file byte `offset` (0 <= offset < size)."""
        if not 0 <= offset < self.size:
            raise MetadataError(f"offset {offset} outside a file of {self.size} bytes")
        # side="right" skips segments that contribute zero bytes.
        return int(np.searchsorted(self.offsets, offset, side="right")) - 1

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SegmentTable):
            return NotImplemented
        return (
            self.message_ids == other.message_ids
            and self.groups == other.groups
            and np.array_equal(self.offsets, other.offsets)
            and np.array_equal(self.skips, other.skips)
            and np.array_equal(self.part_begins, other.part_begins)
            and (self.known is None) == (other.known is None)
            and (
                self.known is None
                or (other.known is not None and np.array_equal(self.known, other.known))
            )
        )

    def __hash__(self) -> int:
        return hash((self.message_ids, self.size))


@dataclass(frozen=True, slots=True)
class Cipher:
    """AES-CBC over a segment table's bytes (an encrypted archive member).

    Decrypting the table's bytes with `key`, starting from `iv`, gives a
    plaintext of which the file is bytes [offset, offset + size): CBC lets any
    block be decrypted with the ciphertext block before it as IV, so a range
    read costs one extra 16-byte block, never a read from the start.
    """

    key: bytes
    iv: bytes
    offset: int
    size: int

    def __post_init__(self) -> None:
        if len(self.key) not in (16, 24, 32) or len(self.iv) != 16:
            raise MetadataError(
                f"AES needs a 16, 24 or 32-byte key and a 16-byte IV, "
                f"not {len(self.key)} and {len(self.iv)} bytes"
            )
        if self.offset < 0 or self.size < 0:
            raise MetadataError(f"cipher window {self.offset}+{self.size} is negative")


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One file of the virtual tree: where it is, how big, how healthy, its segments.

    With a `cipher`, `size` is the plaintext size and the segments hold ciphertext.
    """

    path: str
    size: int
    mtime: float
    status: str
    segments: SegmentTable
    release: str
    password: str = ""
    cipher: Cipher | None = None

    def __post_init__(self) -> None:
        if not self.path.startswith("/") or "\x00" in self.path:
            raise MetadataError(f"file record path {self.path!r} is not an absolute path")
        if self.status not in STATUSES:
            raise MetadataError(f"file record status {self.status!r} is not one of {STATUSES}")
        if self.cipher is not None:
            if self.size != self.cipher.size or (
                self.cipher.offset + self.cipher.size > self.segments.size
            ):
                raise MetadataError(
                    f"file record {self.path}: {self.size} plaintext bytes at "
                    f"{self.cipher.offset} do not fit {self.segments.size} ciphertext bytes"
                )
        elif self.size != self.segments.size:
            raise MetadataError(
                f"file record {self.path}: size {self.size} but segments cover {self.segments.size}"
            )


def encode_record(record: FileRecord) -> bytes:
    """Pack `record` into the version-2 binary form."""
    table = record.segments
    header = _HEADER.pack(
        RECORD_VERSION,
        STATUSES.index(record.status),
        len(table),
        record.size,
        record.mtime,
    )
    blobs = (
        record.path.encode("utf-8"),
        record.release.encode("utf-8"),
        record.password.encode("utf-8"),
        "\x00".join(table.groups).encode("utf-8"),
        "\x00".join(table.message_ids).encode("utf-8"),
        _encode_cipher(record.cipher),
        b"" if table.known is None else np.packbits(table.known).tobytes(),
    )
    parts = [
        header,
        table.offsets.astype(_INT64, copy=False).tobytes(),
        table.skips.astype(_INT64, copy=False).tobytes(),
        table.part_begins.astype(_INT64, copy=False).tobytes(),
    ]
    for blob in blobs:
        parts += (_LENGTH.pack(len(blob)), blob)
    return b"".join(parts)


def decode_record(data: bytes) -> FileRecord:
    """Unpack a record made by `encode_record`; MetadataError if corrupt or unknown."""
    if len(data) < _HEADER.size:
        raise MetadataError(f"metadata record truncated: {len(data)} bytes")
    version, status_code, n, size, mtime = _HEADER.unpack_from(data)
    if version not in READABLE_VERSIONS:
        raise MetadataError(
            f"metadata record version {version} is not supported (expected {RECORD_VERSION}); "
            "re-import the release or upgrade altmount"
        )
    if status_code >= len(STATUSES):
        raise MetadataError(f"metadata record has unknown status code {status_code}")
    position = _HEADER.size
    arrays = []
    for count in (n + 1, n, n):
        end = position + 8 * count
        if end > len(data):
            raise MetadataError("metadata record truncated in its segment arrays")
        arrays.append(np.frombuffer(data, dtype=_INT64, count=count, offset=position))
        position = end
    blobs = []
    for _ in range(_BLOBS[version]):
        if position + _LENGTH.size > len(data):
            raise MetadataError("metadata record truncated in its strings")
        (length,) = _LENGTH.unpack_from(data, position)
        position += _LENGTH.size
        if position + length > len(data):
            raise MetadataError("metadata record truncated in its strings")
        blobs.append(bytes(data[position : position + length]))
        position += length
    if position != len(data):
        raise MetadataError(f"metadata record has {len(data) - position} trailing bytes")
    try:
        path, release, password, groups, ids = (blob.decode("utf-8") for blob in blobs[:5])
    except UnicodeDecodeError as exc:
        raise MetadataError(f"metadata record has invalid UTF-8: {exc}") from None
    message_ids = tuple(ids.split("\x00")) if n else ()
    if len(message_ids) != n:
        raise MetadataError(f"metadata record has {len(message_ids)} message-ids for {n} segments")
    table = SegmentTable(
        message_ids=message_ids,
        offsets=arrays[0],
        skips=arrays[1],
        part_begins=arrays[2],
        groups=tuple(groups.split("\x00")) if groups else (),
        known=_decode_known(blobs[6], n) if version > 2 else None,
    )
    return FileRecord(
        path=path,
        size=size,
        mtime=mtime,
        status=STATUSES[status_code],
        segments=table,
        release=release,
        password=password,
        cipher=_decode_cipher(blobs[5]) if version > 1 else None,
    )


def _interpolated(values: Int64Array, known: BoolArray) -> Int64Array:
    """`values` at the known indexes, linear estimates (rounded down) in between."""
    indexes = np.flatnonzero(known)
    estimates = np.interp(np.arange(len(values)), indexes, values[indexes].astype(np.float64))
    offsets = np.floor(estimates).astype(np.int64)
    offsets[indexes] = values[indexes]
    return offsets


def _decode_known(blob: bytes, n: int) -> BoolArray | None:
    if not blob:
        return None
    if len(blob) != (n + 8) // 8:
        raise MetadataError(f"metadata record known flags have {len(blob)} bytes for {n} segments")
    return np.unpackbits(np.frombuffer(blob, dtype=np.uint8), count=n + 1).astype(np.bool_)


def _encode_cipher(cipher: Cipher | None) -> bytes:
    if cipher is None:
        return b""
    return _CIPHER_WINDOW.pack(cipher.offset, cipher.size) + cipher.iv + cipher.key


def _decode_cipher(blob: bytes) -> Cipher | None:
    if not blob:
        return None
    if len(blob) < _CIPHER_WINDOW.size + 16:
        raise MetadataError(f"metadata record cipher truncated: {len(blob)} bytes")
    offset, size = _CIPHER_WINDOW.unpack_from(blob)
    iv_end = _CIPHER_WINDOW.size + 16
    return Cipher(blob[iv_end:], blob[_CIPHER_WINDOW.size : iv_end], offset, size)
