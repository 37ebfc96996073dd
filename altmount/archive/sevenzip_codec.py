"""7-Zip's AES key derivation, and decoding of a packed 7z header (no I/O).

The key is SHA-256 over 2^NumCyclesPower rounds of salt + password (UTF-16LE)
+ an 8-byte little-endian round counter (7-Zip's 7zAes.cpp). Fed round by
round that is half a million hash updates (seconds in Python), so the whole
input is laid out once with numpy, a few MiB at a time, and hashed in large
updates. An encoded header is a one-folder chain of Copy, LZMA, LZMA2 and
7zAES coders: AES through `cryptography`, LZMA through the stdlib `lzma`.
"""

from __future__ import annotations

import hashlib
import lzma
import zlib

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from altmount.archive.sevenzip_members import aes_params
from altmount.archive.sevenzip_model import AES_METHOD, COPY_METHOD, AesParams, Coder, Folder
from altmount.errors import ArchiveError

__all__ = [
    "MAX_CYCLES_POWER",
    "MAX_KEYS",
    "MAX_KEY_INPUT",
    "derive_key",
    "KeyRing",
    "decode_folder",
]

#: 7-Zip refuses more rounds than 2^24 too (kNumCyclesPower_Supported_MAX).
MAX_CYCLES_POWER = 24
#: The special power meaning "no hashing: salt + password is the key".
_RAW_KEY = 0x3F
#: Distinct keys derived per import: 7-Zip uses one salt for every folder, so more is an attack.
MAX_KEYS = 4
#: Bytes one derivation may hash (2^24 rounds of a 24-character password): about a second.
MAX_KEY_INPUT = 1 << 30
#: Bytes laid out per hash update: big enough to amortise the call, small enough for memory.
_CHUNK_BYTES = 4 << 20

_LZMA = b"\x03\x01\x01"
_LZMA2 = b"\x21"
#: liblzma's smallest dictionary.
_MIN_DICT = 4096


