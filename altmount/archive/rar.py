"""Sans-IO parsers of RAR block headers, RAR 1.5-4.x ("RAR4") and RAR 5.0. No I/O.

`parse_block` reads the one block header that starts at a given volume offset
from the bytes the caller has, and answers either the `Block` or a `Need` (how
many bytes from that offset it must see first). The data areas are never read:
a stored member's bytes are located, not copied. Encrypted headers (`rar -hp`)
are parsed with a `HeaderCipher` the caller passes in (rarcrypto.py makes them
from the password); they answer `Locked` when they do not decrypt.

References: RAR 5.0 archive format (rarlab.com/technote.htm: vint, general
header layout, header types 1-5, file header, extra records); RAR 4.x
technote.txt shipped with RAR 3.x/4.x (MARK_HEAD, MAIN_HEAD 0x73, FILE_HEAD
0x74, NEWSUB_HEAD 0x7a, ENDARC_HEAD 0x7b).
"""

from __future__ import annotations

import enum
import hashlib
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from altmount.errors import ArchiveError

__all__ = [
    "RAR4_SIGNATURE",
    "RAR5_SIGNATURE",
    "MAX_HEADER_SIZE",
    "MAX_MEMBER_SIZE",
    "Kind",
    "Crypt",
    "Block",
    "Need",
    "Locked",
    "HeaderCipher",
    "detect",
    "signature_size",
    "parse_block",
    "rar4_method_name",
    "decode_rar4_name",
]

RAR4_SIGNATURE = b"Rar!\x1a\x07\x00"
RAR5_SIGNATURE = b"Rar!\x1a\x07\x01\x00"
#: RAR 5 caps the header size field at 3 vint bytes (2 MiB); RAR 4's is a uint16.
MAX_HEADER_SIZE = 2 * 1024 * 1024
#: Nothing posted to Usenet is a petabyte: a bigger size is corruption or an attack.
MAX_MEMBER_SIZE = 1 << 50
#: RAR 5 and RAR 4 both cap names (after decoding) well below this.
MAX_NAME_BYTES = 64 * 1024

_RAR5_FIRST_READ = 4 + 3  # CRC32 + the longest header size vint allowed
_AES_BLOCK = 16
_RAR4_BASE = struct.Struct("<HBHH")
_RAR4_FILE = struct.Struct("<IIBIIBBHI")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")


class Kind(enum.Enum):
    """What a block is, as far as locating members needs to know."""

    MAIN = "main"
    FILE = "file"
    SERVICE = "service"
    ENCRYPTION = "encryption"
    END = "end"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Crypt:
    """How data or headers are encrypted: AES-256 with a PBKDF2 key (RAR 5) or AES-128
    with a SHA-1 key (RAR 4; the IV comes from the key derivation too).

    `lg2_count` is RAR 5's log2 of the PBKDF2 iterations; `iv` is RAR 5's IV of a
    file's data (empty for the archive encryption header and for RAR 4); `check`
    is RAR 5's 8-byte password check value, None when absent or damaged.
    """

    version: int
    salt: bytes
    lg2_count: int = 0
    iv: bytes = b""
    check: bytes | None = None


@dataclass(frozen=True, slots=True)
class Block:
    """One parsed block header; `data_offset`/`data_size` locate its data area in the volume.

    Main headers fill `is_volume`, `first_volume`, `volume_number` (RAR 5; 0 for the
    first volume) and `headers_encrypted`; file headers fill `name`, `unpacked_size`
    (None when the archiver did not know it), `method`, `stored`, `is_dir`,
    `encrypted` and the split flags; RAR 4 end blocks may carry `volume_number`.
    `crypt` holds the key parameters of an encrypted file's data (None for RAR 4
    files encrypted before RAR 3, not AES) or, on a RAR 5 encryption header, of the
    headers that follow.
    """

    kind: Kind
    offset: int
    data_offset: int
    data_size: int = 0
    is_volume: bool = False
    first_volume: bool = False
    volume_number: int | None = None
    headers_encrypted: bool = False
    name: str = ""
    unpacked_size: int | None = None
    method: int = 0
    stored: bool = False
    is_dir: bool = False
    encrypted: bool = False
    split_before: bool = False
    split_after: bool = False
    more_volumes: bool = False
    crypt: Crypt | None = None

    @property
    def next_offset(self) -> int:
        """Where the next block header starts."""
        return self.data_offset + self.data_size


