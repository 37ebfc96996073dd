"""The metadata tree shared through PostgreSQL: a log of tree operations, replayed by
every host into its own LMDB store, which stays the local read cache.

Every change (`put_files`, `make_dirs`, `delete`, `move`) is one row of `metadata_log`,
in one global order (`seq`). A writer holds a transaction-scoped advisory lock, brings
its local store up to the end of the log, applies its change locally (which validates
it: a move onto an existing name fails here and nothing is logged), appends the row and
commits. Replaying the log in order therefore reproduces the same tree on every host;
the operation's timestamp travels with it, so directory mtimes agree too.

Reads never touch the database. A host learns of other hosts' changes by `catch_up()`,
called periodically by the server and at once when a lookup misses (a file just imported
elsewhere is served at its first request).

`<root>/replica.json` records which log (the database's id) and how far the local store
has applied it; `<root>/replica.lock` serialises the processes of a host that share the
store. A change applied locally but not known to be committed (a crash, a lost database)
marks the replica dirty: the next catch-up rebuilds it from the log.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from altmount.errors import DatabaseUnavailable, MetadataError, PathError
from altmount.metadata.records import FileRecord, decode_record, encode_record
from altmount.metadata.store import DEFAULT_MAP_SIZE, DirEntry, MetadataStore
from altmount.postgres.connection import (
    connect,
    database_errors,
    describe,
    redact,
    unreachable_errors,
)
from altmount.postgres.schema import ensure_schema

__all__ = ["ReplicatedMetadataStore"]

log = logging.getLogger(__name__)

#: Global writer lock (advisory, per transaction): "altmount metadata".
WRITE_LOCK = 0x616C746D
#: Log rows fetched per query while catching up.
CATCH_UP_BATCH = 500
#: A lookup that misses catches up at most this often (seconds).
MISS_CATCH_UP_INTERVAL = 0.25


class ReplicatedMetadataStore:
    """A `MetadataStore` in `root_path` kept in step with the log in the database at `dsn`."""

    def __init__(
        self,
        root_path: str | Path,
        dsn: str,
        map_size: int = DEFAULT_MAP_SIZE,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dsn = dsn
        self._clock = clock
        self._monotonic = monotonic
        self._op_time = 0.0
        self.local = MetadataStore(root_path, map_size=map_size, clock=lambda: self._op_time)
        self._root = Path(root_path)
        self._state_path = self._root / "replica.json"
        self._lock_path = self._root / "replica.lock"
        self._conn: Any = connect(dsn, "metadata", autocommit=False)
        self._missed_at = -float("inf")
        self._warned = False
        try:
            ensure_schema(self._conn)
            (self.log_id,) = self._conn.execute("SELECT id FROM altmount_log_id").fetchall()[0]
            self._conn.commit()
        except database_errors() as exc:
            raise DatabaseUnavailable(
                f"database.dsn {redact(dsn)}: cannot prepare the metadata log: {describe(exc)}"
            ) from None
        self.catch_up()

    # -- reads: the local store ------------------------------------------------------

    def get_file(self, path: str) -> FileRecord | None:
        """The record of the file at `path`, or None (after catching up once)."""
        record = self.local.get_file(path)
        if record is None and self._catch_up_on_miss():
            record = self.local.get_file(path)
        return record

    def stat(self, path: str) -> DirEntry | None:
        """The entry at `path`, or None (after catching up once)."""
        entry = self.local.stat(path)
        if entry is None and self._catch_up_on_miss():
            entry = self.local.stat(path)
        return entry

    def listdir(self, path: str) -> list[DirEntry]:
        """The entries of directory `path` (caught up once if it is missing)."""
        if path != "/" and self.local.stat(path) is None:
            self._catch_up_on_miss()
        return self.local.listdir(path)

    def walk_files(self, prefix: str = "/") -> Iterator[FileRecord]:
        """Every file at or below `prefix`, in path order."""
        return self.local.walk_files(prefix)

    # -- writes: through the log -----------------------------------------------------

    def put_files(self, records: Iterable[FileRecord]) -> None:
        """Add or replace files (see MetadataStore.put_files), on every host."""
        records = list(records)
        self._write("put", [], [encode_record(record) for record in records])

    def make_dirs(self, paths: Iterable[str]) -> bool:
        """Create directories and their parents (`mkdir -p`); True if any was."""
        paths = list(paths)
        if all((entry := self.local.stat(p)) is not None and entry.is_dir for p in paths):
            return False  # the common case, without the global lock
        return bool(self._write("mkdir", paths, []))

    def delete(self, path: str) -> int:
        """Remove a file or a directory tree; how many files went."""
        return int(self._write("delete", [path], []) or 0)

    def move(self, src: str, dst: str, *, replace: bool = False) -> int:
        """Rename a file or a directory tree to `dst`, which must not exist unless
        `replace`; how many files that replaced (see MetadataStore.move)."""
        return int(self._write("replace" if replace else "move", [src, dst], []) or 0)

    # -- replication -----------------------------------------------------------------

    def catch_up(self) -> int:
        """Apply the log's new rows to the local store; how many were applied.

        Raises DatabaseUnavailable when the database cannot be read."""
        try:
            with self._replica_lock():
                applied = self._catch_up_locked()
            self._conn.commit()  # end the read transaction: no snapshot held between polls
        except database_errors() as exc:
            self._reset_connection()
            raise DatabaseUnavailable(
                f"database.dsn {redact(self._dsn)}: cannot read the metadata log: {describe(exc)}"
            ) from None
        return applied

    def _catch_up_locked(self) -> int:
        state = self._read_state()
        if state.get("log") != self.log_id or state.get("dirty"):
            if state:
                log.warning(
                    "metadata: the local store in %s is rebuilt from the shared log (%s)",
                    self._root,
                    "it belonged to another database" if state.get("log") != self.log_id
                    else "its last change was not known to be saved",
                )
            self._clear_local()
            state = {"log": self.log_id, "seq": 0}
            self._write_state(state)
        applied = 0
        while True:
            rows = self._conn.execute(
                "SELECT seq, at, op, paths, records FROM metadata_log WHERE seq > %s "
                "ORDER BY seq LIMIT %s",
                (state["seq"], CATCH_UP_BATCH),
            ).fetchall()
            for seq, at, op, paths, records in rows:
                self._apply(op, paths, records, at, replay=True)
                state["seq"] = seq
                self._write_state(state)
                applied += 1
            if len(rows) < CATCH_UP_BATCH:
                return applied

    def _catch_up_on_miss(self) -> bool:
        """Catch up if it was not done a moment ago; whether anything was applied."""
        now = self._monotonic()
        if now - self._missed_at < MISS_CATCH_UP_INTERVAL:
            return False
        self._missed_at = now
        try:
            return self.catch_up() > 0
        except DatabaseUnavailable as exc:
            if not self._warned:
                self._warned = True
                log.warning("metadata: %s; serving what this host has", exc)
            return False

    def _write(self, op: str, paths: list[str], records: list[bytes]) -> Any:
        """Log one change: lock, catch up, apply locally, append, commit."""
        at = self._clock()
        try:
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            with self._replica_lock():
                self._catch_up_locked()
                state = self._read_state()
                self._write_state({**state, "dirty": True})
                try:
                    result = self._apply(op, paths, records, at, replay=False)
                except (MetadataError, PathError):
                    self._write_state(state)  # nothing changed locally
                    raise
                seq = self._conn.execute(
                    "INSERT INTO metadata_log (at, op, paths, records) VALUES (%s, %s, %s, %s) "
                    "RETURNING seq",
                    (at, op, paths, records),
                ).fetchone()[0]
                self._conn.commit()
                self._write_state({"log": self.log_id, "seq": seq})
        except (MetadataError, PathError):
            self._conn.rollback()
            raise
        except database_errors() as exc:
            self._reset_connection()
            raise DatabaseUnavailable(
                f"database.dsn {redact(self._dsn)}: cannot save a metadata change ({op}): "
                f"{describe(exc)}"
            ) from None
        return result

    def _apply(self, op: str, paths: list[str], records: list[bytes], at: float,
               *, replay: bool) -> Any:
        """Apply one logged change to the local store. A replayed change that fails
        failed the same way on every host (or was applied before a crash): skipped."""
        self._op_time = at
        try:
            if op == "put":
                return self.local.put_files(decode_record(bytes(raw)) for raw in records)
            if op == "mkdir":
                return self.local.make_dirs(paths)
            if op == "delete":
                return self.local.delete(paths[0])
            if op in ("move", "replace"):
                return self.local.move(paths[0], paths[1], replace=op == "replace")
            raise MetadataError(f"metadata log: unknown operation {op!r} (a newer altmount?)")
        except (MetadataError, PathError) as exc:
            if not replay:
                raise
            log.debug("metadata log: %s %s skipped: %s", op, paths, exc)
            return None

    # -- local state -----------------------------------------------------------------

    @contextmanager
    def _replica_lock(self) -> Iterator[None]:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # drops the lock

    def _read_state(self) -> dict:
        try:
            state = json.loads(self._state_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {"dirty": True}
        return state if isinstance(state, dict) else {"dirty": True}

    def _write_state(self, state: dict) -> None:
        temporary = self._state_path.with_name(f".replica.{secrets.token_hex(4)}.tmp")
        temporary.write_text(json.dumps(state))
        os.replace(temporary, self._state_path)

    def _clear_local(self) -> None:
        self._op_time = self._clock()
        for entry in self.local.listdir("/"):
            self.local.delete(entry.path)

    def _reset_connection(self) -> None:
        """Drop a failed transaction or a lost session; the next call starts afresh."""
        try:
            if self._conn.broken or self._conn.closed:
                self._conn = connect(self._dsn, "metadata", autocommit=False)
            else:
                self._conn.rollback()
        except unreachable_errors():
            pass  # still unreachable; the next call tries again

    def close(self) -> None:
        """Close the database session and the local store."""
        try:
            self._conn.close()
        finally:
            self.local.close()

    def __enter__(self) -> ReplicatedMetadataStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
