"""The queue database: items, their NZBs and settings in SQLite (`database.path`).

Synchronous stdlib sqlite3; every method is its own transaction. Writers take
the write lock up front (BEGIN IMMEDIATE), so read-check-write sequences are
atomic even with several altmount processes on one file. `QueueService` calls
these from one thread; the connection is opened with check_same_thread=False
only because it is created on another thread than the one that then uses it.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from altmount.errors import QueueError, QueueItemNotFound
from altmount.queue._schema import (
    COLUMNS,
    MIGRATIONS,
    SCHEMA_VERSION,
    SORT_KEYS,
    item_from_row,
)
from altmount.queue._workers import WorkerLiveness
from altmount.queue.model import (
    SOURCES,
    Priority,
    QueueItem,
    State,
    check_transition,
    new_nzo_id,
)

__all__ = ["QueueStore", "MIGRATIONS", "SCHEMA_VERSION", "SORT_KEYS"]

#: Wait this long for another process's write lock before giving up; a write
#: here is a millisecond, so 5 s only passes when something is badly stuck.
BUSY_TIMEOUT_MS = 5000
#: 16 MiB page cache (negative = KiB): the whole queue of a busy install fits.
CACHE_SIZE_KIB = 16 * 1024
#: Memory-map up to 64 MiB of the file: reads skip a copy through the page cache.
MMAP_SIZE = 64 * 1024 * 1024
#: NZBs are XML with long repeated message-id stems: level 6 shrinks them ~4x
#: at ~50 MB/s, against 1 for speed and 9 for a few percent more.
NZB_COMPRESSION_LEVEL = 6


def _descending(order: str) -> str:
    """Reverse every term of an ORDER BY list."""
    terms = []
    for term in order.split(", "):
        if term.endswith(" DESC"):
            terms.append(term[: -len(" DESC")])
        else:
            terms.append(term + " DESC")
    return ", ".join(terms)


class QueueStore(WorkerLiveness):
    """The queue tables in one SQLite file; see the module docstring (and
    `altmount.queue._workers` for heartbeats and recovery)."""

    #: `list(sort=...)` keys → ORDER BY, in this database's words.
    sort_keys = SORT_KEYS

    def __init__(
        self, path: str | Path, *, max_attempts: int = 3, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(path)
        self._max_attempts = max_attempts
        self._clock = clock
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE below).
            self._conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
            )
            self._pragmas()
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise QueueError(
                f"database.path {self.path}: cannot open the queue database: {exc}"
            ) from None

    def _pragmas(self) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # WAL: readers (the web API) never wait for the processor's writes.
        conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL under WAL is durable against a process crash; only a power cut may
        # lose the last transactions, which for a queue means re-adding an NZB.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA cache_size = -{CACHE_SIZE_KIB}")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute(f"PRAGMA mmap_size = {MMAP_SIZE}")
        conn.execute("PRAGMA foreign_keys = ON")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding the lock from its first statement."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self._write() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            version = 0 if row is None else row[0]
            if version > SCHEMA_VERSION:
                raise QueueError(
                    f"database.path {self.path}: schema version {version} is newer than this "
                    f"altmount knows ({SCHEMA_VERSION}); upgrade altmount or use another file"
                )
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    conn.execute(statement)
            if row is None:
                conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            else:
                conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    @property
    def schema_version(self) -> int:
        """The schema version of the open file."""
        return self._conn.execute("SELECT version FROM schema_version").fetchone()[0]

    # -- items ---------------------------------------------------------------------

    def enqueue(
        self,
        nzb: bytes,
        nzb_name: str,
        category: str,
        priority: Priority,
        source: str,
        paused: bool = False,
        size: int = 0,
    ) -> QueueItem:
        """Insert a pending (or paused) item with its NZB, compressed; return it.

        `size` is the NZB's announced bytes until the import records the exposed ones."""
        if source not in SOURCES:
            raise QueueError(f"unknown queue item source {source!r}")
        blob = zlib.compress(nzb, NZB_COMPRESSION_LEVEL)
        now = self._clock()
        state = State.PAUSED if paused else State.PENDING
        with self._write() as conn:
            row = conn.execute(
                "INSERT INTO queue_items (nzo_id, nzb_name, category, priority, state, "
                "created_at, updated_at, source, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                f"RETURNING {COLUMNS}",
                (new_nzo_id(), nzb_name, category, int(priority), state, now, now, source, size),
            ).fetchone()
            conn.execute("INSERT INTO queue_nzbs (item_id, data) VALUES (?, ?)", (row[0], blob))
        return item_from_row(row)

    def claim(self, worker: str) -> QueueItem | None:
        """Take the next pending item (priority, then age) for `worker`, or None.

        One UPDATE … RETURNING, atomic across connections and processes, in the same
        transaction as `worker`'s heartbeat: no other process can see the item held
        by a worker that has not beaten yet and take it back.
        """
        now = self._clock()
        with self._write() as conn:
            row = conn.execute(
                "UPDATE queue_items SET state = 'processing', worker = ?, "
                "attempts = attempts + 1, started_at = ?, updated_at = ?, error = '' "
                "WHERE state = 'pending' AND id = (SELECT id FROM queue_items "
                # Without statistics the planner prefers queue_items_state and sorts every
                # pending row; the partial index is already in claim order (2k → 20k claims/s
                # at 5000 pending).
                "INDEXED BY queue_items_claim WHERE state = "
                f"'pending' ORDER BY {SORT_KEYS['queue']} LIMIT 1) RETURNING {COLUMNS}",
                (worker, now, now),
            ).fetchone()
            if row is not None:
                self._beat(conn, worker, now)
        return None if row is None else item_from_row(row)

    def _change(
        self,
        item_id: int,
        new: State,
        allowed_from: Iterable[State] | None = None,
        **columns: object,
    ) -> QueueItem:
        """Move an item to `new` (checked against TRANSITIONS), setting `columns`."""
        with self._write() as conn:
            return self._apply(
                conn, item_id, self._state(conn, item_id)[0], new, allowed_from, columns
            )

    @staticmethod
    def _state(conn: sqlite3.Connection, item_id: int) -> tuple[State, int]:
        """The item's state and attempts, inside the caller's transaction."""
        row = conn.execute(
            "SELECT state, attempts FROM queue_items WHERE id = ?", (item_id,)
        ).fetchone()
        if row is None:
            raise QueueItemNotFound(f"no queue item with id {item_id}")
        return State(row[0]), row[1]

    @staticmethod
    def _held(conn: sqlite3.Connection, item_id: int, worker: str) -> tuple[State, int]:
        """Like `_state`, for an outcome reported by `worker`: refused if another worker
        holds the item now (this one was taken for dead and the item claimed again)."""
        row = conn.execute(
            "SELECT state, attempts, worker FROM queue_items WHERE id = ?", (item_id,)
        ).fetchone()
        if row is None:
            raise QueueItemNotFound(f"no queue item with id {item_id}")
        state, attempts, holder = State(row[0]), row[1], row[2]
        if state == State.PROCESSING and holder != worker:
            raise QueueError(
                f"queue item {item_id} is being imported by {holder} now; "
                f"the outcome from {worker} is not recorded"
            )
        if state == State.PENDING and holder == worker:
            raise QueueError(
                f"queue item {item_id} was given back to the queue (its worker {worker} was "
                "taken for dead); the outcome is not recorded"
            )
        return state, attempts

    def _apply(
        self,
        conn: sqlite3.Connection,
        item_id: int,
        old: State,
        new: State,
        allowed_from: Iterable[State] | None,
        columns: dict[str, object],
    ) -> QueueItem:
        if allowed_from is not None and old not in allowed_from:
            raise QueueError(f"queue item {item_id} is {old}; it cannot become {new} this way")
        check_transition(old, new, item_id)
        assignments = {"state": str(new), "updated_at": self._clock(), **columns}
        sql = ", ".join(f"{name} = ?" for name in assignments)
        row = conn.execute(
            f"UPDATE queue_items SET {sql} WHERE id = ? RETURNING {COLUMNS}",
            (*assignments.values(), item_id),
        ).fetchone()
        return item_from_row(row)

    def complete(self, item_id: int, target_path: str, size: int, *, worker: str) -> QueueItem:
        """`worker`'s processing item imported: completed with its release folder and size."""
        with self._write() as conn:
            old, _ = self._held(conn, item_id, worker)
            return self._apply(
                conn,
                item_id,
                old,
                State.COMPLETED,
                None,
                {
                    "target_path": target_path,
                    "size": size,
                    "completed_at": self._clock(),
                    "error": "",
                },
            )

    def fail(self, item_id: int, error: str, transient: bool, *, worker: str) -> QueueItem:
        """`worker`'s processing item failed to import: back to pending if `transient`
        and attempts remain, else failed; `error` is kept either way."""
        with self._write() as conn:
            old, attempts = self._held(conn, item_id, worker)
            if transient and attempts < self._max_attempts:
                return self._apply(
                    conn, item_id, old, State.PENDING, (State.PROCESSING,), {"error": error}
                )
            return self._apply(
                conn,
                item_id,
                old,
                State.FAILED,
                None,
                {"error": error, "completed_at": self._clock()},
            )

    def release(self, item_id: int, *, worker: str) -> QueueItem:
        """Give `worker`'s processing item back to pending without counting the attempt
        (shutdown)."""
        with self._write() as conn:
            old, attempts = self._held(conn, item_id, worker)
            return self._apply(
                conn,
                item_id,
                old,
                State.PENDING,
                (State.PROCESSING,),
                {"attempts": max(attempts - 1, 0)},
            )

    def retry(self, item_id: int) -> QueueItem:
        """A failed or cancelled item goes back to pending with its attempts reset."""
        return self._change(
            item_id,
            State.PENDING,
            allowed_from=(State.FAILED, State.CANCELLED),
            attempts=0,
            error="",
            completed_at=None,
        )

    def pause(self, item_id: int) -> QueueItem:
        """A pending item is held until resumed."""
        return self._change(item_id, State.PAUSED)

    def resume(self, item_id: int) -> QueueItem:
        """A paused item goes back to pending."""
        return self._change(item_id, State.PENDING, allowed_from=(State.PAUSED,))

    def cancel(self, item_id: int) -> QueueItem:
        """A pending, paused or processing item is cancelled (kept in history)."""
        return self._change(item_id, State.CANCELLED, completed_at=self._clock())

    def delete(self, item_id: int) -> None:
        """Remove the item and its NZB, whatever its state."""
        with self._write() as conn:
            conn.execute("DELETE FROM queue_nzbs WHERE item_id = ?", (item_id,))
            gone = conn.execute("DELETE FROM queue_items WHERE id = ?", (item_id,)).rowcount
        if not gone:
            raise QueueItemNotFound(f"no queue item with id {item_id}")

    def get(self, item_id: int) -> QueueItem:
        """The item with this id, or QueueItemNotFound."""
        return self._one("id", item_id, f"id {item_id}")

    def get_by_nzo(self, nzo_id: str) -> QueueItem:
        """The item with this SABnzbd nzo_id, or QueueItemNotFound."""
        return self._one("nzo_id", nzo_id, f"nzo_id {nzo_id!r}")

    def _one(self, column: str, value: object, label: str) -> QueueItem:
        # `column` is one of our own names, never user input.
        row = self._conn.execute(
            f"SELECT {COLUMNS} FROM queue_items WHERE {column} = ?", (value,)
        ).fetchone()
        if row is None:
            raise QueueItemNotFound(f"no queue item with {label}")
        return item_from_row(row)

    def nzb(self, item_id: int) -> bytes:
        """The NZB stored with the item, decompressed."""
        row = self._conn.execute(
            "SELECT data FROM queue_nzbs WHERE item_id = ?", (item_id,)
        ).fetchone()
        if row is None:
            raise QueueItemNotFound(f"no queue item with id {item_id}")
        return zlib.decompress(row[0])

    @staticmethod
    def _where(
        states: Iterable[State] | None, search: str | None, category: str | None
    ) -> tuple[str, list[object]]:
        clauses: list[str] = []
        params: list[object] = []
        if states is not None:
            wanted = [str(State(state)) for state in states]
            clauses.append(f"state IN ({', '.join('?' * len(wanted))})" if wanted else "0")
            params.extend(wanted)
        if search:
            escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append("nzb_name LIKE ? ESCAPE '\\'")  # LIKE is case-insensitive for ASCII
            params.append(f"%{escaped}%")
        if category:
            clauses.append("category = ? COLLATE NOCASE")
            params.append(category)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def list(
        self,
        states: Iterable[State] | None = None,
        search: str | None = None,
        category: str | None = None,
        offset: int = 0,
        limit: int = 50,
        sort: str = "created_at",
        descending: bool = True,
    ) -> list[QueueItem]:
        """A page of items filtered by state, name substring and category.

        `sort` is one of SORT_KEYS ("queue" = the order items are claimed in);
        `descending` reverses it.
        """
        if sort not in self.sort_keys:
            raise QueueError(
                f"cannot sort the queue by {sort!r}; use one of {', '.join(self.sort_keys)}"
            )
        if offset < 0 or limit < 0:
            raise QueueError("offset and limit must not be negative")
        where, params = self._where(states, search, category)
        order = _descending(self.sort_keys[sort]) if descending else self.sort_keys[sort]
        rows = self._conn.execute(
            f"SELECT {COLUMNS} FROM queue_items{where} ORDER BY {order} LIMIT ? OFFSET ?",
            (*params, limit, offset),
        ).fetchall()
        return [item_from_row(row) for row in rows]

    def count(
        self,
        states: Iterable[State] | None = None,
        search: str | None = None,
        category: str | None = None,
    ) -> int:
        """How many items match the filters of `list`."""
        where, params = self._where(states, search, category)
        return self._conn.execute(f"SELECT COUNT(*) FROM queue_items{where}", params).fetchone()[0]

    def counts(self) -> dict[State, int]:
        """Items per state, every state present."""
        found = dict(self._conn.execute("SELECT state, COUNT(*) FROM queue_items GROUP BY state"))
        return {state: found.get(str(state), 0) for state in State}

    # -- maintenance ------------------------------------------------------------------

    def purge(self, now: float, failed_hours: float, history_days: float) -> int:
        """Delete failed/cancelled items older than `failed_hours` and completed ones
        older than `history_days` (0 keeps them forever); return how many."""
        rules: list[tuple[tuple[State, ...], float]] = []
        if failed_hours > 0:
            rules.append(((State.FAILED, State.CANCELLED), now - failed_hours * 3600))
        if history_days > 0:
            rules.append(((State.COMPLETED,), now - history_days * 86400))
        removed = 0
        with self._write() as conn:
            for states, cutoff in rules:
                marks = ", ".join("?" * len(states))
                selector = f"SELECT id FROM queue_items WHERE state IN ({marks}) AND updated_at < ?"
                params = (*map(str, states), cutoff)
                conn.execute(f"DELETE FROM queue_nzbs WHERE item_id IN ({selector})", params)
                removed += conn.execute(
                    f"DELETE FROM queue_items WHERE id IN ({selector})", params
                ).rowcount
        return removed

    def api_key(self, override: str) -> str:
        """`override` if set, else the key generated once and kept in `settings`."""
        if override:
            return override
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO settings (key, value) VALUES ('api_key', ?)",
                (secrets.token_hex(16),),
            )
            return conn.execute("SELECT value FROM settings WHERE key = 'api_key'").fetchone()[0]

    def optimize(self) -> None:
        """VACUUM (rewrite the file without free pages) and ANALYZE (planner statistics)."""
        self._conn.execute("VACUUM")
        self._conn.execute("ANALYZE")

    def change_stamp(self) -> tuple[int, ...] | None:
        """The modification times and sizes of the database and its WAL: they change with
        every commit, so an unchanged stamp spares a `data_version` round trip through the
        database thread. A stat only: safe on any thread. None when unknown."""
        try:
            db, wal = os.stat(self.path), os.stat(f"{self.path}-wal")
        except OSError:
            return None
        return db.st_mtime_ns, db.st_size, wal.st_mtime_ns, wal.st_size

    def data_version(self) -> int:
        """A number that changes whenever another connection (process) commits."""
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        """Close the connection (a WAL checkpoint happens on the last close)."""
        self._conn.close()
