"""PAR2 packet parsing (no I/O): the file names, sizes and hashes a PAR2 set records.

Only what the importer needs is decoded: the Main packet (slice size, file ids),
FileDesc packets (file id, MD5 of the whole file and of its first 16 KiB, length,
name), Unicode file names and the creator. Everything else (recovery slices,
checksums of slices) is skipped by its declared length.

PAR2 2.0 specification, section "Packet header": every packet starts with the
magic `PAR2\\0PKT`, a little-endian uint64 length (of the whole packet, a multiple
of 4, at least 64), the MD5 of everything after that MD5 field, the recovery-set id
and a 16-byte type. A packet whose length is impossible or whose MD5 does not
match is counted as bad and the parser resynchronises on the next magic, so a
damaged file yields what is left of it. Bounded work: every resynchronisation
drops at least one byte, and the bytes hashed are capped at a fixed multiple of
the input (`MAX_WORK_FACTOR`), so hostile input costs linear time.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from altmount.errors import Par2Error

__all__ = [
    "MAGIC",
    "Par2File",
    "Par2Main",
    "Par2Set",
    "Par2Parser",
    "parse_par2",
    "MAX_CRITICAL_PACKET",
    "MAX_PACKET",
]

MAGIC = b"PAR2\0PKT"
_HEADER = struct.Struct("<8sQ16s16s16s")  # magic, length, packet MD5, set id, type
HEADER_SIZE = _HEADER.size  # 64
TYPE_MAIN = b"PAR 2.0\0Main\0\0\0\0"
TYPE_FILE_DESC = b"PAR 2.0\0FileDesc"
TYPE_UNICODE_NAME = b"PAR 2.0\0UniFileN"
TYPE_CREATOR = b"PAR 2.0\0Creator\0"
_FILE_DESC = struct.Struct("<16s16s16sQ")  # file id, MD5, 16 KiB MD5, length
_MAIN = struct.Struct("<QI")  # slice size, number of files in the recovery set

#: Packets we decode are small: a Main packet lists 16 bytes per file (par2cmdline
#: caps a set at 32768 files, 512 KiB); a name is at most a few KiB. Anything
#: bigger of these types is a lie about its length.
MAX_CRITICAL_PACKET = 1 << 20
#: Recovery slices are as big as the slice size; 4 GiB is beyond any real set and
#: a length above it is treated as corrupt rather than skipped.
MAX_PACKET = 1 << 32
#: Hashing is the costly part; damaged input may make us hash at most this many
#: times its own size (plus one critical packet) before we give up on it.
MAX_WORK_FACTOR = 8
_CRITICAL = frozenset({TYPE_MAIN, TYPE_FILE_DESC, TYPE_UNICODE_NAME, TYPE_CREATOR})


@dataclass(frozen=True, slots=True)
class Par2File:
    """One file of the recovery set as a FileDesc packet describes it.

    `name` is as recorded (it may hold a relative path); callers sanitise it.
    `md5_16k` is the MD5 of the first 16 KiB (of the whole file when smaller).
    """

    file_id: bytes
    md5: bytes
    md5_16k: bytes
    size: int
    name: str


@dataclass(frozen=True, slots=True)
class Par2Main:
    """The Main packet: the slice size and the ids of the files in the set."""

    slice_size: int
    recovery_file_ids: tuple[bytes, ...]
    other_file_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Par2Set:
    """What a PAR2 file says about one recovery set.

    `files` follow the Main packet's order when it was found, else arrival order.
    `bad_packets` counts packets dropped for an impossible length or a wrong MD5.
    """

    set_id: bytes
    main: Par2Main | None
    files: tuple[Par2File, ...]
    creator: str
    bad_packets: int


def parse_par2(data: bytes) -> Par2Set:
    """Parse a whole PAR2 file; raise `Par2Error` when it holds no usable packet."""
    parser = Par2Parser()
    parser.feed(data)
    return parser.close()


class Par2Parser:
    """Incremental PAR2 parser: `feed()` bytes in any chunks, then `close()`.

    A truncated input is fine: `close()` returns the packets complete so far.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pos = 0  # start of unparsed data in _buffer
        self._skip = 0  # bytes of a skipped (non-critical) packet still to drop
        self._fed = 0
        self._hashed = 0
        self._bad = 0
        self._set_id: bytes | None = None
        self._main: Par2Main | None = None
        self._files: dict[bytes, Par2File] = {}
        self._unicode: dict[bytes, str] = {}
        self._creator = ""

    def feed(self, data: bytes) -> None:
        """Parse the next chunk of the file."""
        self._fed += len(data)
        self._buffer += data
        while self._step(final=False):
            pass
        if self._pos > 65536 or self._pos * 2 > len(self._buffer):
            del self._buffer[: self._pos]
            self._pos = 0

    def close(self) -> Par2Set:
        """The recovery set found; `Par2Error` if no valid packet was found at all."""
        while self._step(final=True):
            pass
        if self._set_id is None:
            detail = f"{self._bad} damaged packet(s)" if self._bad else "no PAR2 packet"
            raise Par2Error(f"not a usable PAR2 file: {detail} in {self._fed} bytes")
        files = list(self._files.values())
        if self._main is not None:
            ids = self._main.recovery_file_ids + self._main.other_file_ids
            order = {file_id: i for i, file_id in enumerate(ids)}
            files.sort(key=lambda f: order.get(f.file_id, len(order)))
        named = tuple(_with_unicode_name(f, self._unicode.get(f.file_id)) for f in files)
        return Par2Set(self._set_id, self._main, named, self._creator, self._bad)

    # -- the state machine: find magic, check the header, take or skip the packet --

    def _step(self, final: bool) -> bool:
        """Consume one packet, skipped span or bad byte; False when input is needed."""
        if self._skip:
            return self._skip_some()
        buffer, pos = self._buffer, self._pos
        start = buffer.find(MAGIC, pos)
        if start < 0:
            # Keep a possible partial magic at the end; the rest is garbage.
            self._pos = max(pos, len(buffer) - (len(MAGIC) - 1))
            return False
        self._pos = start
        if len(buffer) - start < HEADER_SIZE:
            return final and self._resync()
        _, length, digest, set_id, kind = _HEADER.unpack_from(buffer, start)
        critical = kind in _CRITICAL
        limit = MAX_CRITICAL_PACKET if critical else MAX_PACKET
        if length < HEADER_SIZE or length % 4 or length > limit:
            return self._resync()
        if not critical:
            self._pos, self._skip = start + HEADER_SIZE, length - HEADER_SIZE
            return True
        if len(buffer) - start < length:
            return final and self._resync()
        self._hashed += length
        if self._hashed > MAX_WORK_FACTOR * self._fed + MAX_CRITICAL_PACKET:
            raise Par2Error(
                f"PAR2 file too damaged to parse: {self._bad} bad packets "
                f"in the first {self._fed} bytes"
            )
        body = bytes(buffer[start + 32 : start + length])
        if hashlib.md5(body).digest() != digest or not self._take(set_id, kind, body[32:]):
            return self._resync()
        self._pos = start + length
        return True

    def _resync(self) -> bool:
        """Count a bad packet and look for the next magic after this one's."""
        self._bad += 1
        self._pos += 1
        return True

    def _skip_some(self) -> bool:
        """Drop the body of a packet we do not decode, watching for a magic inside it.

        A real recovery slice holding the 8-byte magic is a 2**-64 chance, so a
        magic inside the declared span means the length lied: count the packet as
        bad and resume at that magic instead of swallowing the packets after it.
        """
        buffer, pos = self._buffer, self._pos
        end = min(len(buffer), pos + self._skip)
        found = buffer.find(MAGIC, pos, end)
        if found >= 0:
            self._bad += 1
            self._skip, self._pos = 0, found
            return True
        if end == pos + self._skip:
            self._skip, self._pos = 0, end
            return True
        # Keep the last bytes: a magic may straddle the end of what we have.
        advance = max(0, end - pos - (len(MAGIC) - 1))
        self._skip -= advance
        self._pos += advance
        return False

    def _take(self, set_id: bytes, kind: bytes, body: bytes) -> bool:
        """Decode a critical packet whose MD5 matched; False if its body is malformed."""
        if self._set_id is None:
            self._set_id = set_id
        elif set_id != self._set_id:
            return True  # another recovery set in the same file: not ours
        if kind == TYPE_FILE_DESC:
            if len(body) < _FILE_DESC.size:
                return False
            file_id, md5, md5_16k, size = _FILE_DESC.unpack_from(body)
            name = _decode_name(body[_FILE_DESC.size :])
            self._files.setdefault(file_id, Par2File(file_id, md5, md5_16k, size, name))
        elif kind == TYPE_MAIN:
            return self._take_main(body)
        elif kind == TYPE_UNICODE_NAME:
            if len(body) < 16:
                return False
            name = body[16:].decode("utf-16-le", errors="replace").rstrip("\0")
            self._unicode.setdefault(body[:16], name)
        else:
            self._creator = self._creator or _decode_name(body)
        return True

    def _take_main(self, body: bytes) -> bool:
        if len(body) < _MAIN.size or (len(body) - _MAIN.size) % 16:
            return False
        slice_size, count = _MAIN.unpack_from(body)
        ids = [body[i : i + 16] for i in range(_MAIN.size, len(body), 16)]
        if count > len(ids) or slice_size == 0 or slice_size % 4:
            return False
        if self._main is None:
            self._main = Par2Main(slice_size, tuple(ids[:count]), tuple(ids[count:]))
        return True


def _decode_name(raw: bytes) -> str:
    """Names are NUL-padded to 4 bytes; par2cmdline writes UTF-8, older tools Latin-1."""
    raw = raw.rstrip(b"\0")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _with_unicode_name(file: Par2File, unicode_name: str | None) -> Par2File:
    if not unicode_name:
        return file
    return Par2File(file.file_id, file.md5, file.md5_16k, file.size, unicode_name)
