"""A minimal 7z writer for tests: copy method, solid or not, optionally AES-256, plain header.

7-Zip 26 never puts copy-method files into one solid folder (even with -ms=on),
yet other archivers do, and a member of an encrypted solid folder starts in
the middle of a CBC stream. This writer makes such archives after 7-Zip's
DOC/7zFormat.txt; `7zz t` accepts them (tests/data/7z/README.md). It is
written independently of altmount's parser (its own NUMBER encoder and key
derivation, round by round) so the two can check each other.
"""

from __future__ import annotations

import hashlib
import random
import struct
import zlib

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SIGNATURE = b"7z\xbc\xaf\x27\x1c"
AES = b"\x06\xf1\x07\x01"


def number(value: int) -> bytes:
    """A 7z NUMBER: leading one bits of the first byte count the little-endian bytes after it."""
    for extra in range(8):
        if value < 1 << (7 * (extra + 1)):
            first = (0xFF << (8 - extra)) & 0xFF | (value >> (8 * extra))
            return bytes([first]) + (value & ((1 << (8 * extra)) - 1)).to_bytes(extra, "little")
    return b"\xff" + value.to_bytes(8, "little")


def key_of(password: str, cycles: int) -> bytes:
    """7-Zip's key: SHA-256 over 2^cycles rounds of password (UTF-16LE) + 8-byte counter."""
    digest = hashlib.sha256()
    secret = password.encode("utf-16-le")
    for counter in range(1 << cycles):
        digest.update(secret + counter.to_bytes(8, "little"))
    return digest.digest()


def _bits(flags: list[bool]) -> bytes:
    out = bytearray((len(flags) + 7) // 8)
    for index, flag in enumerate(flags):
        if flag:
            out[index >> 3] |= 0x80 >> (index & 7)
    return bytes(out)


def _property(kind: int, payload: bytes) -> bytes:
    return bytes([kind]) + number(len(payload)) + payload


def write_7z(
    entries: list[tuple[str, bytes | None]],
    *,
    solid: bool = True,
    password: str = "",
    cycles: int = 19,
    seed: int = 0,
) -> bytes:
    """A 7z archive of `entries` (name, data; None for a directory) in copy folders."""
    with_data = [data for _, data in entries if data]
    groups = [with_data] if solid and with_data else [[data] for data in with_data]
    key = key_of(password, cycles) if password else b""
    rng = random.Random(seed)
    packed, folders, unpack_sizes = [], [], []
    for group in groups:
        plain = b"".join(group)
        if password:
            iv = rng.randbytes(16)
            padded = plain + bytes(-len(plain) % 16)
            encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
            packed.append(encryptor.update(padded) + encryptor.finalize())
            # AES (props: cycles, 16-byte IV, no salt) feeds Copy: bond (Copy's input 1, AES).
            props = bytes([0x40 | cycles, 0x0F]) + iv
            folders.append(
                number(2)
                + b"\x24"
                + AES
                + number(len(props))
                + props
                + b"\x01\x00"
                + number(1)
                + number(0)
            )
            unpack_sizes.append(number(len(plain)) * 2)
        else:
            packed.append(plain)
            folders.append(number(1) + b"\x01\x00")
            unpack_sizes.append(number(len(plain)))
    streams = b"\x06" + number(0) + number(len(packed)) + b"\x09"
    streams += b"".join(number(len(p)) for p in packed) + b"\x00"
    streams += b"\x07\x0b" + number(len(folders)) + b"\x00" + b"".join(folders)
    streams += b"\x0c" + b"".join(unpack_sizes) + b"\x00"
    streams += b"\x08\x0d" + b"".join(number(len(g)) for g in groups) + b"\x09"
    streams += b"".join(number(len(d)) for g in groups for d in g[:-1])
    streams += b"\x0a\x01" + b"".join(struct.pack("<I", zlib.crc32(d)) for g in groups for d in g)
    streams += b"\x00\x00"
    empty = [not data for _, data in entries]
    files = number(len(entries))
    if any(empty):
        files += _property(0x0E, _bits(empty))
        empty_file = [data is not None for _, data in entries if not data]
        files += _property(0x0F, _bits(empty_file))
    names = b"".join(name.encode("utf-16-le") + b"\x00\x00" for name, _ in entries)
    files += _property(0x11, b"\x00" + names) + b"\x00"
    header = b"\x01\x04" + streams + b"\x05" + files + b"\x00"
    body = b"".join(packed)
    start = struct.pack("<QQI", len(body), len(header), zlib.crc32(header))
    return SIGNATURE + b"\x00\x04" + struct.pack("<I", zlib.crc32(start)) + start + body + header


def split(archive: bytes, size: int, name: str) -> dict[str, bytes]:
    """`7z a -v<size>b`'s pieces of an archive: `name.001`, `name.002` …"""
    return {
        f"{name}.{index // size + 1:03d}": archive[index : index + size]
        for index in range(0, len(archive), size)
    }
