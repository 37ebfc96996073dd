"""Write stored (-m0) RAR 4.x archives, single or multi-volume, plain or encrypted, for tests.

RAR 7 (the `rar` on Debian 12) no longer creates RAR 4 archives (`-ma4` was
removed in RAR 7.00), so the RAR 4 test archives are written here, following
technote.txt of RAR 3.x/4.x, and checked with the real tool (`rar t` still
tests RAR 4 archives). Only what the tests need: stored files, directories,
`.partN.rar` or `.rar`/`.rNN` names, EARC_VOLNUMBER in end blocks (as RAR 3+
writes them) and MHD_FIRSTVOLUME; with a password, AES-128 file data
(LHD_PASSWORD + LHD_SALT, as `rar a -p` of RAR 3.x) and, optionally, encrypted
headers (MHD_PASSWORD: every header after the main one is an 8-byte salt and
the header encrypted and padded to 16 bytes, as `rar a -hp`).

The key derivation here is deliberately the plain round-by-round loop of
unrar's crypt3.cpp (SetKey30), independent of altmount's fast one.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

MARKER = b"Rar!\x1a\x07\x00"
DEFAULT_SALT = b"altmount"


def rar3_key(password: str, salt: bytes) -> tuple[bytes, bytes]:
    """(AES-128 key, IV) of RAR 3.x for a password and an 8-byte salt, round by round."""
    raw = password.encode("utf-16-le") + salt
    digest = hashlib.sha1()
    iv = bytearray()
    for number in range(0x40000):
        digest.update(raw + number.to_bytes(4, "little")[:3])
        if number % 0x4000 == 0:
            iv.append(digest.copy().digest()[19])
    final = digest.digest()
    return b"".join(final[i : i + 4][::-1] for i in range(0, 16, 4)), bytes(iv)


def _encrypt(key_iv: tuple[bytes, bytes], data: bytes) -> bytes:
    """AES-CBC of `data` padded with zeros to whole blocks."""
    key, iv = key_iv
    padded = data + bytes(-len(data) % 16)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


class _Writer:
    def __init__(self, password: str | None, encrypt_headers: bool, salt: bytes) -> None:
        self.password = password
        self.salt = salt
        self.key = rar3_key(password, salt) if password is not None else None
        self.encrypt_headers = encrypt_headers and self.key is not None

    def block(self, kind: int, flags: int, body: bytes) -> bytes:
        """A header with its CRC, encrypted behind its salt when headers are encrypted."""
        header = struct.pack("<BHH", kind, flags, 7 + len(body)) + body
        plain = struct.pack("<H", zlib.crc32(header) & 0xFFFF) + header
        if not self.encrypt_headers or kind == 0x73:
            return plain
        assert self.key is not None
        return self.salt + _encrypt(self.key, plain)

    def main(self, volume: bool, first: bool) -> bytes:
        flags = (
            (0x0001 if volume else 0)
            | (0x0100 if first else 0)
            | 0x0010  # new volume naming (.partN.rar)
            | (0x0080 if self.encrypt_headers else 0)
        )
        return self.block(0x73, flags, struct.pack("<HI", 0, 0))

    def file(
        self, name: str, packed: int, total: int, crc: int, before: bool, after: bool, is_dir: bool
    ) -> bytes:
        raw = name.encode()
        encrypted = self.key is not None and not is_dir
        flags = (
            0x8000
            | (0x01 if before else 0)
            | (0x02 if after else 0)
            | (0xE0 if is_dir else 0)
            | (0x0404 if encrypted else 0)  # LHD_PASSWORD | LHD_SALT
        )
        attributes = 0o40755 if is_dir else 0o100644
        body = struct.pack(
            "<IIBIIBBHI",
            packed,
            total,
            3,
            crc,
            0x5A210000,
            20 if is_dir else 29,
            0x30,
            len(raw),
            attributes,
        )
        return self.block(0x74, flags, body + raw + (self.salt if encrypted else b""))

    def end(self, more: bool, number: int) -> bytes:
        return self.block(
            0x7B, 0x4000 | (0x0001 if more else 0) | 0x0008, struct.pack("<H", number)
        )


def volume_names(stem: str, count: int, style: str) -> list[str]:
    """`part`: stem.part1.rar ... (width of the count); `old`: stem.rar, stem.r00, ..."""
    if count == 1:
        return [f"{stem}.rar"]
    if style == "part":
        width = len(str(count))
        return [f"{stem}.part{n:0{width}d}.rar" for n in range(1, count + 1)]
    return [f"{stem}.rar"] + [f"{stem}.r{n:02d}" for n in range(count - 1)]


def write_rar4(
    files: list[tuple[str, bytes | None]],
    volume_size: int | None = None,
    password: str | None = None,
    encrypt_headers: bool = False,
    salt: bytes = DEFAULT_SALT,
) -> list[bytes]:
    """The volumes of a stored RAR 4 archive of `files` (name, data; None for a directory).

    With a password the file data is AES-128 encrypted (one CBC stream per file,
    continued across volumes: pieces are cut anywhere, only the whole is padded);
    `encrypt_headers` encrypts the headers too.
    """
    writer = _Writer(password, encrypt_headers, salt)
    multi = volume_size is not None
    capacity = (
        (volume_size or 1 << 62)
        - len(MARKER)
        - len(writer.main(True, True))
        - len(writer.end(True, 0))
    )
    volumes: list[list[bytes]] = [[]]
    room = capacity
    for name, data in files:
        header = len(writer.file(name, 0, 0, 0, False, False, data is None))
        if data is None:
            if room < header:
                volumes.append([])
                room = capacity
            volumes[-1].append(writer.file(name, 0, 0, 0, False, False, True))
            room -= header
            continue
        packed = _encrypt(writer.key, data) if writer.key is not None else data
        whole_crc, done = zlib.crc32(data), 0
        while True:
            if room < header + 1 and done < len(packed) or room < header:
                volumes.append([])
                room = capacity
            piece = packed[done : done + room - header]
            after = done + len(piece) < len(packed)
            # A piece that continues in the next volume carries the CRC of its packed bytes.
            crc = zlib.crc32(piece) if after else whole_crc
            block = writer.file(name, len(piece), len(data), crc, done > 0, after, False)
            volumes[-1].append(block + piece)
            room -= header + len(piece)
            done += len(piece)
            if not after:
                break
    out = []
    for number, blocks in enumerate(volumes):
        more = number < len(volumes) - 1
        out.append(
            MARKER
            + writer.main(multi, multi and number == 0)
            + b"".join(blocks)
            + writer.end(more, number)
        )
    return out
