"""The provider connection budget on PostgreSQL advisory locks (database.type: postgres),
against a real PostgreSQL server."""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import psycopg
import pytest

from altmount.postgres.budget import PgSlotBudget

KEY = "news.example-563-abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def budget(dsn: str, limit: int = 3, clock: Clock | None = None) -> PgSlotBudget:
    return PgSlotBudget(dsn, KEY, limit, clock=clock or Clock())


def test_two_processes_never_hold_more_than_the_limit(postgres_dsn):
    """Two budgets of one provider share its 3 slots; a released slot goes to the other."""
    a, b = budget(postgres_dsn), budget(postgres_dsn)
    try:
        leases = [a.try_acquire(), a.try_acquire(), b.try_acquire()]
        assert all(leases) and sorted(lease.slot for lease in leases) == [0, 1, 2]
        assert a.try_acquire() is None and b.try_acquire() is None
        leases[0].release()
        again = b.try_acquire()
        assert again is not None and again.slot == leases[0].slot
        assert (a.held, b.held) == (1, 2)
    finally:
        a.close()
        b.close()


def test_a_waiting_process_gets_a_fair_share(postgres_dsn):
    """A holder of every slot sees another process wait and gives back beyond its share."""
    a, b = budget(postgres_dsn, limit=4), budget(postgres_dsn, limit=4)
    try:
        held = [a.try_acquire() for _ in range(4)]
        assert all(held) and a.excess() == 0
        assert b.try_acquire() is None
        b.set_waiting(True)
        a._clock.now += 1  # past the peers cache
        assert a.excess() == 2  # ceil(4 / 2) = 2 each
        held.pop().release()
        held.pop().release()
        assert a.try_acquire() is None  # at its share while b waits
        assert b.try_acquire() is not None and b.try_acquire() is not None
        b.set_waiting(False)
        a._clock.now += 1
        assert a.excess() == 0
    finally:
        a.close()
        b.close()


CHILD = """
import sys, time
from altmount.postgres.budget import PgSlotBudget
budget = PgSlotBudget(sys.argv[1], sys.argv[2], 3, clock=time.monotonic)
assert budget.try_acquire() and budget.try_acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_killed_process_gives_its_slots_back(postgres_dsn):
    """kill -9 of a process holding 2 of 3 slots frees them (the server ends its session)."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, postgres_dsn, KEY], stdout=subprocess.PIPE, text=True
    )
    ours = budget(postgres_dsn)
    try:
        assert child.stdout.readline().strip() == "held"
        assert ours.try_acquire() is not None and ours.try_acquire() is None
        child.kill()
        child.wait()
        deadline = time.monotonic() + 10
        while ours.held < 3 and time.monotonic() < deadline:
            if ours.try_acquire() is None:
                time.sleep(0.05)
        assert ours.held == 3
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        ours.close()


def test_a_lost_session_takes_its_slots_again_or_sheds(postgres_dsn):
    """When the server ends the session, the budget reconnects and re-takes its slots; one
    that another process took meanwhile is counted as excess, so the pool closes one."""
    ours, other = budget(postgres_dsn, limit=2), budget(postgres_dsn, limit=2)
    try:
        first, second = ours.try_acquire(), ours.try_acquire()
        assert first and second
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (ours._backend,))
        deadline = time.monotonic() + 10
        while other.held == 0 and time.monotonic() < deadline:
            other.try_acquire() or time.sleep(0.05)
        assert other.held == 1
        assert ours.excess() == 1  # one slot kept, the other lost to `other`
        assert ours.held == 2
        lost = first if first.slot in ours._lost else second
        lost.release()
        assert ours.excess() == 0 and ours.held == 1
        assert other.try_acquire() is None  # 1 + 1 = the limit
    finally:
        ours.close()
        other.close()


def test_an_unreachable_database_grants_nothing_and_warns_once(caplog):
    """No database: no slot (the provider limit is never guessed), one warning naming it."""
    dead = "postgresql://altmount@127.0.0.1:1/none?connect_timeout=1"
    with caplog.at_level(logging.WARNING, logger="altmount.postgres.budget"):
        unreachable = budget(dead)
        assert unreachable.try_acquire() is None
        assert unreachable.try_acquire() is None
        unreachable.close()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "cannot be reached" in warnings[0], warnings
    assert KEY in warnings[0]


@pytest.mark.parametrize("limit", [1, 5])
def test_own_slots_are_never_taken_twice(postgres_dsn, limit):
    """Advisory locks are re-entrant in a session: the budget never counts one slot twice."""
    one = budget(postgres_dsn, limit=limit)
    try:
        slots = [one.try_acquire() for _ in range(limit)]
        assert len({lease.slot for lease in slots}) == limit
        assert one.try_acquire() is None
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            locks = admin.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s "
                "AND classid::bigint = %s",
                (one._backend, one._slot_key),
            ).fetchone()[0]
        assert locks == limit
    finally:
        one.close()
