"""The files of a UDF disc image and where their bytes lie (no I/O).

DVD-Video and Blu-ray images carry UDF (ECMA-167 3rd edition, OSTA UDF 1.02 to
2.60): an anchor at sector 256 points at the volume descriptor sequence, whose
partition and logical volume descriptors say how logical blocks map to image
sectors; the file set descriptor names the root directory's ICB; file entries
(4/14.9) and extended file entries (4/14.17) list their data extents as short
or long allocation descriptors (4/14.14), or hold the data themselves. Blu-ray
(UDF 2.50, 2.2.10) keeps the ICBs and directories in a metadata partition: a
file inside the physical partition whose blocks are the metadata blocks.

`walk_udf` is a generator: it yields the (image offset, byte count) reads it
needs, is sent those bytes, and returns every regular file with its extents.
The caps below bound the work a hostile image can cause; anything wrong is an
ArchiveError naming the image.
"""

from __future__ import annotations

import bisect
import struct
from binascii import crc_hqx
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass

from altmount.errors import ArchiveError

__all__ = [
    "SECTOR",
    "MAX_FILES",
    "MAX_DEPTH",
    "MAX_DIRECTORY_BYTES",
    "MAX_EXTENTS",
    "ImageFile",
    "Read",
    "Walk",
    "read",
    "walk_udf",
]

#: DVD and Blu-ray sectors; UDF on them uses it as its logical block size.
SECTOR = 2048
#: Far more files than a DVD or Blu-ray holds: a bigger listing is an attack.
MAX_FILES = 10_000
#: Directories nested deeper than this are refused (loops are refused anyway).
MAX_DEPTH = 64
#: The data of one directory, read whole to parse its entries.
MAX_DIRECTORY_BYTES = 16 << 20
#: Allocation descriptors of all files together (a 50 GB Blu-ray needs a few hundred).
MAX_EXTENTS = 100_000

#: (image offset, byte count) a walk asks for.
Read = tuple[int, int]
#: A walk: yields reads, is sent their bytes, returns the files.
Walk = Generator[Read, bytes, "list[ImageFile]"]

_ANCHOR = 256
_VDS_SECTORS = 64  # a longer descriptor sequence is not a real one
_VDS_HOPS = 8  # Volume Descriptor Pointers followed at most
_MAX_MAPS = 64

_TAG = struct.Struct("<HHBBHHHI")
_EXTENT_AD = struct.Struct("<II")
_LONG_AD = struct.Struct("<IIH")

# Tag identifiers (ECMA-167 3/7.2.1, 4/7.2.1).
_PVD, _AVDP, _VDP, _IUVD, _PD, _LVD, _USD, _TD = 1, 2, 3, 4, 5, 6, 7, 8
_FSD, _FID, _AED, _FE, _EFE = 256, 257, 258, 261, 266
# ICB file types (4/14.6.6; UDF 2.50 2.3.5.2: 249 is a real-time file, the .m2ts of a BDMV).
_DIRECTORY, _FILE, _REAL_TIME, _METADATA, _METADATA_MIRROR = 4, 5, 249, 250, 251
_SHORT_AD, _LONG_AD_TYPE, _EMBEDDED = 0, 1, 3


@dataclass(frozen=True, slots=True)
class ImageFile:
    """A regular file of a disc image: its path there and its bytes as (image offset, length)
    extents, in file order; `size` is their sum."""

    path: str
    size: int
    extents: tuple[tuple[int, int], ...]


def read(
    offset: int, size: int, image_size: int, label: str, what: str
) -> Generator[Read, bytes, bytes]:
    """Ask for image bytes [offset, offset + size); ArchiveError when they are not in the image."""
    if offset < 0 or size < 0 or offset + size > image_size:
        raise ArchiveError(
            f"{label}: {what} at byte {offset} (+{size}) lies past the end of the image ({image_size} bytes)"
        )
    if size == 0:
        return b""
    return (yield (offset, size))


def walk_udf(image_size: int, label: str) -> Walk:
    """Every regular file of the UDF file system of an image of `image_size` bytes."""
    return _Udf(image_size, label).walk()


@dataclass(frozen=True, slots=True)
class _Partition:
    """A partition descriptor: where partition `number` starts and how many sectors it has."""

    number: int
    start: int
    length: int


