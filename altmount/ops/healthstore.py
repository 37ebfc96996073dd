"""Per-file health records, kept in their own small LMDB environment.

The metadata record format stays as it is: health results live beside it, in
`<metadata.root_path>/health/` (a separate environment, since one process must
not open the metadata environment twice). Two databases:

* `files`: UTF-8 path -> JSON of a `FileHealth`
* `due`: 8-byte big-endian next-check time (ms) + path -> b"" (what to check next
  is one cursor scan, however many files there are)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lmdb

from altmount.errors import MetadataError
from altmount.metadata.lmdbmap import INITIAL_MAP_SIZE, GrowingMap
from altmount.metadata.store import DEFAULT_MAP_SIZE

__all__ = ["FileHealth", "HealthStore", "FILE_STATES", "REPAIR_STATES", "MAX_RECORDED_MISSING", "file_id"]

#: `unchecked`: known, never checked; then the outcome of the last check.
FILE_STATES = ("unchecked", "healthy", "degraded", "corrupted")
#: running: under way; requested: the arr deleted + blocklisted the file and searches;
#: not_found: no configured arr owns the path; failed: an arr call failed (see detail).
REPAIR_STATES = ("running", "requested", "not_found", "failed")
#: Missing message-ids kept per file; the count is always exact.
MAX_RECORDED_MISSING = 100
_DUE = struct.Struct(">Q")


def file_id(path: str) -> str:
    """A short stable id of a path, for URLs (`/api/health/files/{id}/check`)."""
    return hashlib.sha1(path.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class FileHealth:
    """The last health check of one file and when the next is due (epoch seconds)."""

    path: str
    status: str = "unchecked"
    checked_at: float = 0.0
    next_check: float = 0.0
    segments: int = 0
    sampled: int = 0
    missing_count: int = 0
    missing: tuple[str, ...] = ()
    error: str = ""  #: why the last check was inconclusive ('' when it was not)
    #: What streams found damaged (holes served as zeros, articles whose CRC failed on
    #: every provider), one line each; non-empty means the file wants a repair.
    damage: tuple[str, ...] = ()
    #: The repair through Sonarr/Radarr (altmount.arrs.repair): "" never tried, else one
    #: of REPAIR_STATES; `repair_detail` says what was asked of whom, or what failed.
    repair_state: str = ""
    repair_detail: str = ""
    repair_at: float = 0.0
    repair_attempts: int = 0

    @property
    def wants_repair(self) -> bool:
        """True when a stream found damage (what a repair loop picks up)."""
        return bool(self.damage)

    @property
    def id(self) -> str:
        """Short stable id of the path."""
        return file_id(self.path)

    def as_dict(self) -> dict:
        """Plain data for the API."""
        data = dataclasses.asdict(self)
        data["missing"] = list(self.missing)
        data["damage"] = list(self.damage)
        data["wants_repair"] = self.wants_repair
        data["id"] = self.id
        return data


def _encode(health: FileHealth) -> bytes:
    data = dataclasses.asdict(health)
    data["missing"] = list(health.missing)
    data["damage"] = list(health.damage)
    return json.dumps(data, separators=(",", ":")).encode("utf-8")


def _decode(raw: bytes) -> FileHealth:
    data = json.loads(raw)
    data["missing"] = tuple(data.get("missing", ()))
    data["damage"] = tuple(data.get("damage", ()))
    return FileHealth(**data)


def _due_key(health: FileHealth) -> bytes:
    return _DUE.pack(max(0, int(health.next_check * 1000))) + health.path.encode("utf-8")


class HealthStore:
    """LMDB-backed FileHealth records with a next-check index; reactor-thread use."""

    def __init__(
        self,
        directory: str | Path,
        map_size: int = DEFAULT_MAP_SIZE,
        initial_map_size: int = INITIAL_MAP_SIZE,
    ) -> None:
        """`map_size` is the most the map may grow to (metadata.map_size_mb)."""
        self._root = Path(directory)
        try:
            self._root.mkdir(parents=True, exist_ok=True)
            self._map = GrowingMap(
                self._root,
                f"health store {self._root}",
                limit=map_size,
                initial=initial_map_size,
                max_dbs=2,
                subdir=True,
            )
            self._env = self._map.env
            self._env.reader_check()
            self._files = self._env.open_db(b"files")
            self._due = self._env.open_db(b"due")
        except (OSError, lmdb.Error) as exc:
            raise MetadataError(
                f"health store {self._root} cannot be opened: {exc}; check that "
                "metadata.root_path is writable"
            ) from None

    def close(self) -> None:
        """Close the environment."""
        self._map.close()

    def get(self, path: str) -> FileHealth | None:
        """The record of `path`, or None."""
        with self._map.read() as txn:
            raw = txn.get(path.encode("utf-8"), db=self._files)
        return None if raw is None else _decode(bytes(raw))

    def put(self, health: FileHealth) -> None:
        """Add or replace the record of `health.path` (and its place in the due index)."""
        key = health.path.encode("utf-8")

        def write(txn: lmdb.Transaction) -> None:
            old = txn.get(key, db=self._files)
            if old is not None:
                txn.delete(_due_key(_decode(bytes(old))), db=self._due)
            txn.put(key, _encode(health), db=self._files)
            txn.put(_due_key(health), b"", db=self._due)

        self._map.write(write)

    def mark_damaged(self, path: str, finding: str, missing_id: str = "") -> bool:
        """Record what a stream found wrong with `path` (once per finding): the file
        becomes degraded (unless already corrupted) and wants a repair; `missing_id`
        names an article missing everywhere. False when the finding was known."""
        health = self.get(path) or FileHealth(path)
        if finding in health.damage:
            return False
        missing, count = health.missing, health.missing_count
        if missing_id and missing_id not in missing:
            missing, count = (*missing, missing_id)[:MAX_RECORDED_MISSING], count + 1
        self.put(
            dataclasses.replace(
                health,
                status="corrupted" if health.status == "corrupted" else "degraded",
                missing=missing,
                missing_count=count,
                damage=(*health.damage, finding)[-MAX_RECORDED_MISSING:],
            )
        )
        return True

    def delete(self, path: str) -> None:
        """Forget `path` (its file is gone)."""
        key = path.encode("utf-8")

        def write(txn: lmdb.Transaction) -> None:
            old = txn.get(key, db=self._files)
            if old is not None:
                txn.delete(_due_key(_decode(bytes(old))), db=self._due)
                txn.delete(key, db=self._files)

        self._map.write(write)

    def _tree(self, txn: lmdb.Transaction, path: str) -> list[FileHealth]:
        """The records of `path` and of every file below it."""
        key = path.encode("utf-8")
        found = []
        raw = txn.get(key, db=self._files)
        if raw is not None:
            found.append(_decode(bytes(raw)))
        below = key.rstrip(b"/") + b"/"
        cursor = txn.cursor(db=self._files)
        if cursor.set_range(below):
            for raw_key, value in cursor:
                if not bytes(raw_key).startswith(below):
                    break
                found.append(_decode(bytes(value)))
        return found

    def forget_tree(self, path: str) -> list[str]:
        """Forget `path` and everything below it (a WebDAV DELETE); the paths forgotten."""

        def write(txn: lmdb.Transaction) -> list[str]:
            gone = self._tree(txn, path)
            for health in gone:
                txn.delete(_due_key(health), db=self._due)
                txn.delete(health.path.encode("utf-8"), db=self._files)
            return [h.path for h in gone]

        return self._map.write(write)

    def move_tree(self, src: str, dst: str) -> list[tuple[str, str]]:
        """Carry the records of `src` and everything below it over to `dst` (a WebDAV
        MOVE), checks and damage included; the (old, new) paths moved."""

        def write(txn: lmdb.Transaction) -> list[tuple[str, str]]:
            moved = []
            for health in self._tree(txn, src):
                new = dataclasses.replace(health, path=dst + health.path[len(src) :])
                txn.delete(_due_key(health), db=self._due)
                txn.delete(health.path.encode("utf-8"), db=self._files)
                txn.put(new.path.encode("utf-8"), _encode(new), db=self._files)
                txn.put(_due_key(new), b"", db=self._due)
                moved.append((health.path, new.path))
            return moved

        return self._map.write(write)

    def due(self, now: float, limit: int) -> list[FileHealth]:
        """Up to `limit` records whose next check is at or before `now`, most overdue first."""
        found = []
        bound = _DUE.pack(int(now * 1000))
        with self._map.read() as txn:
            cursor = txn.cursor(db=self._due)
            for raw_key, _ in cursor:
                key = bytes(raw_key)
                if key[: _DUE.size] > bound or len(found) >= limit:
                    break
                raw = txn.get(key[_DUE.size :], db=self._files)
                if raw is not None:
                    found.append(_decode(bytes(raw)))
        return found

    def all(self) -> Iterator[FileHealth]:
        """Every record, in path order."""
        with self._map.read() as txn:
            records = [_decode(bytes(raw)) for _, raw in txn.cursor(db=self._files)]
        yield from records

    def count(self) -> int:
        """How many files have a record."""
        with self._map.read() as txn:
            return int(txn.stat(self._files)["entries"])