def derive_key(password: str, params: AesParams) -> bytes:
    """The AES-256 key of a 7zAES coder for `password`."""
    secret = params.salt + password.encode("utf-16-le")
    if params.cycles == _RAW_KEY:
        return secret[:32].ljust(32, b"\x00")
    rounds = 1 << params.cycles
    width = len(secret) + 8
    per_chunk = max(1, min(rounds, _CHUNK_BYTES // width))
    block = np.empty((per_chunk, width), dtype=np.uint8)
    block[:, : len(secret)] = np.frombuffer(secret, dtype=np.uint8)
    digest = hashlib.sha256()
    for first in range(0, rounds, per_chunk):
        count = min(per_chunk, rounds - first)
        counters = np.arange(first, first + count, dtype="<u8")
        block[:count, len(secret) :] = counters.view(np.uint8).reshape(count, 8)
        digest.update(block[:count].data)
    return digest.digest()


class KeyRing:
    """The keys of one import's password, each derived once."""

    def __init__(self, password: str) -> None:
        self.password = password
        self._keys: dict[tuple[int, bytes], bytes] = {}

    def key(self, params: AesParams, label: str) -> bytes | None:
        """The key for a coder's parameters, or None when there is no password."""
        if not self.password:
            return None
        known = self._keys.get((params.cycles, params.salt))
        if known is not None:
            return known
        if params.cycles != _RAW_KEY:
            if params.cycles > MAX_CYCLES_POWER:
                raise ArchiveError(
                    f"{label}: 7z key derivation of 2^{params.cycles} rounds is not supported"
                )
            width = len(params.salt) + len(self.password.encode("utf-16-le")) + 8
            if width << params.cycles > MAX_KEY_INPUT:
                raise ArchiveError(
                    f"{label}: 7z key derivation of 2^{params.cycles} rounds with this password "
                    f"would hash more than {MAX_KEY_INPUT >> 20} MiB"
                )
        if len(self._keys) >= MAX_KEYS:
            raise ArchiveError(f"{label}: more than {MAX_KEYS} different 7z AES keys")
        key = derive_key(self.password, params)
        self._keys[(params.cycles, params.salt)] = key
        return key


def decode_folder(folder: Folder, packed: bytes, keys: KeyRing, label: str) -> bytes:
    """The unpacked bytes of a one-chain folder (an encoded header) from its packed stream.

    An AES folder that does not decode or fails its CRC means no or a wrong
    password (7z keeps no password check value); other damage, and coders a
    header cannot use, are ArchiveErrors saying so.
    """
    chain = folder.chain()
    if chain is None or len(folder.packed) != 1:
        raise ArchiveError(f"{label}: the 7z header is packed by an unsupported coder graph")
    coders = [folder.coders[index] for index in reversed(chain)]
    sizes = [folder.unpack_sizes[index] for index in reversed(chain)]
    ciphers: dict[int, Cipher] = {}
    for position, coder in enumerate(coders):
        if coder.method == AES_METHOD:
            params = aes_params(coder.properties, label)
            key = keys.key(params, label)
            if key is None:
                raise _wrong_password(label)
            ciphers[position] = Cipher(algorithms.AES(key), modes.CBC(params.iv))
    data = packed
    try:
        for position, (coder, size) in enumerate(zip(coders, sizes, strict=True)):
            if position in ciphers:
                data = _decrypt(ciphers[position], data, label)
            elif coder.method in (_LZMA, _LZMA2):
                data = _lzma(coder, data, size, label)
            elif coder.method != COPY_METHOD:
                raise ArchiveError(
                    f"{label}: the 7z header is packed with {coder.name}, not supported"
                )
            if len(data) < size:
                raise ArchiveError(
                    f"{label}: damaged 7z archive: header decodes to {len(data)} bytes, not {size}"
                )
            data = data[:size]
        if folder.crc is not None and zlib.crc32(data) != folder.crc:
            raise ArchiveError(f"{label}: damaged 7z archive: header CRC mismatch after decoding")
    except ArchiveError:
        if folder.encrypted:
            raise _wrong_password(label) from None
        raise
    return data


def _wrong_password(label: str) -> ArchiveError:
    return ArchiveError(f"{label}: encrypted archive, no/wrong password")


def _decrypt(cipher: Cipher, data: bytes, label: str) -> bytes:
    if len(data) % 16:
        raise ArchiveError(f"{label}: damaged 7z archive: encrypted header of {len(data)} bytes")
    decryptor = cipher.decryptor()
    return decryptor.update(data) + decryptor.finalize()


def _lzma(coder: Coder, data: bytes, size: int, label: str) -> bytes:
    props = coder.properties
    # The dictionary never needs to exceed the output; a hostile 4 GiB one would be allocated.
    if coder.method == _LZMA:
        if len(props) != 5 or props[0] >= 9 * 5 * 5:
            raise ArchiveError(f"{label}: damaged 7z header: LZMA properties {props.hex()}")
        dict_size = max(_MIN_DICT, min(int.from_bytes(props[1:5], "little"), size))
        lc, rest = props[0] % 9, props[0] // 9
        filters = [
            {
                "id": lzma.FILTER_LZMA1,
                "dict_size": dict_size,
                "lc": lc,
                "lp": rest % 5,
                "pb": rest // 5,
            }
        ]
    else:
        if len(props) != 1 or props[0] > 40:
            raise ArchiveError(f"{label}: damaged 7z header: LZMA2 properties {props.hex()}")
        declared = (2 | (props[0] & 1)) << (props[0] // 2 + 11)
        filters = [{"id": lzma.FILTER_LZMA2, "dict_size": max(_MIN_DICT, min(declared, size))}]
    try:
        return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters).decompress(data, size)
    except lzma.LZMAError as exc:
        raise ArchiveError(f"{label}: damaged 7z archive: header does not decode ({exc})") from None