@dataclass(slots=True)
class _Map:
    """One partition map of the logical volume: logical blocks to image sectors.

    A physical map is one run; a metadata map's runs come from its metadata file:
    (first metadata block, image sector, block count), sorted.
    """

    partition: int
    metadata_file: int | None
    mirror_file: int | None
    runs: list[tuple[int, int, int]]


@dataclass(frozen=True, slots=True)
class _Entry:
    """A file entry: its file type, information length and data as image (offset, length)."""

    file_type: int
    size: int
    extents: tuple[tuple[int, int], ...]


class _Udf:
    def __init__(self, image_size: int, label: str) -> None:
        self.size = image_size
        self.label = label
        self.maps: list[_Map] = []
        self.extents = 0  # allocation descriptors read so far, against MAX_EXTENTS

    def _fail(self, problem: str) -> ArchiveError:
        return ArchiveError(f"{self.label}: damaged UDF image: {problem}")

    def _read(self, offset: int, size: int, what: str) -> Generator[Read, bytes, bytes]:
        return read(offset, size, self.size, self.label, f"UDF {what}")

    def walk(self) -> Walk:
        anchor = yield from self._anchor()
        main, reserve = _EXTENT_AD.unpack_from(anchor, 16), _EXTENT_AD.unpack_from(anchor, 24)
        try:
            partitions, volume = yield from self._volume_descriptors(main)
        except ArchiveError:
            partitions, volume = yield from self._volume_descriptors(reserve)
        fileset = yield from self._logical_volume(partitions, volume)
        root = yield from self._file_set(fileset)
        return (yield from self._tree(root))

    def _anchor(self) -> Generator[Read, bytes, bytes]:
        """The Anchor Volume Descriptor Pointer: sector 256, else the last sector or N - 256."""
        last = self.size // SECTOR - 1
        problem = str(self._fail("no anchor volume descriptor pointer at sector 256"))
        for sector in dict.fromkeys((_ANCHOR, last, last - _ANCHOR)):
            if sector < _ANCHOR or (sector + 1) * SECTOR > self.size:
                continue
            data = yield from self._read(sector * SECTOR, SECTOR, "anchor")
            try:
                self._tag(data, (_AVDP,), sector, "anchor volume descriptor pointer")
            except ArchiveError as exc:
                problem = str(exc)
                continue
            return data
        raise ArchiveError(problem)

    def _tag(
        self, data: bytes | memoryview, expected: tuple[int, ...], location: int | None, what: str
    ) -> int:
        """Check a descriptor tag (3/7.2): checksum, identifier, location and CRC."""
        if len(data) < _TAG.size:
            raise self._fail(f"{what} truncated")
        ident, version, checksum, _, _, crc, crc_length, where = _TAG.unpack_from(data)
        if (sum(data[0:4]) + sum(data[5:16])) & 0xFF != checksum or version not in (2, 3):
            raise self._fail(f"{what} at block {location}: not a valid descriptor tag")
        if ident not in expected:
            raise self._fail(f"{what} at block {location}: tag {ident} where {expected[0]} belongs")
        if location is not None and where != location:
            raise self._fail(f"{what} at block {location} says it is at block {where}")
        if 16 + crc_length > len(data) or crc_hqx(data[16 : 16 + crc_length], 0) != crc:
            raise self._fail(f"{what} at block {location}: CRC mismatch")
        return ident

    def _volume_descriptors(
        self, extent: tuple[int, int]
    ) -> Generator[Read, bytes, tuple[dict[int, _Partition], bytes]]:
        """Partition descriptors by number, and the prevailing logical volume descriptor."""
        partitions: dict[int, tuple[int, _Partition]] = {}
        volume: tuple[int, bytes] | None = None
        length, sector = extent
        for _ in range(_VDS_HOPS):
            count = min(length // SECTOR, _VDS_SECTORS)
            data = yield from self._read(sector * SECTOR, count * SECTOR, "volume descriptors")
            follow = None
            for index in range(count):
                block = data[index * SECTOR : (index + 1) * SECTOR]
                ident = self._tag(
                    block,
                    (_PVD, _VDP, _IUVD, _PD, _LVD, _USD, _TD),
                    sector + index,
                    "volume descriptor",
                )
                (number,) = struct.unpack_from("<I", block, 16)
                if ident == _TD:
                    break
                if ident == _PD:
                    (part,) = struct.unpack_from("<H", block, 22)
                    start, size = struct.unpack_from("<II", block, 188)
                    if part not in partitions or partitions[part][0] <= number:
                        partitions[part] = (number, _Partition(part, start, size))
                elif ident == _LVD and (volume is None or volume[0] <= number):
                    volume = (number, block)
                elif ident == _VDP:
                    follow = _EXTENT_AD.unpack_from(block, 20)
                    break
            if follow is None:
                break
            length, sector = follow
        if volume is None or not partitions:
            raise self._fail("no logical volume or partition descriptor")
        return {n: p for n, (_, p) in partitions.items()}, volume[1]

    def _logical_volume(
        self, partitions: dict[int, _Partition], volume: bytes
    ) -> Generator[Read, bytes, tuple[int, int]]:
        """Set up the partition maps (3/10.7); the file set descriptor's (reference, block)."""
        (block_size,) = struct.unpack_from("<I", volume, 212)
        if block_size != SECTOR:
            raise ArchiveError(
                f"{self.label}: UDF logical blocks of {block_size} bytes are not supported"
            )
        table_length, count = struct.unpack_from("<II", volume, 264)
        if count > _MAX_MAPS or 440 + table_length > SECTOR:
            raise self._fail(f"{count} partition maps in {table_length} bytes")
        position, end = 440, 440 + table_length
        for _ in range(count):
            if position + 2 > end:
                raise self._fail("partition map table truncated")
            kind, length = volume[position], volume[position + 1]
            if length < 6 or position + length > end:
                raise self._fail(f"partition map of {length} bytes")
            entry = volume[position : position + length]
            if kind == 1:
                number = struct.unpack_from("<H", entry, 4)[0]
                self.maps.append(self._physical(partitions, number))
            elif kind == 2 and length == 64:
                self.maps.append(self._typed_map(partitions, entry))
            else:
                raise self._fail(f"partition map of type {kind}")
            position += length
        for index, mapping in enumerate(self.maps):
            if mapping.metadata_file is not None:
                yield from self._metadata_runs(index, mapping)
        _, location, reference = _LONG_AD.unpack_from(volume, 248)
        return reference, location

    def _physical(self, partitions: dict[int, _Partition], number: int) -> _Map:
        partition = partitions.get(number)
        if partition is None:
            raise self._fail(f"partition {number} has no partition descriptor")
        return _Map(number, None, None, [(0, partition.start, partition.length)])

    def _typed_map(self, partitions: dict[int, _Partition], entry: bytes) -> _Map:
        """A type 2 map: only the metadata partition (UDF 2.50 2.2.10) is read."""
        identifier = entry[5:28].rstrip(b"\x00").decode("latin-1")
        (number,) = struct.unpack_from("<H", entry, 38)
        if identifier != "*UDF Metadata Partition":
            raise ArchiveError(
                f"{self.label}: UDF partition type {identifier!r} (a rewritable or recordable "
                "disc image) is not supported"
            )
        self._physical(partitions, number)  # the partition must be described
        main, mirror = struct.unpack_from("<II", entry, 40)
        return _Map(number, main, mirror, [])

    def _metadata_runs(self, index: int, mapping: _Map) -> Generator[Read, bytes, None]:
        """Turn a metadata map's runs into its metadata file's extents (the mirror if need be)."""
        physical = next(
            (
                i
                for i, m in enumerate(self.maps)
                if m.partition == mapping.partition and m.metadata_file is None
            ),
            None,
        )
        if physical is None:
            raise self._fail(f"metadata partition {mapping.partition} has no physical map")
        problem: ArchiveError | None = None
        for location, file_type in (
            (mapping.metadata_file, _METADATA),
            (mapping.mirror_file, _METADATA_MIRROR),
        ):
            try:
                entry = yield from self._entry(physical, location or 0, "metadata file")
            except ArchiveError as exc:
                problem = exc
                continue
            if entry.file_type != file_type:
                problem = self._fail(f"metadata file of type {entry.file_type}")
                continue
            runs, block = [], 0
            for offset, length in entry.extents:
                if offset % SECTOR or length % SECTOR:
                    raise self._fail("metadata file extents are not whole blocks")
                runs.append((block, offset // SECTOR, length // SECTOR))
                block += length // SECTOR
            mapping.runs = runs
            return
        assert problem is not None
        raise problem

    def _pieces(self, reference: int, block: int, length: int, what: str) -> list[tuple[int, int]]:
        """Image (offset, length) pieces of `length` bytes from logical block `block` of a map."""
        if not 0 <= reference < len(self.maps):
            raise self._fail(f"{what} in partition reference {reference}, which does not exist")
        runs = self.maps[reference].runs
        pieces: list[tuple[int, int]] = []
        while length > 0:
            index = bisect.bisect_right(runs, (block, 1 << 62)) - 1
            if index < 0 or block >= runs[index][0] + runs[index][2]:
                raise self._fail(f"{what} at block {block} lies outside its partition")
            first, sector, count = runs[index]
            take = min(length, (first + count - block) * SECTOR)
            offset = (sector + block - first) * SECTOR
            if offset + take > self.size:
                raise ArchiveError(
                    f"{self.label}: UDF {what} at byte {offset} (+{take}) lies past the end of the image ({self.size} bytes)"
                )
            if pieces and pieces[-1][0] + pieces[-1][1] == offset:
                pieces[-1] = (pieces[-1][0], pieces[-1][1] + take)
            else:
                pieces.append((offset, take))
            length -= take
            block += -(-take // SECTOR)
            if len(pieces) > MAX_EXTENTS:
                raise self._fail(f"{what} in more than {MAX_EXTENTS} pieces")
        return pieces

    def _block(
        self, reference: int, block: int, what: str
    ) -> Generator[Read, bytes, tuple[int, bytes]]:
        """(image offset, bytes) of one logical block."""
        ((offset, _),) = self._pieces(reference, block, SECTOR, what)
        data = yield from self._read(offset, SECTOR, what)
        return offset, data

    def _file_set(self, fileset: tuple[int, int]) -> Generator[Read, bytes, tuple[int, int]]:
        """The root directory ICB (reference, block) from the file set descriptor (4/14.1)."""
        reference, block = fileset
        _, data = yield from self._block(reference, block, "file set descriptor")
        self._tag(data, (_FSD,), block, "file set descriptor")
        _, location, root_reference = _LONG_AD.unpack_from(data, 400)
        return root_reference, location

    def _entry(self, reference: int, block: int, what: str) -> Generator[Read, bytes, _Entry]:
        """A (extended) file entry and its data extents, continuations followed."""
        offset, data = yield from self._block(reference, block, what)
        ident = self._tag(data, (_FE, _EFE), block, what)
        file_type, flags = data[16 + 11], struct.unpack_from("<H", data, 16 + 18)[0]
        (strategy,) = struct.unpack_from("<H", data, 16 + 4)
        if strategy != 4:
            raise self._fail(f"{what} at block {block}: ICB strategy {strategy}")
        (size,) = struct.unpack_from("<Q", data, 56)
        base = 176 if ident == _FE else 216
        ea_length, ad_length = struct.unpack_from("<II", data, base - 8)
        start = base + ea_length
        if ea_length > SECTOR or start + ad_length > SECTOR:
            raise self._fail(f"{what} at block {block}: descriptors past its block")
        kind = flags & 7
        if kind == _EMBEDDED:
            if size != ad_length:
                raise self._fail(
                    f"{what} at block {block}: {size} bytes announced, {ad_length} embedded"
                )
            return _Entry(file_type, size, ((offset + start, size),) if size else ())
        if kind not in (_SHORT_AD, _LONG_AD_TYPE):
            raise self._fail(f"{what} at block {block}: allocation descriptors of type {kind}")
        extents = yield from self._allocations(
            data[start : start + ad_length], kind, reference, size, what
        )
        return _Entry(file_type, size, extents)

    def _allocations(
        self, area: bytes, kind: int, reference: int, size: int, what: str
    ) -> Generator[Read, bytes, tuple[tuple[int, int], ...]]:
        """The image extents holding the first `size` bytes the descriptors describe."""
        step = 8 if kind == _SHORT_AD else 16
        extents: list[tuple[int, int]] = []
        left, position = size, 0
        while left > 0:
            if position + step > len(area):
                raise self._fail(f"{what}: its extents hold {size - left} of its {size} bytes")
            if kind == _SHORT_AD:
                length, block = _EXTENT_AD.unpack_from(area, position)
                target = reference
            else:
                length, block, target = _LONG_AD.unpack_from(area, position)
            position += step
            self.extents += 1
            if self.extents > MAX_EXTENTS:
                raise self._fail(f"more than {MAX_EXTENTS} extents")
            extent_type, length = length >> 30, length & 0x3FFFFFFF
            if extent_type == 3:  # the next descriptors are in an allocation extent descriptor
                _, next_area = yield from self._block(target, block, f"{what} extents")
                self._tag(next_area, (_AED,), block, f"{what} allocation extent")
                (next_length,) = struct.unpack_from("<I", next_area, 20)
                if 24 + next_length > SECTOR:
                    raise self._fail(f"{what}: allocation extent descriptor overflows its block")
                area, position, reference = next_area[24 : 24 + next_length], 0, target
                continue
            if length == 0:
                raise self._fail(f"{what}: its extents hold {size - left} of its {size} bytes")
            take = min(length, left)
            if extent_type != 0:
                raise ArchiveError(
                    f"{self.label}: {what} has unrecorded (sparse) extents, not streamable"
                )
            for piece in self._pieces(target, block, take, what):
                if extents and extents[-1][0] + extents[-1][1] == piece[0]:
                    extents[-1] = (extents[-1][0], extents[-1][1] + piece[1])
                else:
                    extents.append(piece)
            left -= take
        return tuple(extents)

    def _tree(self, root: tuple[int, int]) -> Walk:
        """Every regular file under the root directory, breadth first."""
        files: list[ImageFile] = []
        seen = {root}
        pending: deque[tuple[str, int, int, int]] = deque([("", root[0], root[1], 0)])
        while pending:
            path, reference, block, depth = pending.popleft()
            what = f"directory /{path}"
            entry = yield from self._entry(reference, block, what)
            if entry.file_type != _DIRECTORY:
                raise self._fail(f"{what} is a file of type {entry.file_type}")
            if entry.size > MAX_DIRECTORY_BYTES:
                raise self._fail(f"{what} of {entry.size} bytes")
            data = b""
            for offset, length in entry.extents:
                data += yield from self._read(offset, length, what)
            for name, is_dir, child in self._identifiers(data, what):
                child_path = f"{path}/{name}" if path else name
                if is_dir:
                    if child in seen:
                        raise self._fail(f"directory /{child_path} is listed twice (a loop)")
                    if depth + 1 > MAX_DEPTH:
                        raise self._fail(f"directories nested more than {MAX_DEPTH} deep")
                    seen.add(child)
                    pending.append((child_path, child[0], child[1], depth + 1))
                    continue
                item = yield from self._entry(child[0], child[1], f"file /{child_path}")
                if item.file_type not in (_FILE, _REAL_TIME):
                    continue
                files.append(ImageFile(child_path, item.size, item.extents))
                if len(files) > MAX_FILES:
                    raise self._fail(f"more than {MAX_FILES} files")
        return files

    def _identifiers(self, data: bytes, what: str) -> list[tuple[str, bool, tuple[int, int]]]:
        """(name, is a directory, ICB (reference, block)) of each live File Identifier Descriptor."""
        found = []
        view = memoryview(data)
        position = 0
        while position + 38 <= len(data):
            self._tag(view[position:], (_FID,), None, f"{what} entry")
            characteristics, name_length = data[position + 18], data[position + 19]
            _, block, reference = _LONG_AD.unpack_from(data, position + 20)
            (use_length,) = struct.unpack_from("<H", data, position + 36)
            name_start = position + 38 + use_length
            end = name_start + name_length
            if end > len(data):
                raise self._fail(f"{what}: an entry runs past the directory's end")
            position = (end + 3) & ~3
            if characteristics & 0x0C:  # deleted, or the parent directory
                continue
            found.append(
                (
                    self._name(data[name_start:end], what),
                    bool(characteristics & 0x02),
                    (reference, block),
                )
            )
            if len(found) > MAX_FILES:
                raise self._fail(f"{what} has more than {MAX_FILES} entries")
        return found

    def _name(self, raw: bytes, what: str) -> str:
        """An OSTA compressed Unicode name (UDF 2.1.1): 8 or 16 bits per character."""
        if not raw:
            raise self._fail(f"{what}: an entry without a name")
        if raw[0] in (8, 254):
            return raw[1:].decode("latin-1")
        if raw[0] in (16, 255):
            return raw[1 : 1 + (len(raw) - 1) // 2 * 2].decode("utf-16-be", errors="replace")
        raise self._fail(f"{what}: a name in compression {raw[0]}")
