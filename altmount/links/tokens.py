"""The STRM tokens: one random token per virtual file, in the queue database's file.

A token is the only credential of a `/strm/<token>/<name>` URL, so it is random
(`TOKEN_BYTES` from `secrets`), never derived from the WebDAV password, and
revoked by deleting its row. Rows live in their own table (`strm_tokens`) of
`database.path`, so they survive a restart and every serving process sees
the same ones. Synchronous sqlite3: `LinkService` calls it from one thread.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from altmount.errors import LinkError

__all__ = ["TOKEN_BYTES", "Token", "TokenStore", "looks_like_token"]

#: 24 random bytes: 32 URL-safe characters, 192 bits nobody guesses.
TOKEN_BYTES = 24
#: A writer (the queue, another process) holds the lock for milliseconds.
BUSY_TIMEOUT_SECONDS = 5.0
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS strm_tokens (
        token TEXT PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL)""",
)
_TOKEN_LENGTH = len(secrets.token_urlsafe(TOKEN_BYTES))
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def looks_like_token(text: str) -> bool:
    """True when `text` has the shape of a token (not whether it is valid)."""
    return len(text) == _TOKEN_LENGTH and set(text) <= _TOKEN_CHARS


@dataclass(frozen=True, slots=True)
class Token:
    """One token and the virtual file it opens."""

    token: str
    path: str
    created_at: float


def _under(prefix: str) -> tuple[str, str]:
    """SQL LIKE-free bounds of the paths at or below `prefix`: path = p or path >= p/ < p0."""
    base = prefix.rstrip("/")
    return base, base + "/"


class TokenStore:
    """The `strm_tokens` table of the SQLite file at `path`."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_SECONDS,
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            for statement in _SCHEMA:
                self._conn.execute(statement)
        except (sqlite3.Error, OSError) as exc:
            raise LinkError(
                f"database.path {self.path}: cannot open the STRM tokens: {exc}"
            ) from exc

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise LinkError(f"database.path {self.path}: STRM tokens: {exc}") from exc

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise LinkError(f"database.path {self.path}: STRM tokens: {exc}") from exc

    def token_for(self, path: str) -> str:
        """The file's token, made now if it has none (an old one is kept: library
        copies of its .strm file go on working)."""
        with self._write() as conn:
            row = conn.execute("SELECT token FROM strm_tokens WHERE path = ?", (path,)).fetchone()
            if row is not None:
                return row[0]
            token = secrets.token_urlsafe(TOKEN_BYTES)
            conn.execute(
                "INSERT INTO strm_tokens (token, path, created_at) VALUES (?, ?, ?)",
                (token, path, self._clock()),
            )
            return token

    def lookup(self, token: str) -> str | None:
        """The virtual path the token opens, or None (unknown or revoked)."""
        if not looks_like_token(token):
            return None
        rows = self._read("SELECT path FROM strm_tokens WHERE token = ?", (token,))
        return rows[0][0] if rows else None

    def revoke(self, token_or_path: str) -> list[Token]:
        """Drop a token, or every token of a virtual path and the files below it;
        the tokens dropped."""
        if looks_like_token(token_or_path):
            gone = self._select("token = ?", (token_or_path,))
        else:
            base, below = _under(token_or_path)
            gone = self._select("path = ? OR (path >= ? AND path < ?)", (base, below, base + "0"))
        with self._write() as conn:
            conn.executemany("DELETE FROM strm_tokens WHERE token = ?", [(t.token,) for t in gone])
        return gone

    def move(self, source: str, destination: str) -> int:
        """Follow a rename of a file or folder in the tree; how many tokens moved."""
        base, below = _under(source)
        target = destination.rstrip("/")
        with self._write() as conn:
            rows = conn.execute(
                "SELECT token, path FROM strm_tokens WHERE path = ? OR (path >= ? AND path < ?)",
                (base, below, base + "0"),
            ).fetchall()
            for token, path in rows:
                conn.execute(
                    "DELETE FROM strm_tokens WHERE path = ?", (target + path[len(base) :],)
                )
                conn.execute(
                    "UPDATE strm_tokens SET path = ? WHERE token = ?",
                    (target + path[len(base) :], token),
                )
        return len(rows)

    def all(self) -> list[Token]:
        """Every token, by path."""
        return self._select("1", ())

    def prune(self, exists: Callable[[str], bool]) -> list[Token]:
        """Drop the tokens of files that no longer exist; the tokens dropped."""
        gone = [token for token in self.all() if not exists(token.path)]
        with self._write() as conn:
            conn.executemany("DELETE FROM strm_tokens WHERE token = ?", [(t.token,) for t in gone])
        return gone

    def _select(self, where: str, args: tuple) -> list[Token]:
        rows = self._read(
            f"SELECT token, path, created_at FROM strm_tokens WHERE {where} ORDER BY path", args
        )
        return [Token(*row) for row in rows]
