"""The metadata store: the virtual tree and its file records in one LMDB environment.

Two named databases:

* `files`: UTF-8 path -> `encode_record(FileRecord)`
* `dirs`: parent path + NUL + child name -> `_ENTRY` (is_dir, size, mtime)

NUL sorts before every byte a name can hold, so the children of a directory
are one contiguous key range (a listing is one cursor scan), and all entries
below `/a` are the two ranges `/a\\0...` and `/a/...`. The root's own entry
(its mtime) lives under the key `\\0`, which no scan prefix can match.

Several processes may open the same store (`altmount import` writes while
`altmount serve` reads): LMDB serialises writers with its lock file, and every
read here opens its own short read transaction, so it sees whatever was
committed before it began. Do not open the same directory twice in one process.
"""

from __future__ import annotations

import dataclasses
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import lmdb

from altmount.errors import MetadataError, PathError
from altmount.metadata.lmdbmap import INITIAL_MAP_SIZE, GrowingMap
from altmount.metadata.records import FileRecord, SegmentTable, decode_record, encode_record

__all__ = ["DirEntry", "MetadataStore", "DEFAULT_MAP_SIZE"]

#: The largest the map may grow to (metadata.map_size_mb); it starts at INITIAL_MAP_SIZE.
DEFAULT_MAP_SIZE = 8 << 30
#: Readers are slots in the lock file, one per live read transaction in any
#: process; web threads plus importer processes stay far below this.
MAX_READERS = 1024
#: Records yielded per read transaction by `walk_files`, so a slow consumer
#: does not pin an old snapshot (and stop LMDB from reusing pages).
WALK_BATCH = 256

T = TypeVar("T")

_ENTRY = struct.Struct("<?qd")
_ROOT_KEY = b"\x00"


@dataclass(frozen=True, slots=True)
class DirEntry:
    """One name in the virtual tree: a directory or a file."""

    name: str
    path: str
    is_dir: bool
    size: int
    mtime: float


