"""The disk tier of the segment cache: one file per decoded segment, checked on read.

Layout: `<cache_path>/<2 hex>/<sha256 of the message-id>`, each file a 30-byte header
(magic, decoded length, where the bytes begin in the posted file, CRC32, message-id
length), the message-id, then the decoded bytes as they are, so that a cached range
can go from the file to the socket with `os.sendfile`. Entries are written to
`<cache_path>/tmp/` and renamed into place, so a reader never sees half a file;
there is no fsync: a file a crash left short or empty fails its check on the next
read (size, message-id, CRC32 of the bytes) and is dropped and fetched again, never
served.

`DiskIndex` is the sans-IO part: what is on disk, the least recently used order,
and which entries to evict for size and age. The functions below it do the blocking
file work and run in the cache's I/O threads; `DiskIndex` is only touched on the
reactor thread.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections import OrderedDict
from dataclasses import dataclass

from altmount.errors import CacheEntryDamaged

__all__ = [
    "DiskIndex",
    "Entry",
    "FileSegment",
    "HEADER",
    "NoRoom",
    "check_header",
    "encode_header",
    "entry_name",
    "entry_path",
    "open_entry",
    "read_entry",
    "remove_entries",
    "scan",
    "write_entry",
]

MAGIC = b"AMSEG\x00\x02\x00"
#: magic, decoded length, begin in the posted file, CRC32 of the decoded bytes,
#: message-id length.
HEADER = struct.Struct("<8sQQIH")
_TMP = "tmp"
#: Longest message-id kept on disk (RFC 5536 allows 250 octets; the header field is 16 bits).
_MAX_ID = 1024


class NoRoom(Exception):  # noqa: N818 - a signal between the I/O thread and the cache
    """The file system has less free space than the floor: the entry was not written.
    `args[0]` is how many bytes short of the floor it is."""


def entry_name(message_id: str) -> str:
    """The file name of a message-id's entry (hex, so any message-id is a safe name)."""
    return hashlib.sha256(message_id.encode("utf-8", "surrogateescape")).hexdigest()


def entry_path(root: str, name: str) -> str:
    """Where the entry `name` lives under `root`."""
    return os.path.join(root, name[:2], name)


def encode_header(message_id: str, length: int, begin: int, crc: int) -> bytes:
    """The header and message-id that precede the decoded bytes."""
    raw_id = message_id.encode("utf-8", "surrogateescape")
    return HEADER.pack(MAGIC, length, begin, crc & 0xFFFFFFFF, len(raw_id)) + raw_id


@dataclass(frozen=True, slots=True)
class EntryHead:
    """What an entry's header says."""

    offset: int  #: where the decoded bytes start in the file
    length: int  #: decoded bytes
    begin: int  #: where they begin in the posted file
    crc: int  #: CRC32 of the decoded bytes


def check_header(head: bytes, message_id: str, file_size: int) -> EntryHead:
    """What the header `head` (the file's first bytes) says; raises CacheEntryDamaged when
    it does not describe `message_id` in a file of `file_size` bytes."""
    if len(head) < HEADER.size:
        raise CacheEntryDamaged(f"cache entry of <{message_id}>: truncated header")
    magic, length, begin, crc, id_length = HEADER.unpack_from(head)
    offset = HEADER.size + id_length
    if magic != MAGIC:
        raise CacheEntryDamaged(f"cache entry of <{message_id}>: not a cache file")
    if head[HEADER.size : offset] != message_id.encode("utf-8", "surrogateescape"):
        raise CacheEntryDamaged(f"cache entry of <{message_id}>: holds another message-id")
    if file_size != offset + length:
        raise CacheEntryDamaged(
            f"cache entry of <{message_id}>: {file_size} bytes, the header says {offset + length}"
        )
    return EntryHead(offset, length, begin, crc)