@dataclass(frozen=True, slots=True)
class Need:
    """The block cannot be parsed yet: `size` bytes from its offset are needed."""

    size: int


@dataclass(frozen=True, slots=True)
class Locked:
    """An encrypted header did not decrypt: no or a wrong password (or damage that cannot
    be told apart from one, when no check value proved the key)."""


class HeaderCipher(Protocol):
    """Decrypts encrypted headers: each is `prefix_size` bytes (RAR 5's IV, RAR 4's salt),
    then the header padded to whole AES blocks."""

    prefix_size: int
    #: True when a password check value proved the key: a bad header is then damage.
    verified: bool

    def decrypt(self, prefix: bytes, ciphertext: bytes) -> bytes:
        """Plaintext of whole AES blocks that follow `prefix`."""
        ...


def detect(prefix: bytes) -> int | None:
    """5 or 4 when the bytes start with that RAR signature, else None."""
    if prefix.startswith(RAR5_SIGNATURE):
        return 5
    if prefix.startswith(RAR4_SIGNATURE):
        return 4
    return None


def signature_size(version: int) -> int:
    """Length of the signature (RAR 4's marker block) the first header follows."""
    return len(RAR5_SIGNATURE) if version == 5 else len(RAR4_SIGNATURE)


def rar4_method_name(method: int) -> str:
    """A RAR 4 method byte as rar's own switch: 0x30 is m0 (store) ... 0x35 m5."""
    return f"m{method - 0x30}" if 0x30 <= method <= 0x35 else f"0x{method:02x}"


def parse_block(
    version: int,
    data: bytes,
    offset: int,
    volume_size: int,
    label: str,
    headers: HeaderCipher | None = None,
) -> Block | Need | Locked:
    """Parse the block header at volume offset `offset`; `data` holds the bytes from there on.

    With `headers` the header is encrypted and decrypted with it. Raises ArchiveError
    naming `label` when the header is corrupt (CRC), impossible (sizes past the end
    of the volume, absurd sizes) or truncated by the volume's end; an encrypted one
    that does not decrypt is `Locked` unless the key was proved (then it is damage).
    """
    if not 0 <= offset < volume_size:
        raise ArchiveError(
            f"{label}: block header expected at byte {offset}, past the end of the volume ({volume_size} bytes); the volume is truncated"
        )
    if version == 5:
        return _parse_rar5(data, offset, volume_size, label, headers)
    return _parse_rar4(data, offset, volume_size, label, headers)


class _Fields:
    """A cursor over one header's bytes; reading past them is an ArchiveError."""

    __slots__ = ("data", "pos", "end", "where")

    def __init__(self, data: bytes, pos: int, end: int, where: str) -> None:
        self.data, self.pos, self.end, self.where = data, pos, end, where

    def _short(self) -> ArchiveError:
        return ArchiveError(f"{self.where}: header fields run past the header's own size")

    def vint(self) -> int:
        """RAR 5 variable-length integer: 7 bits per byte, low first, at most 10 bytes."""
        value = 0
        for shift in range(0, 70, 7):
            if self.pos >= self.end:
                raise self._short()
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise ArchiveError(f"{self.where}: variable-length integer longer than 10 bytes")

    def u32(self) -> int:
        """A little-endian uint32."""
        return int.from_bytes(self.take(4), "little")

    def u16(self) -> int:
        """A little-endian uint16."""
        return int.from_bytes(self.take(2), "little")

    def take(self, size: int) -> bytes:
        """The next `size` bytes."""
        if size < 0 or self.pos + size > self.end:
            raise self._short()
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return bytes(chunk)


def _check_data(
    label: str, offset: int, data_offset: int, data_size: int, volume_size: int, name: str
) -> None:
    if data_size > MAX_MEMBER_SIZE:
        raise ArchiveError(
            f"{label}: block at byte {offset} announces an absurd data size ({data_size} bytes)"
        )
    if data_offset + data_size > volume_size:
        what = f"the data of {name}" if name else f"the data of the block at byte {offset}"
        raise ArchiveError(
            f"{label}: {what} ends at byte {data_offset + data_size}, past the end of the "
            f"volume ({volume_size} bytes); the volume is truncated or the header is corrupt"
        )


def _truncated(where: str, volume_size: int) -> ArchiveError:
    return ArchiveError(
        f"{where}: header runs past the end of the volume ({volume_size} bytes); the volume is truncated"
    )


