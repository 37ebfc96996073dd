"""Which processors are alive: heartbeats in the queue database, and recovery of the
items that dead ones held.

Each processor (an `altmount serve`, or an `altmount import --wait` importing itself)
names itself "host:pid[:role]" and writes its heartbeat to `settings` when it claims
an item and at every queue poll. An item stays `processing` while its worker lives;
it goes back to pending (or fails once out of attempts) only when that worker's
heartbeat is older than the stale age, or the worker ran on this host and its process
is gone. So a server starting while `altmount import --wait` imports leaves that
import alone, and a crashed processor's items are taken up by the others.
"""

from __future__ import annotations

import builtins
import os
import socket
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager

__all__ = [
    "HEARTBEAT_PREFIX",
    "STALE_AFTER_SECONDS",
    "WorkerLiveness",
    "local_process_gone",
    "stale_after",
]

#: Settings rows holding a processor's last sign of life.
HEARTBEAT_PREFIX = "heartbeat:"

#: A processor beats at every queue poll; one silent for this long (or four polls, if
#: longer) is taken for dead. Generous: a stall of the database thread or a suspended
#: machine must not hand a live import to another process.
STALE_AFTER_SECONDS = 30.0


def stale_after(poll_interval: float) -> float:
    """Seconds without a heartbeat after which a processor polling every
    `poll_interval` seconds is taken for dead."""
    return max(STALE_AFTER_SECONDS, 4 * poll_interval)


def local_process_gone(worker: str) -> bool:
    """True if `worker` ("host:pid[:role]") ran on this host and its process has exited."""
    host, _, rest = worker.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


class WorkerLiveness:
    """The heartbeat side of `QueueStore` (a mixin: it uses the store's connection,
    write transactions, clock and attempt limit)."""

    _conn: sqlite3.Connection
    _clock: Callable[[], float]
    _max_attempts: int
    _write: Callable[[], AbstractContextManager[sqlite3.Connection]]

    @staticmethod
    def _beat(conn: sqlite3.Connection, worker: str, now: float) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)",
            (HEARTBEAT_PREFIX + worker, repr(now)),
        )

    def heartbeat(self, worker: str, now: float) -> None:
        """Record that `worker`'s processor is alive (seen by `live_workers`)."""
        with self._write() as conn:
            self._beat(conn, worker, now)

    def _beats(self, conn: sqlite3.Connection) -> dict[str, float]:
        rows = conn.execute(
            "SELECT key, value FROM settings WHERE key LIKE ?", (HEARTBEAT_PREFIX + "%",)
        ).fetchall()
        return {key[len(HEARTBEAT_PREFIX) :]: float(value) for key, value in rows}

    def live_workers(self, now: float, max_age: float) -> builtins.list[str]:
        """Workers whose processor beat within `max_age` seconds of `now`."""
        beats = self._beats(self._conn)
        return sorted(worker for worker, beat in beats.items() if now - beat <= max_age)

    def forget_worker(self, worker: str) -> None:
        """Drop `worker`'s heartbeat (its processor stopped cleanly)."""
        with self._write() as conn:
            conn.execute("DELETE FROM settings WHERE key = ?", (HEARTBEAT_PREFIX + worker,))

    def _dead_holders(
        self, conn: sqlite3.Connection, stale_after: float, gone: Callable[[str], bool]
    ) -> builtins.list[str]:
        holders = [
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT worker FROM queue_items WHERE state = 'processing'"
            )
        ]
        if not holders:
            return []
        beats, now = self._beats(conn), self._clock()
        return [
            worker
            for worker in holders
            if worker not in beats or now - beats[worker] > stale_after or gone(worker)
        ]

    def recover(
        self, stale_after: float, gone: Callable[[str], bool] = local_process_gone
    ) -> dict[str, int]:
        """Items held by dead workers go back to pending, or fail once they have used
        every attempt (so a poison NZB cannot crash-loop); returns how many per worker.

        A worker is dead when its heartbeat is missing or older than `stale_after`
        seconds, or when `gone(worker)` says its process has exited.
        """
        if not self._dead_holders(self._conn, stale_after, gone):
            return {}  # the usual case: a read, no write lock
        now = self._clock()
        recovered: dict[str, int] = {}
        with self._write() as conn:
            for worker in self._dead_holders(conn, stale_after, gone):
                failed = conn.execute(
                    "UPDATE queue_items SET state = 'failed', completed_at = ?, updated_at = ?, "
                    "error = 'interrupted ' || attempts || ' times (altmount stopped or crashed "
                    "during the import)' WHERE state = 'processing' AND worker = ? "
                    "AND attempts >= ?",
                    (now, now, worker, self._max_attempts),
                ).rowcount
                pending = conn.execute(
                    "UPDATE queue_items SET state = 'pending', updated_at = ? "
                    "WHERE state = 'processing' AND worker = ?",
                    (now, worker),
                ).rowcount
                recovered[worker] = failed + pending
        return recovered