class FileSegment:
    """An entry's decoded bytes as an open file, for `os.sendfile`: `fd`, where the bytes
    start in the file (`offset`), how many (`length`, also its `len`) and where they begin
    in the posted file (`begin`). Whoever holds it closes it; a dropped one is closed when
    collected, so an error path can never leak the descriptor."""

    __slots__ = ("fd", "offset", "length", "begin")

    def __init__(self, fd: int, offset: int, length: int, begin: int) -> None:
        self.fd = fd
        self.offset = offset
        self.length = length
        self.begin = begin

    def __len__(self) -> int:
        return self.length

    def read(self, start: int, length: int) -> bytes:
        """`length` decoded bytes from `start` (for a consumer that cannot sendfile)."""
        return os.pread(self.fd, length, self.offset + start)

    def close(self) -> None:
        """Close the descriptor (again is fine)."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __del__(self) -> None:
        self.close()


@dataclass(slots=True)
class Entry:
    """One file of the tier as the index knows it."""

    size: int  #: bytes of the file (header included)
    written: float  #: epoch seconds it was written (its age counts from here)


class DiskIndex:
    """The entries on disk in least-recently-used order, and the eviction rules. No I/O."""

    def __init__(self, max_bytes: int, expiry_seconds: float) -> None:
        self.max_bytes = max_bytes
        self.expiry_seconds = expiry_seconds
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self.size = 0

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """Every entry name (least recently used first)."""
        return list(self._entries)

    def add(self, name: str, size: int, written: float) -> None:
        """Record an entry (as the most recently used)."""
        self.remove(name)
        self._entries[name] = Entry(size, written)
        self.size += size

    def merge(self, name: str, size: int, written: float) -> None:
        """Record an entry found by a scan as the least recently used, unless known."""
        if name in self._entries:
            return
        self._entries[name] = Entry(size, written)
        self._entries.move_to_end(name, last=False)
        self.size += size

    def remove(self, name: str) -> bool:
        """Forget an entry; False if it was not known."""
        entry = self._entries.pop(name, None)
        if entry is None:
            return False
        self.size -= entry.size
        return True

    def use(self, name: str, now: float) -> bool:
        """Mark an entry as used now; False when it is unknown or expired (then forgotten:
        the caller deletes the file)."""
        entry = self._entries.get(name)
        if entry is None:
            return False
        if now - entry.written > self.expiry_seconds:
            self.remove(name)
            return False
        self._entries.move_to_end(name)
        return True

    def expired(self, now: float) -> list[str]:
        """Forget and return every entry older than the expiry (a periodic sweep: O(n))."""
        victims = [
            name for name, e in self._entries.items() if now - e.written > self.expiry_seconds
        ]
        for name in victims:
            self.remove(name)
        return victims

    def evict(self, incoming: int = 0) -> list[str]:
        """Forget and return the least recently used entries to delete so that `incoming`
        more bytes fit under the size limit."""
        victims = []
        entries = self._entries
        while entries and self.size + incoming > self.max_bytes:
            name, entry = entries.popitem(last=False)
            self.size -= entry.size
            victims.append(name)
        return victims


# -- blocking file work (runs in the cache's I/O threads) ----------------------------


def scan(root: str) -> list[tuple[str, int, float]]:
    """(name, size, mtime) of every entry under `root`, oldest first; creates the folders
    and deletes what an interrupted write left in tmp/. Raises OSError when `root` is
    unusable."""
    os.makedirs(os.path.join(root, _TMP), exist_ok=True)
    for leftover in os.scandir(os.path.join(root, _TMP)):
        try:
            os.unlink(leftover.path)
        except OSError:
            pass
    found = []
    for bucket in os.scandir(root):
        if len(bucket.name) != 2 or not bucket.is_dir(follow_symlinks=False):
            continue
        for item in os.scandir(bucket.path):
            if len(item.name) == 64 and item.name.startswith(bucket.name):
                try:
                    stat = item.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # evicted by another process meanwhile
                found.append((item.name, stat.st_size, stat.st_mtime))
    found.sort(key=lambda item: item[2])
    return found


def free_bytes(root: str) -> int:
    """Bytes an unprivileged writer may still use on the file system of `root`."""
    disk = os.statvfs(root)
    return disk.f_bavail * disk.f_frsize


def write_entry(
    root: str, message_id: str, data: bytes, begin: int, min_free: int
) -> tuple[str, int]:
    """Write one entry atomically; returns (name, file size). Raises NoRoom below the
    free-space floor, ValueError for a message-id too long to keep, OSError when the
    disk fails."""
    raw_id = message_id.encode("utf-8", "surrogateescape")
    if len(raw_id) > _MAX_ID:
        raise ValueError(f"message-id of {len(raw_id)} bytes is too long to cache")
    name = entry_name(message_id)
    head = encode_header(message_id, len(data), begin, zlib.crc32(data))
    size = len(head) + len(data)
    short = min_free + size - free_bytes(root)
    if short > 0:
        raise NoRoom(short)
    final = entry_path(root, name)
    temp = os.path.join(root, _TMP, f"{name}.{os.getpid()}.{id(data):x}")
    os.makedirs(os.path.dirname(final), exist_ok=True)
    try:
        with open(temp, "wb", buffering=0) as out:
            out.write(head)
            view = memoryview(data)
            while view:
                view = view[out.write(view) :]
        os.replace(temp, final)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    return name, size


def read_entry(root: str, message_id: str, check: bool = True) -> tuple[bytes, int]:
    """(decoded bytes, begin) of an entry, its CRC32 checked unless `check` is False.
    Raises FileNotFoundError (gone), CacheEntryDamaged (the file fails its check) or
    OSError (the disk fails)."""
    path = entry_path(root, entry_name(message_id))
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        head = check_header(os.pread(fd, HEADER.size + _MAX_ID, 0), message_id, size)
        data = os.pread(fd, head.length, head.offset)
    finally:
        os.close(fd)
    if len(data) != head.length:
        raise CacheEntryDamaged(f"cache entry of <{message_id}>: changed while read")
    if check and zlib.crc32(data) != head.crc:
        raise CacheEntryDamaged(f"cache entry of <{message_id}>: CRC32 mismatch")
    return data, head.begin


def open_entry(root: str, message_id: str) -> FileSegment:
    """An entry whose CRC32 was checked before, opened for sendfile (its header checked).
    Raises FileNotFoundError (gone), CacheEntryDamaged or OSError as `read_entry` does."""
    fd = os.open(entry_path(root, entry_name(message_id)), os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        head = check_header(os.pread(fd, HEADER.size + _MAX_ID, 0), message_id, size)
    except BaseException:
        os.close(fd)
        raise
    return FileSegment(fd, head.offset, head.length, head.begin)


def remove_entries(root: str, names: list[str]) -> None:
    """Delete entry files (missing ones are fine)."""
    for name in names:
        try:
            os.unlink(entry_path(root, name))
        except FileNotFoundError:
            pass