def _garbled(headers: HeaderCipher | None, problem: ArchiveError) -> Locked:
    """A header that makes no sense: damage when it is plain or its key was proved, else
    (an encrypted header and an unproved key) Locked."""
    if headers is None or headers.verified:
        raise problem
    return Locked()


def _decrypted(
    data: bytes,
    offset: int,
    volume_size: int,
    where: str,
    headers: HeaderCipher,
    header_size: Callable[[bytes, str], int],
) -> tuple[bytes, int] | Need | Locked:
    """(plaintext, bytes taken in the volume) of the encrypted header at `offset`.

    `header_size` reads the header's own size from its first decrypted block.
    """
    prefix = headers.prefix_size
    first = prefix + _AES_BLOCK
    if offset + first > volume_size:
        return _garbled(headers, _truncated(where, volume_size))
    if len(data) < first:
        return Need(first)
    try:
        total = header_size(headers.decrypt(bytes(data[:prefix]), bytes(data[prefix:first])), where)
    except ArchiveError as exc:
        return _garbled(headers, exc)
    span = prefix + -(-total // _AES_BLOCK) * _AES_BLOCK
    if offset + span > volume_size:
        return _garbled(headers, _truncated(where, volume_size))
    if len(data) < span:
        return Need(span)
    return headers.decrypt(bytes(data[:prefix]), bytes(data[prefix:span])), span


def _rar5_header_size(head: bytes, where: str) -> int:
    """CRC32 + size vint + the size it gives, from the first bytes of a RAR 5 header."""
    fields = _Fields(head, 4, min(len(head), _RAR5_FIRST_READ), where)
    try:
        header_size = fields.vint()
    except ArchiveError:
        raise ArchiveError(
            f"{where}: header size field is not a 1-3 byte integer (corrupt header)"
        ) from None
    if header_size == 0 or header_size > MAX_HEADER_SIZE:
        raise ArchiveError(f"{where}: impossible header size {header_size}")
    return fields.pos + header_size


def _parse_rar5(
    data: bytes, offset: int, volume_size: int, label: str, headers: HeaderCipher | None
) -> Block | Need | Locked:
    where = f"{label}: block at byte {offset}"
    if headers is not None:
        got = _decrypted(data, offset, volume_size, where, headers, _rar5_header_size)
        if not isinstance(got, tuple):
            return got
        plain, span = got
        total = _rar5_header_size(plain, where)
    else:
        first = min(_RAR5_FIRST_READ, volume_size - offset)
        if len(data) < first:
            return Need(first)
        total = span = _rar5_header_size(bytes(data[:first]), where)
        if offset + total > volume_size:
            raise _truncated(where, volume_size)
        if len(data) < total:
            return Need(total)
        plain = data
    if zlib.crc32(plain[4:total]) != _U32.unpack_from(plain)[0]:
        return _garbled(headers, ArchiveError(f"{where}: header CRC mismatch (corrupt header)"))
    fields = _Fields(plain, 4, total, where)
    fields.vint()  # the header size, read above
    kind_code, flags = fields.vint(), fields.vint()
    extra_size = fields.vint() if flags & 0x0001 else 0
    data_size = fields.vint() if flags & 0x0002 else 0
    if extra_size > total - fields.pos:
        raise ArchiveError(f"{where}: extra area larger than the header")
    extra_start = total - extra_size
    base: dict[str, Any] = {"offset": offset, "data_offset": offset + span, "data_size": data_size}
    if kind_code in (2, 3):
        return _rar5_file(fields, kind_code, flags, extra_start, base, volume_size, label)
    _check_data(label, offset, offset + span, data_size, volume_size, "")
    if kind_code == 1:
        archive_flags = fields.vint()
        number = fields.vint() if archive_flags & 0x0002 else 0
        is_volume = bool(archive_flags & 0x0001)
        return Block(
            Kind.MAIN,
            **base,
            is_volume=is_volume,
            first_volume=is_volume and number == 0,
            volume_number=number if is_volume else None,
        )
    if kind_code == 4:
        return Block(
            Kind.ENCRYPTION, **base, headers_encrypted=True, crypt=_rar5_crypt(fields, False)
        )
    if kind_code == 5:
        return Block(Kind.END, **base, more_volumes=bool(fields.vint() & 0x0001))
    return Block(Kind.OTHER, **base)


def _rar5_crypt(fields: _Fields, with_iv: bool) -> Crypt:
    """The archive encryption header's fields, or a file encryption record's (with an IV)."""
    version, flags = fields.vint(), fields.vint()
    if version != 0:
        raise ArchiveError(f"{fields.where}: unknown RAR 5 encryption version {version}")
    lg2_count = fields.take(1)[0]
    salt = fields.take(16)
    iv = fields.take(16) if with_iv else b""
    check = None
    if flags & 0x0001:
        value = fields.take(12)
        # The check value carries its own SHA-256 checksum: a damaged one proves nothing.
        if hashlib.sha256(value[:8]).digest()[:4] == value[8:]:
            check = value[:8]
    return Crypt(5, salt, lg2_count, iv, check)


def _rar5_file(
    fields: _Fields,
    kind_code: int,
    flags: int,
    extra_start: int,
    base: dict[str, Any],
    volume_size: int,
    label: str,
) -> Block:
    file_flags = fields.vint()
    unpacked = fields.vint()
    fields.vint()  # attributes
    if file_flags & 0x0002:
        fields.u32()  # mtime
    if file_flags & 0x0004:
        fields.u32()  # data CRC32
    compression = fields.vint()
    fields.vint()  # host OS
    name_size = fields.vint()
    if name_size > MAX_NAME_BYTES:
        raise ArchiveError(f"{fields.where}: name of {name_size} bytes")
    name = fields.take(name_size).decode("utf-8", errors="replace")
    if fields.pos > extra_start:
        raise ArchiveError(f"{fields.where}: file fields overlap the extra area")
    crypt = None
    extra = _Fields(fields.data, extra_start, fields.end, fields.where)
    while extra.pos < extra.end:
        size = extra.vint()
        record_end = extra.pos + size
        if size == 0 or record_end > extra.end:
            raise ArchiveError(f"{fields.where}: extra record runs past the header")
        record = _Fields(extra.data, extra.pos, record_end, fields.where)
        if record.vint() == 0x01:  # file encryption record
            crypt = _rar5_crypt(record, True)
        extra.pos = record_end
    size_known = not file_flags & 0x0008
    if size_known and unpacked > MAX_MEMBER_SIZE:
        raise ArchiveError(f"{label}: {name} announces an absurd size ({unpacked} bytes)")
    method = (compression >> 7) & 0x7
    _check_data(label, base["offset"], base["data_offset"], base["data_size"], volume_size, name)
    return Block(
        Kind.FILE if kind_code == 2 else Kind.SERVICE,
        **base,
        name=name,
        unpacked_size=unpacked if size_known else None,
        method=method,
        stored=method == 0,
        is_dir=bool(file_flags & 0x0001),
        encrypted=crypt is not None,
        split_before=bool(flags & 0x0008),
        split_after=bool(flags & 0x0010),
        crypt=crypt,
    )


def _rar4_header_size(head: bytes, where: str) -> int:
    """The header size field of a RAR 4 header (its first 7 bytes), checked for sanity."""
    _crc, _kind, flags, header_size = _RAR4_BASE.unpack_from(head)
    if header_size < _RAR4_BASE.size + (4 if flags & 0x8000 else 0):
        raise ArchiveError(f"{where}: impossible header size {header_size}")
    return header_size


def _parse_rar4(
    data: bytes, offset: int, volume_size: int, label: str, headers: HeaderCipher | None
) -> Block | Need | Locked:
    where = f"{label}: block at byte {offset}"
    if headers is not None:
        got = _decrypted(data, offset, volume_size, where, headers, _rar4_header_size)
        if not isinstance(got, tuple):
            return got
        plain, span = got
    else:
        first = min(_RAR4_BASE.size + 4, volume_size - offset)
        if len(data) < first:
            return Need(first)
        if first < _RAR4_BASE.size:
            raise _truncated(where, volume_size)
        span = _rar4_header_size(bytes(data[: _RAR4_BASE.size]), where)
        if offset + span > volume_size:
            raise _truncated(where, volume_size)
        if len(data) < span:
            return Need(span)
        plain = data
    crc, kind_code, flags, header_size = _RAR4_BASE.unpack_from(plain)
    if zlib.crc32(plain[2:header_size]) & 0xFFFF != crc:
        return _garbled(headers, ArchiveError(f"{where}: header CRC mismatch (corrupt header)"))
    data_size = _U32.unpack_from(plain, _RAR4_BASE.size)[0] if flags & 0x8000 else 0
    fields = _Fields(plain, _RAR4_BASE.size, header_size, where)
    base: dict[str, Any] = {"offset": offset, "data_offset": offset + span}
    if kind_code == 0x74:
        return _rar4_file(fields, flags, base, volume_size, label)
    _check_data(label, offset, offset + span, data_size, volume_size, "")
    base["data_size"] = data_size
    if kind_code == 0x73:
        is_volume = bool(flags & 0x0001)
        return Block(
            Kind.MAIN,
            **base,
            is_volume=is_volume,
            first_volume=is_volume and bool(flags & 0x0100),
            headers_encrypted=bool(flags & 0x0080),
        )
    if kind_code == 0x7B:
        if flags & 0x0002:
            fields.u32()  # CRC of the volume's data
        number = fields.u16() if flags & 0x0008 else None
        return Block(Kind.END, **base, more_volumes=bool(flags & 0x0001), volume_number=number)
    return Block(Kind.SERVICE if kind_code == 0x7A else Kind.OTHER, **base)


def _rar4_file(
    fields: _Fields, flags: int, base: dict[str, Any], volume_size: int, label: str
) -> Block:
    packed, unpacked, _host, _crc, _time, version, method, name_size, _attributes = (
        _RAR4_FILE.unpack(fields.take(_RAR4_FILE.size))
    )
    if flags & 0x0100:  # LHD_LARGE: high 32 bits of both sizes
        packed |= fields.u32() << 32
        unpacked |= fields.u32() << 32
    raw_name = fields.take(name_size)
    name = (
        decode_rar4_name(raw_name) if flags & 0x0200 else raw_name.decode("cp437", errors="replace")
    )
    name = name.replace("\\", "/")
    encrypted = bool(flags & 0x0004)
    crypt = None
    # AES (RAR 3.x's crypt) from unpack version 2.9 on; older versions used ciphers
    # of their own, which are not supported (crypt stays None).
    if encrypted and version >= 29:
        crypt = Crypt(4, fields.take(8) if flags & 0x0400 else b"")
    if unpacked > MAX_MEMBER_SIZE:
        raise ArchiveError(f"{label}: {name} announces an absurd size ({unpacked} bytes)")
    _check_data(label, base["offset"], base["data_offset"], packed, volume_size, name)
    return Block(
        Kind.FILE,
        **base,
        data_size=packed,
        name=name,
        # An unknown size is stored as all ones (rar -si: input from a pipe).
        unpacked_size=None if unpacked in (0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF) else unpacked,
        method=method,
        stored=method == 0x30,
        is_dir=flags & 0x00E0 == 0x00E0,
        encrypted=encrypted,
        split_before=bool(flags & 0x0001),
        split_after=bool(flags & 0x0002),
        crypt=crypt,
    )


def decode_rar4_name(raw: bytes) -> str:
    """A RAR 4 LHD_UNICODE name: `ascii NUL packed-UTF-16`, or UTF-8 when there is no NUL.

    The packed form (unrar's EncodeFileName) codes each character in 2 flag bits:
    a low byte in the current high page, a byte with a given high byte, a full
    16-bit unit, or a run copied from the ASCII name with an optional correction.
    """
    zero = raw.find(b"\x00")
    if zero < 0:
        return raw.decode("utf-8", errors="replace")
    ascii_name, packed = raw[:zero], raw[zero + 1 :]
    if not packed:
        return ascii_name.decode("cp437", errors="replace")
    high, pos, flags, bits = packed[0], 1, 0, 0
    units: list[int] = []
    while pos < len(packed) and len(units) < MAX_NAME_BYTES:
        if bits == 0:
            flags, pos, bits = packed[pos], pos + 1, 8
            if pos >= len(packed):
                break
        bits -= 2
        code = (flags >> bits) & 3
        if code == 0:
            units.append(packed[pos])
            pos += 1
        elif code == 1:
            units.append(packed[pos] | high << 8)
            pos += 1
        elif code == 2:
            if pos + 1 >= len(packed):
                break
            units.append(packed[pos] | packed[pos + 1] << 8)
            pos += 2
        else:
            length = packed[pos]
            pos += 1
            correction = 0
            if length & 0x80:
                if pos >= len(packed):
                    break
                correction, pos = packed[pos], pos + 1
            for _ in range((length & 0x7F) + 2):
                source = ascii_name[len(units)] if len(units) < len(ascii_name) else 0
                units.append(
                    ((source + correction) & 0xFF) | high << 8 if length & 0x80 else source
                )
    encoded = b"".join(unit.to_bytes(2, "little") for unit in units)
    return encoded.decode("utf-16-le", errors="replace")
