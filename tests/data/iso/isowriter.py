"""A test-side writer of small ISO 9660 images with multi-extent files (no I/O).

genisoimage and xorriso split a file into several extents only past 4 GiB, too big
for a test; this writes the same structure (ECMA-119 6.5.1: every record of the
file but the last has the multi-extent flag) with extents of a few sectors, not
adjacent, so a reader must join them in order. Checked with `7zz x` and
`xorriso -indev IMAGE -find / -exec report_sections`. Layout: sector 16 primary
volume descriptor, 17 terminator, 18-19 path tables (L and M), 20 root directory,
21 VIDEO_TS directory, then file data.
"""

from __future__ import annotations

import struct

SECTOR = 2048
_ROOT, _SUBDIR, _DATA = 20, 21, 22


def _both16(value: int) -> bytes:
    return struct.pack("<H", value) + struct.pack(">H", value)


def _both32(value: int) -> bytes:
    return struct.pack("<I", value) + struct.pack(">I", value)


def _record(name: bytes, extent: int, size: int, flags: int) -> bytes:
    """One directory record (9.1)."""
    body = _both32(extent) + _both32(size) + bytes([124, 1, 2, 3, 4, 5, 0]) + bytes([flags, 0, 0])
    body += _both16(1) + bytes([len(name)]) + name
    record = bytes([0, 0]) + body
    record += b"\x00" * (len(record) % 2)
    return bytes([len(record)]) + record[1:]


def write_iso9660(files: dict[str, bytes], extent_sectors: int = 3) -> bytes:
    """An image whose root holds VIDEO_TS/ with `files` (8.3 names); files longer than
    `extent_sectors` sectors are recorded in extents of that many sectors, one unused
    sector between each."""
    placed: dict[str, list[tuple[int, int]]] = {}
    sector = _DATA
    for name, data in files.items():
        chunk = extent_sectors * SECTOR
        pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] or [b""]
        placed[name] = []
        for piece in pieces:
            placed[name].append((sector, len(piece)))
            sector += -(-len(piece) // SECTOR) + 1
    image = bytearray(sector * SECTOR)
    for name, data in files.items():
        at = 0
        for extent, length in placed[name]:
            image[extent * SECTOR : extent * SECTOR + length] = data[at : at + length]
            at += length
    root = _record(b"\x00", _ROOT, SECTOR, 2) + _record(b"\x01", _ROOT, SECTOR, 2)
    root += _record(b"VIDEO_TS", _SUBDIR, SECTOR, 2)
    subdir = _record(b"\x00", _SUBDIR, SECTOR, 2) + _record(b"\x01", _ROOT, SECTOR, 2)
    for name in sorted(files):
        extents = placed[name]
        for index, (extent, length) in enumerate(extents):
            last = index == len(extents) - 1
            subdir += _record(name.encode() + b";1", extent, length, 0 if last else 0x80)
    assert len(subdir) <= SECTOR, "too many records for one directory sector"
    image[_ROOT * SECTOR : _ROOT * SECTOR + len(root)] = root
    image[_SUBDIR * SECTOR : _SUBDIR * SECTOR + len(subdir)] = subdir
    l_table = struct.pack("<BBIH", 1, 0, _ROOT, 1) + b"\x00\x00"
    l_table += struct.pack("<BBIH", 8, 0, _SUBDIR, 1) + b"VIDEO_TS"
    m_table = struct.pack(">BBIH", 1, 0, _ROOT, 1) + b"\x00\x00"
    m_table += struct.pack(">BBIH", 8, 0, _SUBDIR, 1) + b"VIDEO_TS"
    image[18 * SECTOR : 18 * SECTOR + len(l_table)] = l_table
    image[19 * SECTOR : 19 * SECTOR + len(m_table)] = m_table
    pvd = b"\x01CD001\x01\x00" + b" " * 32 + b"ALTMOUNT".ljust(32) + b"\x00" * 8
    pvd += _both32(sector) + b"\x00" * 32 + _both16(1) + _both16(1) + _both16(SECTOR)
    pvd += _both32(len(l_table)) + struct.pack("<II", 18, 0) + struct.pack(">II", 19, 0)
    pvd += _record(b"\x00", _ROOT, SECTOR, 2)
    pvd += b" " * (128 * 4 + 37 * 3) + b"0" * 16 + b"\x00" + (b"0" * 16 + b"\x00") * 3
    pvd += b"\x01\x00"
    image[16 * SECTOR : 16 * SECTOR + len(pvd)] = pvd
    image[17 * SECTOR : 17 * SECTOR + 7] = b"\xffCD001\x01"
    return bytes(image)
