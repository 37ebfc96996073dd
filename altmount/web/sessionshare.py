"""UI login sessions in the database, so that every serving process and instance knows
them: with `serve --processes N` the kernel hands a browser's connections to any of
the processes, and behind a balancer to any instance.

One row of the queue database's `settings` table per session (key `session:` + the
SHA-256 of its token, so the table never holds a usable token), on its own connection:
the queue's connection belongs to the queue's thread. The statements are the same in
SQLite and PostgreSQL but for the placeholder.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any

from altmount.config import Config

__all__ = ["SharedSessions", "SharedSessionsUnavailable", "open_shared_sessions"]

log = logging.getLogger(__name__)

_PREFIX = "session:"


class SharedSessionsUnavailable(Exception):  # noqa: N818 - a signal to SessionStore
    """The database did not answer; the caller keeps what it knows."""


class SharedSessions:
    """Load, save and drop session rows; `conn` is a DB-API connection in autocommit."""

    def __init__(self, conn: Any, placeholder: str, errors: tuple[type[BaseException], ...]):
        self._conn = conn
        self._mark = placeholder
        self._errors = errors
        self._warned = False

    def load(self, key: str) -> dict | None:
        """The stored fields of session `key` (user, csrf, created, seen), or None."""
        row = self._run(f"SELECT value FROM settings WHERE key = {self._mark}", (_PREFIX + key,))
        return json.loads(row[0]) if row else None

    def save(self, key: str, fields: dict) -> None:
        """Create or update session `key`."""
        self._run(
            f"INSERT INTO settings (key, value) VALUES ({self._mark}, {self._mark}) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (_PREFIX + key, json.dumps(fields)),
        )

    def drop(self, key: str) -> None:
        """Forget session `key` (logout, expiry)."""
        self._run(f"DELETE FROM settings WHERE key = {self._mark}", (_PREFIX + key,))

    def expire(self, now: float, idle_timeout: float, max_age: float) -> int:
        """Delete every stored session past its idle timeout or maximum age; how many."""
        rows = self._run(
            f"SELECT key, value FROM settings WHERE key LIKE {self._mark}", (_PREFIX + "%",), True
        )
        stale = []
        for key, value in rows:
            fields = json.loads(value)
            if now - fields["seen"] > idle_timeout or now - fields["created"] > max_age:
                stale.append(key)
        for key in stale:
            self._run(f"DELETE FROM settings WHERE key = {self._mark}", (key,))
        return len(stale)

    def _run(self, sql: str, params: tuple, every: bool = False) -> Any:
        try:
            cursor = self._conn.execute(sql, params)
            result = cursor.fetchall() if every else cursor.fetchone() if cursor.description else None
        except self._errors as exc:
            if not self._warned:
                self._warned = True
                log.warning("UI sessions: the database did not answer (%s); each process "
                            "keeps the logins it knows", exc)
            raise SharedSessionsUnavailable(str(exc)) from None
        if self._warned:
            self._warned = False
            log.warning("UI sessions: the database answers again")
        return result

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


def open_shared_sessions(config: Config) -> SharedSessions:
    """The session rows of `config`'s database (the queue store has made the table)."""
    if config.database.type == "postgres":
        from altmount.postgres.connection import connect, database_errors

        conn = connect(config.database.dsn, "sessions", autocommit=True)
        return SharedSessions(conn, "%s", database_errors())
    conn = sqlite3.connect(
        config.database.path, isolation_level=None, check_same_thread=False, timeout=5
    )
    return SharedSessions(conn, "?", (sqlite3.Error,))
