"""The files of an ISO 9660 or UDF disc image, read from the byte ranges it asks for (no I/O).

`ImageScan` asks for image bytes by the protocol of feeding.py: the caller
fetches the articles covering them and feeds them back. The volume recognition sequence at
sector 16 tells the file systems apart: UDF (udf.py) is preferred when present,
as on DVD-Video and Blu-ray images, and ISO 9660 (ECMA-119) read otherwise, or
when the UDF side of a bridge image is damaged. ISO 9660 names come from Rock
Ridge NM entries (RRIP 1.12, SUSP 1.12) when the primary tree has them, else
from the Joliet tree (a supplementary descriptor with a UCS-2 escape sequence)
when there is one, else from the primary tree's own 8.3 names. A file recorded
in several extents (multi-extent, ECMA-119 6.5.1) keeps them all, in order.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Generator

from altmount.archive.feeding import Feeder
from altmount.archive.udf import (
    MAX_DEPTH,
    MAX_DIRECTORY_BYTES,
    MAX_EXTENTS,
    MAX_FILES,
    SECTOR,
    ImageFile,
    Read,
    Walk,
    read,
    walk_udf,
)
from altmount.errors import ArchiveError

__all__ = [
    "RECOGNITION_OFFSET",
    "MAX_READ_BYTES",
    "ImageFile",
    "ImageScan",
    "is_disc_image",
    "walk_iso9660",
]

#: Where the volume recognition sequence starts: sector 16, after the system area.
RECOGNITION_OFFSET = 16 * SECTOR
#: Image bytes one scan may ask for in all: descriptors and directories, never file data.
MAX_READ_BYTES = 64 << 20
#: Reads one scan may ask for (each file entry of a UDF image is one).
MAX_READS = 4 * MAX_FILES

_RECOGNITION_SECTORS = 32  # descriptors read at once; real images use fewer than ten
_ISO = b"CD001"
_UDF = (b"NSR02", b"NSR03")
_RECOGNISED = (_ISO, b"BEA01", b"TEA01", b"BOOT2", b"CDW02", *_UDF)
_JOLIET = (b"%/@", b"%/C", b"%/E")  # UCS-2 level 1, 2, 3 escape sequences
_RECORD = struct.Struct("<BBI4xI4x7sBBB4xB")  # ECMA-119 9.1; both-endian fields read LE
_MULTI_EXTENT, _DIRECTORY, _ASSOCIATED = 0x80, 0x02, 0x04


def is_disc_image(sector16: bytes) -> bool:
    """True when the bytes at RECOGNITION_OFFSET start an ISO 9660 or UDF volume descriptor."""
    return sector16[1:6] in _RECOGNISED


class ImageScan(Feeder):
    """The files of one disc image of `size` bytes; `kind` says which file system gave them.

    `done` once the listing is complete.
    """

    def __init__(self, size: int, label: str) -> None:
        super().__init__(label, size)
        #: "udf" or "iso9660" once done.
        self.kind = ""
        self.files: list[ImageFile] = []
        self._walk = _image(size, label)
        self._asked = 0
        self._reads = 0
        self._step(None)

    def _take(self, start: int, data: bytes) -> None:
        assert self._want is not None  # feed() takes bytes only while some are wanted
        offset, size = self._want
        self._step(bytes(data[offset - start : offset - start + size]))

    def _step(self, data: bytes | None) -> None:
        try:
            wanted = self._walk.send(data)  # type: ignore[arg-type]
        except StopIteration as finished:
            self.kind, self.files = finished.value
            self._want = None
            return
        self._asked += wanted[1]
        self._reads += 1
        if self._asked > MAX_READ_BYTES or self._reads > MAX_READS:
            raise ArchiveError(
                f"{self.label}: the disc image's file system needs more than {MAX_READS} reads "
                f"or {MAX_READ_BYTES >> 20} MiB of descriptors; refused"
            )
        self._want = wanted


def _image(size: int, label: str) -> Generator[Read, bytes, tuple[str, list[ImageFile]]]:
    """Tell the file systems apart by the recognition sequence and list the preferred one."""
    count = min(_RECOGNITION_SECTORS, (size - RECOGNITION_OFFSET) // SECTOR)
    if count < 1:
        raise ArchiveError(f"{label}: too small for a disc image ({size} bytes)")
    sectors = yield from read(
        RECOGNITION_OFFSET, count * SECTOR, size, label, "volume recognition sequence"
    )
    primary = joliet = None
    udf = False
    for index in range(count):
        descriptor = sectors[index * SECTOR : (index + 1) * SECTOR]
        ident = descriptor[1:6]
        if ident not in _RECOGNISED:
            break
        if ident in _UDF:
            udf = True
        elif ident == _ISO and descriptor[0] == 1 and primary is None:
            primary = descriptor
        elif ident == _ISO and descriptor[0] == 2 and descriptor[88:91] in _JOLIET:
            joliet = descriptor
    if udf:
        try:
            return "udf", (yield from walk_udf(size, label))
        except ArchiveError:
            if primary is None:
                raise
    if primary is None:
        raise ArchiveError(f"{label}: not an ISO 9660 or UDF disc image")
    return "iso9660", (yield from walk_iso9660(size, label, primary, joliet))


def walk_iso9660(size: int, label: str, primary: bytes, joliet: bytes | None) -> Walk:
    """Every regular file of the ISO 9660 tree the volume descriptors point at."""
    walk = _Iso9660(size, label, primary)
    root = yield from walk.directory_data(walk.root(primary), "the root directory")
    if walk.rock_ridge(root):
        return (yield from walk.tree(walk.root(primary), root, rock_ridge=True))
    if joliet is not None:
        tree = walk.root(joliet)
        data = yield from walk.directory_data(tree, "the Joliet root directory")
        return (yield from walk.tree(tree, data, ucs2=True))
    return (yield from walk.tree(walk.root(primary), root))


class _Iso9660:
    def __init__(self, size: int, label: str, primary: bytes) -> None:
        self.size = size
        self.label = label
        (self.block,) = struct.unpack_from("<H", primary, 128)
        if self.block not in (512, 1024, 2048):
            raise self._fail(f"logical blocks of {self.block} bytes")
        self.extents = 0

    def _fail(self, problem: str) -> ArchiveError:
        return ArchiveError(f"{self.label}: damaged ISO 9660 image: {problem}")

    def root(self, descriptor: bytes) -> tuple[int, int]:
        """(image offset, length) of the root directory a volume descriptor names (8.4.18)."""
        record = descriptor[156:190]
        if record[0] < 34:
            raise self._fail("no root directory record")
        _, extra, extent, length, *_ = _RECORD.unpack_from(record)
        return (extent + extra) * self.block, length

    def directory_data(self, where: tuple[int, int], what: str) -> Generator[Read, bytes, bytes]:
        """A directory's records."""
        offset, length = where
        if length > MAX_DIRECTORY_BYTES:
            raise self._fail(f"{what} of {length} bytes")
        if length == 0:
            return b""
        return (yield from read(offset, length, self.size, self.label, what))

    def rock_ridge(self, root: bytes) -> bool:
        """True when the root's "." record starts its system use with SUSP's SP entry."""
        if len(root) < 34 or root[0] < 34:
            return False
        use = 33 + root[32] + (1 - root[32] % 2)
        return root[use : use + 2] == b"SP" and root[use + 4 : use + 6] == b"\xbe\xef"

    def tree(
        self,
        root: tuple[int, int],
        root_data: bytes,
        *,
        rock_ridge: bool = False,
        ucs2: bool = False,
    ) -> Walk:
        """Every regular file under the root, breadth first; directory loops are refused."""
        files: list[ImageFile] = []
        seen = {root[0]}
        pending: deque[tuple[str, bytes, int]] = deque([("", root_data, 0)])
        while pending:
            path, data, depth = pending.popleft()
            for name, is_dir, extents in self._records(
                data, f"directory /{path}", rock_ridge, ucs2
            ):
                child = f"{path}/{name}" if path else name
                if not is_dir:
                    files.append(ImageFile(child, sum(n for _, n in extents), tuple(extents)))
                    if len(files) > MAX_FILES:
                        raise self._fail(f"more than {MAX_FILES} files")
                    continue
                if extents[0][0] in seen:
                    raise self._fail(f"directory /{child} is listed twice (a loop)")
                if depth + 1 > MAX_DEPTH:
                    raise self._fail(f"directories nested more than {MAX_DEPTH} deep")
                seen.add(extents[0][0])
                listing = yield from self.directory_data(extents[0], f"directory /{child}")
                pending.append((child, listing, depth + 1))
        return files

    def _records(
        self, data: bytes, what: str, rock_ridge: bool, ucs2: bool
    ) -> list[tuple[str, bool, list[tuple[int, int]]]]:
        """(name, is a directory, extents) of a directory's entries, multi-extent files joined."""
        found: list[tuple[str, bool, list[tuple[int, int]]]] = []
        open_file: tuple[str, list[tuple[int, int]]] | None = None
        position = 0
        while position < len(data):
            length = data[position]
            if length == 0:  # records do not cross a block: the rest of this one is padding
                position = (position // self.block + 1) * self.block
                continue
            if length < 34 or position + length > len(data):
                raise self._fail(f"{what}: a record of {length} bytes at {position}")
            record = data[position : position + length]
            position += length
            _, extra, extent, size, _, flags, unit, gap, name_length = _RECORD.unpack_from(record)
            if 33 + name_length > length:
                raise self._fail(f"{what}: a name runs past its record")
            raw = record[33 : 33 + name_length]
            if raw in (b"\x00", b"\x01") or flags & _ASSOCIATED:
                continue
            if unit or gap:
                raise ArchiveError(
                    f"{self.label}: interleaved files (ECMA-119 6.4.3) are not supported"
                )
            name = self._name(record, raw, rock_ridge, ucs2)
            offset = (extent + extra) * self.block
            if offset + size > self.size:
                raise ArchiveError(
                    f"{self.label}: /{name} ends at byte {offset + size}, past the end of the image ({self.size} bytes)"
                )
            self.extents += 1
            if self.extents > MAX_EXTENTS:
                raise self._fail(f"more than {MAX_EXTENTS} extents")
            if open_file is not None and open_file[0] != name:
                raise self._fail(f"{what}: multi-extent file {open_file[0]} is not continued")
            extents = (open_file[1] if open_file else []) + ([(offset, size)] if size else [])
            if flags & _MULTI_EXTENT:
                open_file = (name, extents)
                continue
            open_file = None
            if flags & _DIRECTORY and not extents:
                continue  # an empty directory has nothing to list
            found.append((name, bool(flags & _DIRECTORY), extents))
        if open_file is not None:
            raise self._fail(f"{what}: multi-extent file {open_file[0]} is not continued")
        return found

    def _name(self, record: bytes, raw: bytes, rock_ridge: bool, ucs2: bool) -> str:
        if rock_ridge:
            alternate = _rock_ridge_name(record, 33 + len(raw) + (1 - len(raw) % 2))
            if alternate:
                return alternate
        name = raw.decode("utf-16-be", errors="replace") if ucs2 else raw.decode("latin-1")
        name = name.split(";", 1)[0]  # the version number, ";1"
        return name.rstrip(".") if not ucs2 else name


def _rock_ridge_name(record: bytes, position: int) -> str:
    """The name the NM entries of a record's system use area give (RRIP 4.1.4), or ""."""
    parts = []
    while position + 4 <= len(record):
        signature, length = record[position : position + 2], record[position + 2]
        if length < 4 or position + length > len(record) or signature == b"ST":
            break
        if signature == b"NM" and length >= 5 and not record[position + 4] & 0x06:
            parts.append(record[position + 5 : position + length])
        position += length
    return b"".join(parts).decode("utf-8", errors="replace")
