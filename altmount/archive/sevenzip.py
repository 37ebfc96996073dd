"""Parse the headers of a 7z archive from bytes: signature header, header, streams, files. No I/O.

The format is 7-Zip's DOC/7zFormat.txt: the 32-byte signature header points at
the "next header" at the archive's end; that is either the header itself
(property ids, NUMBERs, bit fields) or an EncodedHeader: a streams info saying
where the packed header lies and how it is coded (decoded by sevenzip_codec.py
into a header that `parse_header` reads). The header lists packed streams,
folders (coder chains and their sizes), the substreams each folder unpacks
into, and the files; the files with data take the substreams in order.

Counts and sizes are capped explicitly, so hostile headers cost bounded time
and memory; every problem is an ArchiveError naming the archive.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

from altmount.archive.sevenzip_model import (
    SIGNATURE,
    SIGNATURE_HEADER_SIZE,
    Coder,
    Entry,
    Folder,
    Header,
    StartHeader,
    StreamsInfo,
)
from altmount.errors import ArchiveError

__all__ = [
    "MAX_HEADER_SIZE",
    "MAX_ITEMS",
    "MAX_SIZE",
    "parse_start_header",
    "parse_next_header",
    "parse_header",
]

#: A header (packed or unpacked) larger than this is not a release's: 100,000 files fit in ~10 MiB.
MAX_HEADER_SIZE = 32 << 20
#: Files, folders, packed streams or substreams in one archive.
MAX_ITEMS = 100_000
#: Coders in one folder (7-Zip writes at most 4: a filter, a compressor, BCJ2's helpers, AES).
MAX_CODERS = 8
#: Streams into one coder (BCJ2 has 4).
MAX_CODER_STREAMS = 8
#: Sizes and offsets beyond this (2^56, 64 PiB) are corrupt, and would overflow sums.
MAX_SIZE = 1 << 56
#: Properties in one list (7zFormat.txt defines 25 ids); more is a header made to waste time.
MAX_PROPERTIES = 64

_START = struct.Struct("<6sBBIQQI")


class _Id:
    """Property ids of 7zFormat.txt."""

    END = 0x00
    HEADER = 0x01
    ARCHIVE_PROPERTIES = 0x02
    ADDITIONAL_STREAMS = 0x03
    MAIN_STREAMS = 0x04
    FILES = 0x05
    PACK_INFO = 0x06
    UNPACK_INFO = 0x07
    SUBSTREAMS = 0x08
    SIZE = 0x09
    CRC = 0x0A
    FOLDER = 0x0B
    UNPACK_SIZE = 0x0C
    NUM_UNPACK_STREAM = 0x0D
    EMPTY_STREAM = 0x0E
    EMPTY_FILE = 0x0F
    ANTI = 0x10
    NAME = 0x11
    ENCODED_HEADER = 0x17


class _Reader:
    """Reads 7z header fields from bytes; running out of them is an ArchiveError."""

    def __init__(self, data: bytes, label: str) -> None:
        self.data = data
        self.position = 0
        self.label = label

    def fail(self, problem: str) -> ArchiveError:
        return ArchiveError(f"{self.label}: damaged 7z header: {problem}")

    def take(self, count: int) -> bytes:
        if count < 0 or self.position + count > len(self.data):
            raise self.fail(f"{count} bytes needed at {self.position}, header truncated")
        chunk = self.data[self.position : self.position + count]
        self.position += count
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def number(self) -> int:
        """A 7z NUMBER: the first byte's leading one bits count the bytes that follow."""
        first = self.byte()
        mask, value = 0x80, 0
        for index in range(8):
            if first & mask == 0:
                return value | ((first & (mask - 1)) << (8 * index))
            value |= self.byte() << (8 * index)
            mask >>= 1
        return value

    def size(self) -> int:
        value = self.number()
        if value >= MAX_SIZE:
            raise self.fail(f"size {value} is absurd")
        return value

    def count(self, what: str, limit: int = MAX_ITEMS) -> int:
        value = self.number()
        if value > limit:
            raise self.fail(f"{value} {what} (at most {limit} are read)")
        return value

    def uint32(self) -> int:
        return int.from_bytes(self.take(4), "little")

    def bits(self, count: int) -> list[bool]:
        """`count` flags, most significant bit first."""
        raw = self.take((count + 7) // 8)
        return [bool(raw[i >> 3] & (0x80 >> (i & 7))) for i in range(count)]

    def defined(self, count: int) -> list[bool]:
        """An "all defined" byte, else a bit field."""
        return [True] * count if self.byte() else self.bits(count)

    def expect(self, wanted: int, where: str) -> None:
        found = self.byte()
        if found != wanted:
            raise self.fail(f"property {found:#04x} where {where} was expected")

    def skip_property(self) -> None:
        self.take(self.size())

    def properties(self, first: int | None = None) -> Iterator[int]:
        """Property ids up to the END id (`first` is one already read), at most MAX_PROPERTIES."""
        kind = self.byte() if first is None else first
        for _ in range(MAX_PROPERTIES):
            if kind == _Id.END:
                return
            yield kind
            kind = self.byte()
        raise self.fail(f"more than {MAX_PROPERTIES} properties in a row")


def parse_start_header(data: bytes, label: str) -> StartHeader:
    """The signature header from the archive's first 32 bytes; ArchiveError when damaged."""
    if len(data) < SIGNATURE_HEADER_SIZE:
        raise ArchiveError(f"{label}: truncated 7z archive ({len(data)} bytes)")
    signature, major, _minor, crc, offset, size, next_crc = _START.unpack_from(data)
    if signature != SIGNATURE:
        raise ArchiveError(f"{label}: not a 7z archive (no signature)")
    if major != 0:
        raise ArchiveError(f"{label}: 7z format version {major} is not supported")
    if zlib.crc32(data[12:32]) != crc:
        raise ArchiveError(f"{label}: damaged 7z archive: signature header CRC mismatch")
    if size == 0:
        raise ArchiveError(f"{label}: 7z archive without a header (empty or unfinished)")
    if offset >= MAX_SIZE or size > MAX_HEADER_SIZE:
        raise ArchiveError(
            f"{label}: damaged 7z archive: next header of {size} bytes at {offset} is absurd"
        )
    return StartHeader(offset, size, next_crc)


def parse_next_header(data: bytes, start: StartHeader, label: str) -> Header | StreamsInfo:
    """The header, or the streams info of an EncodedHeader, from the next header's bytes."""
    if zlib.crc32(data) != start.next_header_crc:
        raise ArchiveError(f"{label}: damaged 7z archive: header CRC mismatch")
    reader = _Reader(data, label)
    kind = reader.byte()
    if kind == _Id.ENCODED_HEADER:
        streams = _streams_info(reader)
        if not streams.folders:
            raise reader.fail("an encoded header without folders")
        return streams
    if kind != _Id.HEADER:
        raise reader.fail(f"it starts with property {kind:#04x}")
    return _header(reader)


def parse_header(data: bytes, label: str) -> Header:
    """A decoded header (what an EncodedHeader unpacks to)."""
    reader = _Reader(data, label)
    reader.expect(_Id.HEADER, "the header")
    return _header(reader)


def _header(reader: _Reader) -> Header:
    kind = reader.byte()
    if kind == _Id.ARCHIVE_PROPERTIES:
        for _ in reader.properties():
            reader.skip_property()
        kind = reader.byte()
    if kind == _Id.ADDITIONAL_STREAMS:
        raise reader.fail("additional streams (external headers) are not supported")
    streams = StreamsInfo(0, (), (), ())
    if kind == _Id.MAIN_STREAMS:
        streams = _streams_info(reader)
        kind = reader.byte()
    entries: tuple[Entry, ...] = ()
    if kind == _Id.FILES:
        entries = _files_info(reader)
        kind = reader.byte()
    if kind != _Id.END:
        raise reader.fail(f"property {kind:#04x} where the header should end")
    with_data = sum(entry.has_stream for entry in entries)
    unpacked = sum(len(sizes) for sizes in streams.substreams)
    if with_data != unpacked:
        raise reader.fail(f"{with_data} files with data but {unpacked} unpacked streams")
    return Header(streams, entries)


def _streams_info(reader: _Reader) -> StreamsInfo:
    pack_pos = 0
    pack_sizes: tuple[int, ...] = ()
    folders: tuple[Folder, ...] = ()
    kind = reader.byte()
    if kind == _Id.PACK_INFO:
        pack_pos, pack_sizes = _pack_info(reader)
        kind = reader.byte()
    if kind == _Id.UNPACK_INFO:
        folders = _unpack_info(reader)
        kind = reader.byte()
    substreams: tuple[tuple[int, ...], ...] = tuple((folder.size,) for folder in folders)
    if kind == _Id.SUBSTREAMS:
        substreams = _substreams(reader, folders)
        kind = reader.byte()
    if kind != _Id.END:
        raise reader.fail(f"property {kind:#04x} where streams info should end")
    if sum(len(folder.packed) for folder in folders) != len(pack_sizes):
        raise reader.fail(f"folders use other than the {len(pack_sizes)} packed streams")
    return StreamsInfo(pack_pos, pack_sizes, folders, substreams)


def _pack_info(reader: _Reader) -> tuple[int, tuple[int, ...]]:
    pack_pos = reader.size()
    count = reader.count("packed streams")
    kind = reader.byte()
    if kind != _Id.SIZE:
        raise reader.fail("packed streams without sizes")
    sizes = tuple(reader.size() for _ in range(count))
    if sum(sizes) >= MAX_SIZE:
        raise reader.fail("packed streams of absurd total size")
    for kind in reader.properties():
        if kind == _Id.CRC:
            _digests(reader, count)
        else:
            reader.skip_property()
    return pack_pos, sizes


def _unpack_info(reader: _Reader) -> tuple[Folder, ...]:
    reader.expect(_Id.FOLDER, "the folders")
    count = reader.count("folders")
    if reader.byte() != 0:
        raise reader.fail("external folders are not supported")
    shapes = [_folder_shape(reader) for _ in range(count)]
    reader.expect(_Id.UNPACK_SIZE, "the unpack sizes")
    sizes = [tuple(reader.size() for _ in coders) for coders, _, _ in shapes]
    crcs: list[int | None] = [None] * count
    for kind in reader.properties():
        if kind == _Id.CRC:
            crcs = _digests(reader, count)
        else:
            reader.skip_property()
    return tuple(
        Folder(coders, bonds, packed, size, crc)
        for (coders, bonds, packed), size, crc in zip(shapes, sizes, crcs, strict=True)
    )


def _folder_shape(
    reader: _Reader,
) -> tuple[tuple[Coder, ...], tuple[tuple[int, int], ...], tuple[int, ...]]:
    count = reader.count("coders in a folder", MAX_CODERS)
    if count == 0:
        raise reader.fail("a folder without coders")
    coders = []
    for _ in range(count):
        flags = reader.byte()
        if flags & 0xC0:
            raise reader.fail(f"coder flags {flags:#04x} (alternative methods) are not supported")
        method = reader.take(flags & 0x0F)
        inputs = 1
        if flags & 0x10:
            inputs = reader.count("coder streams", MAX_CODER_STREAMS)
            if reader.number() != 1:
                raise reader.fail("a coder with other than one output")
        properties = reader.take(reader.count("property bytes", 1 << 16)) if flags & 0x20 else b""
        coders.append(Coder(method, inputs, properties))
    inputs_total = sum(coder.inputs for coder in coders)
    bonds = tuple((reader.number(), reader.number()) for _ in range(count - 1))
    bound_inputs = {stream for stream, _ in bonds}
    bound_coders = {coder for _, coder in bonds}
    if (
        len(bound_inputs) != len(bonds)
        or len(bound_coders) != len(bonds)
        or any(stream >= inputs_total or coder >= count for stream, coder in bonds)
    ):
        raise reader.fail("coders bound to each other inconsistently")
    packed_count = inputs_total - len(bonds)
    if packed_count < 1:
        raise reader.fail("a folder without packed streams")
    if packed_count == 1:
        packed = tuple(s for s in range(inputs_total) if s not in bound_inputs)
    else:
        packed = tuple(reader.number() for _ in range(packed_count))
        if len(set(packed)) != packed_count or any(
            s >= inputs_total or s in bound_inputs for s in packed
        ):
            raise reader.fail("packed streams bound inconsistently")
    return tuple(coders), bonds, packed


def _substreams(reader: _Reader, folders: tuple[Folder, ...]) -> tuple[tuple[int, ...], ...]:
    counts = [1] * len(folders)
    kind = reader.byte()
    if kind == _Id.NUM_UNPACK_STREAM:
        counts = [reader.count("streams in a folder") for _ in folders]
        if sum(counts) > MAX_ITEMS:
            raise reader.fail(f"{sum(counts)} streams (at most {MAX_ITEMS} are read)")
        kind = reader.byte()
    if kind != _Id.SIZE and any(count > 1 for count in counts):
        raise reader.fail("a folder of several streams without their sizes")
    substreams = []
    for folder, count in zip(folders, counts, strict=True):
        sizes = [reader.size() for _ in range(count - 1)] if kind == _Id.SIZE else []
        rest = folder.size - sum(sizes)
        if rest < 0:
            raise reader.fail("streams larger than their folder")
        substreams.append(tuple(sizes) + ((rest,) if count else ()))
    if kind == _Id.SIZE:
        kind = reader.byte()
    unknown = sum(
        count
        for folder, count in zip(folders, counts, strict=True)
        if not (count == 1 and folder.crc is not None)
    )
    for property_id in reader.properties(first=kind):
        if property_id == _Id.CRC:
            _digests(reader, unknown)
        else:
            reader.skip_property()
    return tuple(substreams)


def _digests(reader: _Reader, count: int) -> list[int | None]:
    return [reader.uint32() if defined else None for defined in reader.defined(count)]


def _files_info(reader: _Reader) -> tuple[Entry, ...]:
    count = reader.count("files")
    empty_stream = [False] * count
    empty_file: list[bool] = []
    anti: list[bool] = []
    names: list[str] | None = None
    for kind in reader.properties():
        size = reader.size()
        field = _Reader(reader.take(size), reader.label)
        if kind == _Id.EMPTY_STREAM:
            empty_stream = field.bits(count)
        elif kind == _Id.EMPTY_FILE:
            empty_file = field.bits(sum(empty_stream))
        elif kind == _Id.ANTI:
            anti = field.bits(sum(empty_stream))
        elif kind == _Id.NAME:
            if field.byte() != 0:
                raise reader.fail("external file names are not supported")
            names = _names(field, count)
    if names is None:
        raise reader.fail("files without names")
    entries, empty_index = [], 0
    for name, empty in zip(names, empty_stream, strict=True):
        is_dir = is_anti = False
        if empty:
            is_dir = not (empty_index < len(empty_file) and empty_file[empty_index])
            is_anti = empty_index < len(anti) and anti[empty_index]
            empty_index += 1
        entries.append(Entry(name, not empty, is_dir, is_anti))
    return tuple(entries)


def _names(field: _Reader, count: int) -> list[str]:
    raw = field.data[field.position :]
    if len(raw) % 2:
        raise field.fail("file names of an odd byte count")
    # NUL-terminated UTF-16LE; a broken surrogate becomes U+FFFD and never eats a NUL.
    names = raw.decode("utf-16-le", errors="replace").split("\x00")
    if len(names) != count + 1 or names[-1]:
        raise field.fail(f"{len(names) - 1} file names for {count} files")
    return [name.replace("\\", "/") for name in names[:-1]]