class MetadataStore:
    """The LMDB-backed virtual tree; see the module docstring for the layout."""

    def __init__(
        self,
        root_path: str | Path,
        map_size: int = DEFAULT_MAP_SIZE,
        readonly: bool = False,
        clock: Callable[[], float] = time.time,
        initial_map_size: int = INITIAL_MAP_SIZE,
    ) -> None:
        self._root = Path(root_path)
        self._readonly = readonly
        self._clock = clock
        if not readonly:
            try:
                self._root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise MetadataError(
                    f"metadata store {self._root} cannot be created: {exc.strerror}; "
                    "set metadata.root_path to a writable directory"
                ) from None
        try:
            self._map = GrowingMap(
                self._root,
                f"metadata store {self._root}",
                limit=map_size,
                initial=initial_map_size,
                max_dbs=4,
                max_readers=MAX_READERS,
                subdir=True,
                lock=True,
                readonly=readonly,
                create=not readonly,
            )
            self._env = self._map.env
        except lmdb.Error as exc:
            raise MetadataError(
                f"metadata store {self._root} cannot be opened: {exc}; check that "
                "metadata.root_path exists and is writable by this user"
            ) from None
        try:
            # Free reader slots left behind by crashed processes.
            self._env.reader_check()
            # Without txn, py-lmdb opens the handles in a transaction it commits
            # (a read one when read-only), so they stay valid for later ones.
            self._files = self._env.open_db(b"files", create=not readonly)
            self._dirs = self._env.open_db(b"dirs", create=not readonly)
        except lmdb.Error as exc:
            self._map.close()
            raise MetadataError(f"metadata store {self._root} cannot be opened: {exc}") from None
        self._max_key = self._env.max_key_size()

    # -- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        """Close the environment; the store is unusable afterwards."""
        self._env.close()

    def __enter__(self) -> MetadataStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- reads -------------------------------------------------------------------

    def get_file(self, path: str) -> FileRecord | None:
        """The record of the file at `path`, or None if there is no such file."""
        key = self._key(path)
        with self._read() as txn:
            raw = _get(txn, key, self._files)
        return None if raw is None else decode_record(raw)

    def stat(self, path: str) -> DirEntry | None:
        """The entry at `path` (file or directory), or None; "/" always exists."""
        key = self._key(path)
        with self._read() as txn:
            raw = _get(txn, _ROOT_KEY if path == "/" else self._entry_key(path), self._dirs)
        if path == "/":
            mtime = _ENTRY.unpack(raw)[2] if raw is not None else 0.0
            return DirEntry(name="", path="/", is_dir=True, size=0, mtime=mtime)
        if raw is None:
            return None
        is_dir, size, mtime = _ENTRY.unpack(raw)
        name = key.rpartition(b"/")[2].decode("utf-8")
        return DirEntry(name=name, path=path, is_dir=is_dir, size=size, mtime=mtime)

    def listdir(self, path: str) -> list[DirEntry]:
        """The entries of directory `path`, sorted by name."""
        prefix = self._key(path) + b"\x00"
        base = "" if path == "/" else path
        entries = []
        with self._read() as txn:
            if path != "/":
                raw = _get(txn, self._entry_key(path), self._dirs)
                if raw is None or not _ENTRY.unpack(raw)[0]:
                    reason = "no such directory" if raw is None else "not a directory"
                    raise MetadataError(f"cannot list {path}: {reason}")
            cursor = txn.cursor(db=self._dirs)
            if cursor.set_range(prefix):
                for raw_key, value in cursor:
                    key = bytes(raw_key)  # bytes already (no buffers=True); typed for mypy
                    if not key.startswith(prefix):
                        break
                    name = key[len(prefix) :].decode("utf-8")
                    is_dir, size, mtime = _ENTRY.unpack(value)
                    entries.append(DirEntry(name, f"{base}/{name}", is_dir, size, mtime))
        return entries

    def walk_files(self, prefix: str = "/") -> Iterator[FileRecord]:
        """Every file at or below `prefix`, in path order."""
        key = self._key(prefix)
        if prefix != "/":
            record = self.get_file(prefix)
            if record is not None:
                yield record
                return
        scan = b"/" if prefix == "/" else key + b"/"
        after: bytes | None = None
        while True:
            batch: list[bytes] = []
            with self._read() as txn:
                cursor = txn.cursor(db=self._files)
                positioned = cursor.set_range(after or scan)
                if positioned and _ckey(cursor) == after:
                    positioned = cursor.next()
                while positioned and len(batch) < WALK_BATCH and _ckey(cursor).startswith(scan):
                    after = _ckey(cursor)
                    batch.append(_cvalue(cursor))
                    positioned = cursor.next()
            yield from (decode_record(raw) for raw in batch)
            if len(batch) < WALK_BATCH:
                return

    # -- writes ------------------------------------------------------------------

    def put_files(self, records: Iterable[FileRecord]) -> None:
        """Add or replace files, creating parent directories; all or nothing."""
        records = list(records)  # a write may run twice (the map grew in between)
        now = self._clock()

        def write(txn: lmdb.Transaction) -> None:
            known_dirs = {"/"}
            touched: set[str] = set()
            for record in records:
                key = self._key(record.path)
                if record.path == "/":
                    raise PathError("/ is a directory, not a file")
                parent = _parent(record.path)
                self._ensure_dirs(txn, parent, now, known_dirs, touched)
                entry_key = self._entry_key(record.path)
                old = _get(txn, entry_key, self._dirs)
                if old is not None and _ENTRY.unpack(old)[0]:
                    raise MetadataError(f"cannot store file {record.path}: it is a directory")
                txn.put(key, encode_record(record), db=self._files)
                txn.put(entry_key, _ENTRY.pack(False, record.size, record.mtime), db=self._dirs)
                touched.add(parent)
            for directory in touched:
                self._touch(txn, directory, now)

        return self._write(write)

    def learn_offsets(self, path: str, table: SegmentTable) -> bool:
        """Merge the known offsets of `table` into the stored record of `path` (a file
        of uneven parts read since its import); False when the record is gone or now
        holds other segments. Several processes may learn different parts: the stored
        knowledge is the union. MetadataError when the two contradict each other."""
        key = self._key(path)

        def write(txn: lmdb.Transaction) -> bool:
            raw = _get(txn, key, self._files)
            if raw is None:
                return False
            record = decode_record(raw)
            stored = record.segments
            if stored.message_ids != table.message_ids:
                return False
            merged = stored.learn(table.known_points())
            if merged != stored:
                txn.put(
                    key, encode_record(dataclasses.replace(record, segments=merged)), db=self._files
                )
            return True

        return self._write(write)

    def make_dirs(self, paths: Iterable[str]) -> bool:
        """Create these directories and their parents where missing (`mkdir -p`);
        True if any was. Fails with MetadataError where a file is in the way."""
        wanted = [path for path in paths if path != "/"]
        if all((entry := self.stat(path)) is not None and entry.is_dir for path in wanted):
            return False  # the common case, without taking the writer lock
        now = self._clock()

        def write(txn: lmdb.Transaction) -> bool:
            touched: set[str] = set()
            for path in wanted:
                self._ensure_dirs(txn, path, now, {"/"}, touched)
            for directory in touched:
                self._touch(txn, directory, now)
            return bool(touched)

        return self._write(write)

    def delete(self, path: str) -> int:
        """Remove a file or a directory tree; return how many files went."""
        key = self._key(path)
        if path == "/":
            raise PathError("the root directory cannot be deleted")

        def write(txn: lmdb.Transaction) -> int:
            removed = self._delete_in(txn, path, key)
            if removed >= 0:
                self._touch(txn, _parent(path), self._clock())
            return max(removed, 0)

        return self._write(write)

    def move(self, src: str, dst: str, *, replace: bool = False) -> int:
        """Rename a file or a whole directory tree to `dst`, in one transaction.

        `dst` must not exist unless `replace`, when whatever is there goes first (in
        the same transaction, so a failure leaves both as they were); returns how
        many files that replaced."""
        src_key, dst_key = self._key(src), self._key(dst)
        if "/" in (src, dst):
            raise PathError("the root directory cannot be moved or replaced")
        if dst == src or dst.startswith(src + "/"):
            raise MetadataError(f"cannot move {src} into itself ({dst})")
        now = self._clock()

        def write(txn: lmdb.Transaction) -> int:
            raw = _get(txn, self._entry_key(src), self._dirs)
            if raw is None:
                raise MetadataError(f"cannot move {src}: no such file or directory")
            replaced = 0
            if _get(txn, self._entry_key(dst), self._dirs) is not None:
                if not replace:
                    raise MetadataError(f"cannot move {src} to {dst}: {dst} already exists")
                replaced = self._delete_in(txn, dst, dst_key)
            touched = {_parent(src), _parent(dst)}
            self._ensure_dirs(txn, _parent(dst), now, {"/"}, touched)
            if _ENTRY.unpack(raw)[0]:
                files = _pop_range(txn, self._files, src_key + b"/")
                for old_key, value in files:
                    self._put_moved_record(txn, dst_key + old_key[len(src_key) :], value)
                for prefix in (src_key + b"\x00", src_key + b"/"):
                    for old_key, value in _pop_range(txn, self._dirs, prefix):
                        new_key = dst_key + old_key[len(src_key) :]
                        self._check_key_length(new_key, dst)
                        txn.put(new_key, value, db=self._dirs)
            else:
                moved = txn.pop(src_key, db=self._files)
                if moved is not None:
                    self._put_moved_record(txn, dst_key, bytes(moved))
            txn.delete(self._entry_key(src), db=self._dirs)
            txn.put(self._entry_key(dst), raw, db=self._dirs)
            for directory in touched:
                self._touch(txn, directory, now)
            return replaced

        return self._write(write)

    # -- helpers -----------------------------------------------------------------

    def _delete_in(self, txn: lmdb.Transaction, path: str, key: bytes) -> int:
        """Remove `path` (a file or a tree) in `txn`; files removed, -1 if nothing is there."""
        entry_key = self._entry_key(path)
        raw = _get(txn, entry_key, self._dirs)
        if raw is None:
            return -1
        if _ENTRY.unpack(raw)[0]:
            removed = _delete_range(txn, self._files, key + b"/")
            _delete_range(txn, self._dirs, key + b"\x00")
            _delete_range(txn, self._dirs, key + b"/")
        else:
            removed = int(txn.delete(key, db=self._files))
        txn.delete(entry_key, db=self._dirs)
        return removed

    def _read(self) -> AbstractContextManager[lmdb.Transaction]:
        return self._map.read()

    def _write(self, body: Callable[[lmdb.Transaction], T]) -> T:
        if self._readonly:
            raise MetadataError(f"metadata store {self._root} is open read-only")
        return self._map.write(body)

    def _key(self, path: str) -> bytes:
        """The UTF-8 key of a valid absolute path; PathError otherwise."""
        if not isinstance(path, str) or not path.startswith("/") or "\x00" in path:
            raise PathError(f"invalid path {path!r}: must be absolute and free of NUL")
        if path != "/":
            for part in path[1:].split("/"):
                if part in ("", ".", ".."):
                    raise PathError(f"invalid path {path!r}: empty, '.' or '..' component")
        try:
            key = path.encode("utf-8")
        except UnicodeEncodeError:
            raise PathError(f"invalid path {path!r}: not encodable as UTF-8") from None
        self._check_key_length(key, path)
        return key

    def _check_key_length(self, key: bytes, path: str) -> None:
        if len(key) > self._max_key:
            raise PathError(
                f"path {path[:60]!r}... is {len(key)} bytes; the metadata store takes "
                f"at most {self._max_key}"
            )

    @staticmethod
    def _entry_key(path: str) -> bytes:
        """Key of `path` in the `dirs` database: parent + NUL + name."""
        parent, _, name = path.rpartition("/")
        return (parent or "/").encode("utf-8") + b"\x00" + name.encode("utf-8")

    def _ensure_dirs(
        self,
        txn: lmdb.Transaction,
        directory: str,
        now: float,
        known: set[str],
        touched: set[str],
    ) -> None:
        """Create `directory` and its missing ancestors; fail if one is a file."""
        missing = []
        while directory not in known:
            missing.append(directory)
            directory = _parent(directory)
        for path in reversed(missing):
            key = self._entry_key(path)
            raw = _get(txn, key, self._dirs)
            if raw is None:
                txn.put(key, _ENTRY.pack(True, 0, now), db=self._dirs)
                touched.add(_parent(path))
            elif not _ENTRY.unpack(raw)[0]:
                raise MetadataError(f"cannot create directory {path}: a file is there")
            known.add(path)

    def _touch(self, txn: lmdb.Transaction, directory: str, now: float) -> None:
        """Set a directory's mtime to `now`, as POSIX does when its entries change."""
        key = _ROOT_KEY if directory == "/" else self._entry_key(directory)
        if directory == "/" or _get(txn, key, self._dirs) is not None:
            txn.put(key, _ENTRY.pack(True, 0, now), db=self._dirs)

    def _put_moved_record(self, txn: lmdb.Transaction, key: bytes, value: bytes) -> None:
        path = key.decode("utf-8")
        self._check_key_length(key, path)
        record = dataclasses.replace(decode_record(value), path=path)
        txn.put(key, encode_record(record), db=self._files)


