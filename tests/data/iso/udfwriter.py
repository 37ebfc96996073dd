"""A test-side writer of small UDF 2.50 images laid out like a Blu-ray disc (no I/O).

mkudffs 2.3 formats UDF 2.50 only with a virtual partition (--media-type=bdr) and
populating an image needs a loop mount of the udf module, which containers lack;
so the tests write their Blu-ray-like images here and check them with `udfinfo`
and `7zz x`. Layout (ECMA-167 3rd edition, OSTA UDF 2.50):

    sector 16-18   BEA01, NSR03, TEA01 (volume recognition sequence)
    sector 32-37   main volume descriptor sequence: PVD, IUVD, PD, LVD, USD, TD
    sector 48-53   reserve volume descriptor sequence (same descriptors)
    sector 64-65   logical volume integrity descriptor, TD
    sector 256     anchor volume descriptor pointer (also in the last sector)
    sector 288-    partition 0: metadata file (and mirror) entries, then the metadata
                   partition's blocks (file set descriptor, directory and file
                   entries, directories), then file data

File entries are extended file entries; data is found by long allocation
descriptors into the physical partition (as Blu-ray authoring tools write them),
a file given `split=True` is recorded in two non-adjacent extents, and files up
to `EMBED_MAX` bytes are embedded in their entry.
"""

from __future__ import annotations

import struct
from binascii import crc_hqx

SECTOR = 2048
PARTITION_START = 288
METADATA_BLOCKS = 32  # one allocation unit of the metadata file
EMBED_MAX = 64
_REVISION = 0x0250


def _tag(ident: int, body: bytes, location: int) -> bytes:
    """A descriptor: the 16-byte tag (3/7.2) with its checksum and CRC, then `body`."""
    head = struct.pack("<HHBBHHHI", ident, 3, 0, 0, 1, crc_hqx(body, 0), len(body), location)
    checksum = (sum(head[0:4]) + sum(head[5:16])) & 0xFF
    return head[:4] + bytes([checksum]) + head[5:] + body


def _regid(identifier: str, suffix: bytes = b"") -> bytes:
    return b"\x00" + identifier.encode().ljust(23, b"\x00") + suffix.ljust(8, b"\x00")


def _udf_suffix() -> bytes:
    return struct.pack("<HB", _REVISION, 0)


def _dstring(text: str, size: int) -> bytes:
    raw = b"\x08" + text.encode("latin-1")
    return raw.ljust(size - 1, b"\x00") + bytes([len(raw)])


def _charspec() -> bytes:
    return b"\x00" + b"OSTA Compressed Unicode".ljust(63, b"\x00")


def _timestamp() -> bytes:
    return struct.pack("<HhBBBBBBBB", 0x1000, 2024, 1, 2, 3, 4, 5, 0, 0, 0)


def _sector(data: bytes) -> bytes:
    assert len(data) <= SECTOR, len(data)
    return data.ljust(SECTOR, b"\x00")


class _Image:
    def __init__(self, sectors: int) -> None:
        self.data = bytearray(sectors * SECTOR)

    def put(self, sector: int, data: bytes) -> None:
        self.data[sector * SECTOR : sector * SECTOR + len(data)] = data


def _long_ad(length: int, block: int, reference: int) -> bytes:
    return struct.pack("<IIH6x", length, block, reference)


def _entry(
    block: int, file_type: int, size: int, ads: bytes, ad_type: int, blocks: int, unique: int
) -> bytes:
    """An extended file entry (4/14.17) at `block` of its partition."""
    icb = struct.pack("<IHHHBB6sH", 0, 4, 0, 1, 0, file_type, b"\x00" * 6, ad_type)
    body = icb + struct.pack("<IIIHBBI", 0xFFFFFFFF, 0xFFFFFFFF, 0x7FFF, 1, 0, 0, 0)
    body += struct.pack("<QQQ", size, size, blocks)
    body += _timestamp() * 4 + struct.pack("<II", 1, 0) + b"\x00" * 32
    body += _regid("*altmount test", b"") + struct.pack("<QII", unique, 0, len(ads)) + ads
    return _sector(_tag(266, body, block))


def _fid(name: str | None, block: int, is_dir: bool, location: int, parent: bool = False) -> bytes:
    """A File Identifier Descriptor (4/14.4) in metadata block `location`; `name` None for the
    parent entry. Its CRC covers the padding too, as 7-Zip checks."""
    raw = b"" if name is None else b"\x08" + name.encode("latin-1")
    flags = (0x02 if is_dir else 0) | (0x08 if parent else 0)
    body = struct.pack("<HBB", 1, flags, len(raw)) + _long_ad(SECTOR, block, 1) + b"\x00\x00"
    body += raw
    body += b"\x00" * (-(16 + len(body)) % 4)
    return _tag(257, body, location)


