"""Write stored (-m0) RAR 4.x archives, single or multi-volume, for tests.

RAR 7 (the `rar` on Debian 12) no longer creates RAR 4 archives (`-ma4` was
removed in RAR 7.00), so the RAR 4 test archives are written here, following
technote.txt of RAR 3.x/4.x, and checked with the real tool (`rar t` still
tests RAR 4 archives). Only what the tests need: stored files, directories,
`.partN.rar` or `.rar`/`.rNN` names, EARC_VOLNUMBER in end blocks (as RAR 3+
writes them) and MHD_FIRSTVOLUME.
"""

from __future__ import annotations

import struct
import zlib

MARKER = b"Rar!\x1a\x07\x00"
_END_SIZE = 9  # base + volume number


def _block(kind: int, flags: int, body: bytes) -> bytes:
    header = struct.pack("<BHH", kind, flags, 7 + len(body)) + body
    return struct.pack("<H", zlib.crc32(header) & 0xFFFF) + header


def _main(volume: bool, first: bool, new_numbering: bool) -> bytes:
    flags = (0x0001 if volume else 0) | (0x0100 if first else 0) | (0x0010 if new_numbering else 0)
    return _block(0x73, flags, struct.pack("<HI", 0, 0))


def _file(
    name: str, data: bytes, total: int, crc: int, before: bool, after: bool, is_dir: bool
) -> bytes:
    raw = name.encode()
    flags = 0x8000 | (0x01 if before else 0) | (0x02 if after else 0) | (0xE0 if is_dir else 0)
    attributes = 0o40755 if is_dir else 0o100644
    body = struct.pack(
        "<IIBIIBBHI",
        len(data),
        total,
        3,
        crc,
        0x5A210000,
        20 if is_dir else 29,
        0x30,
        len(raw),
        attributes,
    )
    return _block(0x74, flags, body + raw) + data


def _end(more: bool, number: int) -> bytes:
    return _block(0x7B, 0x4000 | (0x0001 if more else 0) | 0x0008, struct.pack("<H", number))


def volume_names(stem: str, count: int, style: str) -> list[str]:
    """`part`: stem.part1.rar ... (width of the count); `old`: stem.rar, stem.r00, ..."""
    if count == 1:
        return [f"{stem}.rar"]
    if style == "part":
        width = len(str(count))
        return [f"{stem}.part{n:0{width}d}.rar" for n in range(1, count + 1)]
    return [f"{stem}.rar"] + [f"{stem}.r{n:02d}" for n in range(count - 1)]


def write_rar4(
    files: list[tuple[str, bytes | None]], volume_size: int | None = None
) -> list[bytes]:
    """The volumes of a stored RAR 4 archive of `files` (name, data; None for a directory)."""
    multi = volume_size is not None
    capacity = (volume_size or 1 << 62) - len(MARKER) - len(_main(True, True, True)) - _END_SIZE
    volumes: list[list[bytes]] = [[]]
    room = capacity
    for name, data in files:
        header = 32 + len(name.encode())
        if data is None:
            if room < header:
                volumes.append([])
                room = capacity
            volumes[-1].append(_file(name, b"", 0, 0, False, False, True))
            room -= header
            continue
        whole_crc, done = zlib.crc32(data), 0
        while True:
            if room < header + 1 and done < len(data) or room < header:
                volumes.append([])
                room = capacity
            piece = data[done : done + room - header]
            after = done + len(piece) < len(data)
            crc = zlib.crc32(piece) if after else whole_crc
            volumes[-1].append(_file(name, piece, len(data), crc, done > 0, after, False))
            room -= header + len(piece)
            done += len(piece)
            if not after:
                break
    out = []
    for number, blocks in enumerate(volumes):
        more = number < len(volumes) - 1
        out.append(
            MARKER
            + _main(multi, multi and number == 0, True)
            + b"".join(blocks)
            + _end(more, number)
        )
    return out