# Transactions here never ask for buffers=True, so lmdb hands out bytes; these
# helpers say so to the type checker (bytes() of a bytes object is that object).


def _get(txn: lmdb.Transaction, key: bytes, db: lmdb._Database) -> bytes | None:
    raw = txn.get(key, db=db)
    return None if raw is None else bytes(raw)


def _ckey(cursor: lmdb.Cursor) -> bytes:
    return bytes(cursor.key())


def _cvalue(cursor: lmdb.Cursor) -> bytes:
    return bytes(cursor.value())


def _parent(path: str) -> str:
    return path.rpartition("/")[0] or "/"


def _delete_range(txn: lmdb.Transaction, db: lmdb._Database, prefix: bytes) -> int:
    """Delete every key starting with `prefix`; return how many."""
    cursor = txn.cursor(db=db)
    count = 0
    if cursor.set_range(prefix):
        # delete() moves to the next key; an exhausted cursor's key() is b"".
        while _ckey(cursor).startswith(prefix):
            cursor.delete()
            count += 1
    return count


def _pop_range(
    txn: lmdb.Transaction, db: lmdb._Database, prefix: bytes
) -> list[tuple[bytes, bytes]]:
    """Delete every key starting with `prefix`; return the removed items."""
    cursor = txn.cursor(db=db)
    items = []
    if cursor.set_range(prefix):
        while _ckey(cursor).startswith(prefix):
            items.append((_ckey(cursor), _cvalue(cursor)))
            cursor.delete()
    return items
