"""The import queue and history in PostgreSQL: `QueueStore`'s tables and state machine on
a database several hosts share.

The statements are QueueStore's own; `_Dialect` only swaps its `?` placeholders for
psycopg's. What SQLite says differently is said here: the writer lock (an advisory
lock per transaction instead of BEGIN IMMEDIATE), the claim (`FOR UPDATE SKIP LOCKED`:
two hosts never take one item), upserts (the heartbeat, the API key), the change counter and maintenance.
Names sort and compare case-insensitively as SQLite's NOCASE does (`lower()`, then
byte order).
"""

from __future__ import annotations

import builtins
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from altmount.errors import DatabaseUnavailable
from altmount.postgres.connection import connect, database_errors, describe, redact
from altmount.postgres.schema import ensure_schema
from altmount.queue._schema import COLUMNS, SORT_KEYS
from altmount.queue._workers import HEARTBEAT_PREFIX
from altmount.queue.model import QueueItem, State
from altmount.queue.store import QueueStore, item_from_row

__all__ = ["PgQueueStore"]

#: Writer lock (advisory, per transaction): "altmount queue".
QUEUE_LOCK = 0x616C7175


class _Dialect:
    """A psycopg connection that takes QueueStore's sqlite3-style statements."""

    def __init__(self, conn: Any, dsn: str) -> None:
        self.conn = conn
        self._dsn = dsn

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Any:
        try:
            return self.conn.execute(sql.replace("%", "%%").replace("?", "%s"), tuple(params))
        except database_errors() as exc:
            raise DatabaseUnavailable(
                f"database.dsn {redact(self._dsn)}: a queue statement failed: {describe(exc)}"
            ) from None

    def close(self) -> None:
        self.conn.close()


class PgQueueStore(QueueStore):
    """QueueStore on PostgreSQL; `path` names the database (without its password)."""

    # SQLite's NOCASE: ASCII case folded, then byte order.
    sort_keys = {**SORT_KEYS, "nzb_name": 'lower(nzb_name) COLLATE "C", id'}

    def __init__(
        self, dsn: str, *, max_attempts: int = 3, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = redact(dsn)  # type: ignore[assignment]
        self._max_attempts = max_attempts
        self._clock = clock
        self._conn = _Dialect(connect(dsn, "queue", autocommit=True), dsn)  # type: ignore[assignment]
        self._migrate()

    @contextmanager
    def _write(self) -> Iterator[Any]:
        """One transaction holding the queue's writer lock from its first statement."""
        conn = self._conn.conn  # type: ignore[attr-defined]
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (QUEUE_LOCK,))
                yield self._conn
        except database_errors() as exc:
            raise DatabaseUnavailable(
                f"database.dsn {self.path}: a queue change failed: {describe(exc)}"
            ) from None

    def _migrate(self) -> None:
        with self._write() as conn:
            ensure_schema(conn.conn)

    @property
    def schema_version(self) -> int:
        return self._conn.execute("SELECT version FROM altmount_schema").fetchone()[0]

    def claim(self, worker: str) -> QueueItem | None:
        """Take the next pending item for `worker`, or None; a row another host is
        claiming at the same moment is skipped, not waited for."""
        now = self._clock()
        with self._write() as conn:
            row = conn.execute(
                "UPDATE queue_items SET state = 'processing', worker = ?, "
                "attempts = attempts + 1, started_at = ?, updated_at = ?, error = '' "
                "WHERE id = (SELECT id FROM queue_items WHERE state = 'pending' "
                f"ORDER BY {SORT_KEYS['queue']} LIMIT 1 FOR UPDATE SKIP LOCKED) "
                f"RETURNING {COLUMNS}",
                (worker, now, now),
            ).fetchone()
            if row is not None:
                self._beat(conn, worker, now)
        return None if row is None else item_from_row(row)

    @staticmethod
    def _where(
        states: Iterable[State] | None, search: str | None, category: str | None
    ) -> tuple[str, builtins.list[object]]:
        clauses: builtins.list[str] = []
        params: builtins.list[object] = []
        if states is not None:
            wanted = [str(State(state)) for state in states]
            clauses.append("state = ANY(?)")
            params.append(wanted)
        if search:
            escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append("nzb_name ILIKE ? ESCAPE '\\'")
            params.append(f"%{escaped}%")
        if category:
            clauses.append("lower(category) = lower(?)")
            params.append(category)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def api_key(self, override: str) -> str:
        if override:
            return override
        with self._write() as conn:
            conn.execute(
                "INSERT INTO settings (key, value) VALUES ('api_key', ?) "
                "ON CONFLICT (key) DO NOTHING",
                (secrets.token_hex(16),),
            )
            return conn.execute("SELECT value FROM settings WHERE key = 'api_key'").fetchone()[0]

    @staticmethod
    def _beat(conn: Any, worker: str, now: float) -> None:
        conn.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (HEARTBEAT_PREFIX + worker, repr(now)),
        )

    def optimize(self) -> None:
        """VACUUM ANALYZE the queue tables."""
        self._conn.execute("VACUUM ANALYZE queue_items")
        self._conn.execute("VACUUM ANALYZE queue_nzbs")

    def change_stamp(self) -> None:
        """No file to look at: every change check asks the database."""
        return None

    def data_version(self) -> int:
        """A number that changes whenever any host commits a queue change."""
        return int(self._conn.execute("SELECT version FROM queue_version").fetchone()[0])

    def close(self) -> None:
        self._conn.close()
