"""One provider's `max_connections`, shared by every process on every host that uses the
same PostgreSQL database: an advisory lock per connection slot.

PostgreSQL holds a session's advisory locks until the session ends, so a process that
dies (`kill -9`, a lost host) gives its slots back as soon as the server notices the
connection is gone, with nothing to clean up. Each budget has its own session: the
locks are re-entrant within one, and two pools of a process must not share a slot.

Fairness is the one of `nntp.budget.SlotBudget`: a process that wants a slot and finds
none holds a `want` lock; holders that see one give back what they hold beyond their
share of the limit. Membership and want are advisory locks too (key: the session's
backend pid), counted in `pg_locks`.

If the session is lost, so are its locks: the next call reconnects and takes again the
slots its connections hold; a slot that another process took meanwhile is counted in
`excess()`, so the pool closes a connection. While the database cannot be reached no
slot is granted: the provider's limit is never exceeded, new connections wait.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Callable
from typing import Any

from altmount.nntp.budget import (
    HOLDING_POLL_SECONDS,
    PEERS_TTL_SECONDS,
    WAITING_POLL_SECONDS,
    ConnectionBudget,
    Lease,
)
from altmount.postgres.connection import connect, database_errors, describe, unreachable_errors

__all__ = ["PgSlotBudget", "lock_key"]

log = logging.getLogger(__name__)

_TAKE_SLOT = """
    SELECT slot FROM generate_series(0, %(limit)s - 1) AS slot
    WHERE CASE WHEN slot = ANY(%(taken)s) THEN false
               ELSE pg_try_advisory_lock(%(key)s, slot) END
    LIMIT 1"""
_PEERS = """
    SELECT count(DISTINCT pid) FILTER (WHERE classid::bigint = %(member)s),
           count(DISTINCT pid) FILTER (WHERE classid::bigint = %(want)s)
    FROM pg_locks
    WHERE locktype = 'advisory' AND objsubid = 2 AND granted AND pid <> pg_backend_pid()
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"""


def lock_key(provider: str, kind: str) -> int:
    """The first (namespace) half of an advisory lock key: positive int4."""
    return zlib.crc32(f"altmount:{kind}:{provider}".encode()) & 0x7FFFFFFF


class PgSlotBudget(ConnectionBudget):
    """`limit` advisory-lock slots for provider `key` in the database at `dsn`."""

    def __init__(
        self,
        dsn: str,
        key: str,
        limit: int,
        *,
        clock: Callable[[], float],
        connect_to: Callable[[str, str], Any] = connect,
    ) -> None:
        self.limit = limit
        self.key = key
        self._dsn = dsn
        self._clock = clock
        self._connect_to = connect_to
        self._slot_key = lock_key(key, "slot")
        self._member_key = lock_key(key, "member")
        self._want_key = lock_key(key, "want")
        self._conn: Any = None
        self._backend = 0
        self._leases: set[Lease] = set()
        self._lost: set[int] = set()  # slots held before a reconnect and taken since
        self._member = False
        self._waiting = False
        self._peers_at = -math.inf
        self._peers: tuple[int, int] = (1, 0)
        self._warned = False
        self._session()

    # -- slots ---------------------------------------------------------------------

    @property
    def held(self) -> int:
        return len(self._leases)

    def try_acquire(self) -> Lease | None:
        """A free slot, or None (every slot held, at the fair share while another
        process waits, or the database unreachable)."""
        if self._leases and self._over_share_while_others_wait(extra=1):
            return None
        taken = [lease.slot for lease in self._leases]
        row = self._query(_TAKE_SLOT, {"limit": self.limit, "taken": taken, "key": self._slot_key})
        if not row:
            return None
        lease = Lease(row[0], self._released)
        self._leases.add(lease)
        self._update_membership()
        return lease

    def _released(self, lease: Lease) -> None:
        self._leases.discard(lease)
        if lease.slot in self._lost:
            self._lost.discard(lease.slot)
        else:
            self._query("SELECT pg_advisory_unlock(%s, %s)", (self._slot_key, lease.slot))
        self._update_membership()

    # -- fairness ------------------------------------------------------------------

    def set_waiting(self, waiting: bool) -> None:
        if waiting != self._waiting:
            call = "pg_try_advisory_lock" if waiting else "pg_advisory_unlock"
            if self._query(f"SELECT {call}(%s, %s)", (self._want_key, self._backend)):
                self._waiting = waiting
                self._peers_at = -math.inf
        self._update_membership()

    def poll_delay(self) -> float | None:
        if self._waiting:
            return WAITING_POLL_SECONDS
        return HOLDING_POLL_SECONDS if self._leases else None

    def excess(self) -> int:
        # Polled every HOLDING_POLL_SECONDS: a fresh scan also notices a lost session.
        members, waiting = self._scan_peers(fresh=True)
        over = max(0, len(self._leases) - self._share(members)) if waiting else 0
        return max(over, len(self._lost))

    def _over_share_while_others_wait(self, extra: int) -> bool:
        members, waiting = self._scan_peers()
        return waiting > 0 and len(self._leases) + extra > self._share(members)

    def _share(self, members: int) -> int:
        return max(1, math.ceil(self.limit / max(1, members)))

    def _update_membership(self) -> None:
        member = bool(self._leases) or self._waiting
        if member != self._member:
            call = "pg_try_advisory_lock" if member else "pg_advisory_unlock"
            if self._query(f"SELECT {call}(%s, %s)", (self._member_key, self._backend)):
                self._member = member
                self._peers_at = -math.inf

    def _scan_peers(self, fresh: bool = False) -> tuple[int, int]:
        """(processes using the provider, this one included; other processes waiting)."""
        now = self._clock()
        if not fresh and now - self._peers_at < PEERS_TTL_SECONDS:
            return self._peers
        row = self._query(_PEERS, {"member": self._member_key, "want": self._want_key})
        if row is not None:
            self._peers_at, self._peers = now, (1 + row[0], row[1])
        return self._peers

    # -- the session ---------------------------------------------------------------

    def _session(self) -> Any:
        """The live session, reconnected (and its slots taken again) if it was lost."""
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        try:
            self._conn = self._connect_to(self._dsn, f"connection budget {self.key}")
            self._backend = self._conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        except unreachable_errors() as exc:
            self._conn = None
            self._unreachable(exc)
            return None
        lost_member, self._member = self._member, False
        lost_waiting, self._waiting = self._waiting, False
        for lease in self._leases:
            if lease.slot in self._lost:
                continue
            relocked = self._conn.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", (self._slot_key, lease.slot)
            ).fetchone()[0]
            if not relocked:
                self._lost.add(lease.slot)
        if lost_member or lost_waiting:
            self.set_waiting(lost_waiting)
        if self._warned:
            log.warning("connection budget %s: the database answers again", self.key)
            self._warned = False
        return self._conn

    def _query(self, sql: str, params: Any) -> Any:
        """The statement's first row, or None when the database cannot be reached.

        A session the server ended is noticed by the statement that fails on it: the
        budget reconnects (taking its slots again) and runs the statement once more.
        """
        for attempt in range(2):
            conn = self._session()
            if conn is None:
                return None
            try:
                return conn.execute(sql, params).fetchone()
            except database_errors() as exc:
                if attempt or not (conn.closed or conn.broken):
                    self._unreachable(exc)
                    return None
        return None

    def _unreachable(self, exc: BaseException) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "connection budget %s: the database cannot be reached (%s); no new "
                "provider connections until it can",
                self.key,
                describe(exc),
            )

    def close(self) -> None:
        """End the session: PostgreSQL drops every lock it held."""
        self._leases.clear()
        self._lost.clear()
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None