def write_udf250(files: dict[str, bytes], split: tuple[str, ...] = ()) -> bytes:
    """A UDF 2.50 image holding `files` (paths with "/"), Blu-ray style (metadata partition)."""
    directories = sorted(
        {"/".join(p.split("/")[:i]) for p in files for i in range(len(p.split("/")))}
    )
    # Metadata blocks: 0 FSD, 1 TD, then per directory an entry and one block of identifiers,
    # then one entry per file.
    meta_block: dict[str, int] = {}
    next_block = 2
    for directory in directories:
        meta_block[directory] = next_block
        next_block += 2
    for path in files:
        meta_block[path] = next_block
        next_block += 1
    assert next_block <= METADATA_BLOCKS, "too many files for one metadata allocation unit"
    # Physical partition: block 0 metadata file entry, 1 mirror entry, then the metadata
    # extent and its mirror, then file data.
    data_block = 2 + 2 * METADATA_BLOCKS
    placed: dict[str, list[tuple[int, int]]] = {}
    for path, content in files.items():
        if len(content) <= EMBED_MAX:
            continue
        if path in split:
            half = (len(content) // 2 + SECTOR - 1) // SECTOR * SECTOR
            pieces = [content[:half], content[half:]]
            placed[path] = []
            for gap, piece in enumerate(pieces):
                data_block += gap  # one unused block between the two extents
                placed[path].append((data_block, len(piece)))
                data_block += -(-len(piece) // SECTOR)
        else:
            placed[path] = [(data_block, len(content))]
            data_block += -(-len(content) // SECTOR)
    partition_length = data_block
    total = PARTITION_START + partition_length + 1
    image = _Image(total)
    for sector, ident in ((16, b"BEA01"), (17, b"NSR03"), (18, b"TEA01")):
        image.put(sector, b"\x00" + ident + b"\x01")
    for start in (32, 48):
        _volume_descriptors(image, start, partition_length, len(files), len(directories))
    anchor = struct.pack("<IIII", 16 * SECTOR, 32, 16 * SECTOR, 48) + b"\x00" * 480
    image.put(256, _sector(_tag(2, anchor, 256)))
    image.put(total - 1, _sector(_tag(2, anchor, total - 1)))
    metadata = bytearray(METADATA_BLOCKS * SECTOR)

    def meta_put(block: int, data: bytes) -> None:
        metadata[block * SECTOR : block * SECTOR + len(data)] = data

    fsd = _timestamp() + struct.pack("<HHIIII", 3, 3, 1, 1, 0, 0) + _charspec()
    fsd += _dstring("ALTMOUNT", 128) + _charspec() + _dstring("ALTMOUNT", 32)
    fsd += b"\x00" * 64 + _long_ad(SECTOR, meta_block[""], 1)
    fsd += _regid("*OSTA UDF Compliant", _udf_suffix()) + b"\x00" * 16 + b"\x00" * 16
    meta_put(0, _sector(_tag(256, fsd + b"\x00" * 32, 0)))
    meta_put(1, _sector(_tag(8, b"\x00" * 496, 1)))
    unique = 16
    for directory in directories:
        block = meta_block[directory]
        parent = "/".join(directory.split("/")[:-1]) if directory else ""
        listing = _fid(None, meta_block[parent], True, block + 1, parent=True)
        children = [d for d in directories if d and "/".join(d.split("/")[:-1]) == directory]
        children += [p for p in files if "/".join(p.split("/")[:-1]) == directory]
        for child in children:
            name = child.rsplit("/", 1)[-1]
            listing += _fid(name, meta_block[child], child in directories, block + 1)
        ads = struct.pack("<II", len(listing), block + 1)
        meta_put(block, _entry(block, 4, len(listing), ads, 0, 1, unique))
        meta_put(block + 1, _sector(listing))
        unique += 1
    for path, content in files.items():
        block = meta_block[path]
        if path not in placed:
            meta_put(block, _entry(block, 5, len(content), content, 3, 0, unique))
        else:
            ads = b"".join(_long_ad(length, start, 0) for start, length in placed[path])
            blocks = sum(-(-length // SECTOR) for _, length in placed[path])
            meta_put(
                block,
                _entry(
                    block,
                    249 if path.endswith(".m2ts") else 5,
                    len(content),
                    ads,
                    1,
                    blocks,
                    unique,
                ),
            )
            for (start, length), offset in zip(placed[path], _offsets(placed[path]), strict=True):
                image.put(PARTITION_START + start, content[offset : offset + length])
        unique += 1
    for index, file_type in ((0, 250), (1, 251)):
        extent = 2 + index * METADATA_BLOCKS
        ads = struct.pack("<II", METADATA_BLOCKS * SECTOR, extent)
        image.put(
            PARTITION_START + index,
            _entry(index, file_type, len(metadata), ads, 0, METADATA_BLOCKS, 0),
        )
        image.put(PARTITION_START + extent, bytes(metadata))
    return bytes(image.data)


def _offsets(extents: list[tuple[int, int]]) -> list[int]:
    offsets, at = [], 0
    for _, length in extents:
        offsets.append(at)
        at += length
    return offsets


def _volume_descriptors(
    image: _Image, start: int, partition_length: int, files: int, dirs: int
) -> None:
    """PVD, IUVD, PD, LVD, USD and TD at sectors start..start+5."""
    pvd = (
        struct.pack("<II", 1, 0)
        + _dstring("ALTMOUNT", 32)
        + struct.pack("<HHHHII", 1, 1, 2, 3, 1, 1)
    )
    pvd += _dstring("ALTMOUNT TEST SET", 128) + _charspec() + _charspec() + b"\x00" * 16
    pvd += _regid("*altmount test") + _timestamp() + _regid("*altmount test") + b"\x00" * 64
    pvd += struct.pack("<IH", 0, 0) + b"\x00" * 22
    image.put(start, _sector(_tag(1, pvd, start)))
    iuvd = struct.pack("<I", 2) + _regid("*UDF LV Info", _udf_suffix()) + _charspec()
    iuvd += _dstring("ALTMOUNT", 128) + b"\x00" * 36 * 3 + _regid("*altmount test") + b"\x00" * 128
    image.put(start + 1, _sector(_tag(4, iuvd, start + 1)))
    pd = struct.pack("<IHH", 3, 1, 0) + _regid("+NSR03") + b"\x00" * 128
    pd += struct.pack("<III", 1, PARTITION_START, partition_length) + _regid("*altmount test")
    pd += b"\x00" * 128 + b"\x00" * 156
    image.put(start + 2, _sector(_tag(5, pd, start + 2)))
    maps = struct.pack("<BBHH", 1, 6, 1, 0)
    maps += struct.pack("<BBH", 2, 64, 0) + _regid("*UDF Metadata Partition", _udf_suffix())
    maps += struct.pack("<HHIIIIHB5x", 1, 0, 0, 1, 0xFFFFFFFF, METADATA_BLOCKS, 1, 0)
    lvd = struct.pack("<I", 4) + _charspec() + _dstring("ALTMOUNT", 128) + struct.pack("<I", SECTOR)
    lvd += _regid("*OSTA UDF Compliant", _udf_suffix()) + _long_ad(SECTOR, 0, 1)
    lvd += struct.pack("<II", len(maps), 2) + _regid("*altmount test") + b"\x00" * 128
    lvd += struct.pack("<II", 2 * SECTOR, 64) + maps
    image.put(start + 3, _sector(_tag(6, lvd, start + 3)))
    image.put(start + 4, _sector(_tag(7, struct.pack("<II", 5, 0), start + 4)))
    image.put(start + 5, _sector(_tag(8, b"\x00" * 496, start + 5)))
    if start == 32:
        _integrity(image, partition_length, files, dirs)


def _integrity(image: _Image, partition_length: int, files: int, dirs: int) -> None:
    """A closed logical volume integrity descriptor (3/10.10, UDF 2.2.6) at sector 64."""
    use = struct.pack("<Q", 1 << 20) + b"\x00" * 24
    impl = _regid("*altmount test", _udf_suffix()) + struct.pack(
        "<IIHHH", files, dirs, 0x0250, 0x0250, 0x0250
    )
    body = _timestamp() + struct.pack("<I", 1) + b"\x00" * 8 + use
    body += (
        struct.pack("<II", 2, len(impl))
        + struct.pack("<II", 0, 0)
        + struct.pack("<II", partition_length, partition_length)
    )
    body += impl
    image.put(64, _sector(_tag(9, body, 64)))
    image.put(65, _sector(_tag(8, b"\x00" * 496, 65)))
