"""The queue store's own tests (tests/unit/test_queue_store.py), run again on PostgreSQL
(PgQueueStore), plus what only a shared database has: two hosts claiming at once."""

from __future__ import annotations

import importlib.util
import inspect
import threading
from pathlib import Path

import psycopg
import pytest

from altmount.errors import DatabaseUnavailable
from altmount.postgres.queue import PgQueueStore
from altmount.queue.model import Priority, State

_SOURCE = Path(__file__).resolve().parents[1] / "unit" / "test_queue_store.py"
_spec = importlib.util.spec_from_file_location("altmount_queue_store_tests", _SOURCE)
_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tests)
Clock, add, NZB = _tests.Clock, _tests.add, _tests.NZB

#: Tests about the SQLite file itself (its migrations, pragmas, a junk file), not the queue.
SQLITE_ONLY = {"store_path", "tmp_path", "tmp_path_factory"}
SQLITE_TESTS = {"test_pragmas_and_optimize"}

for _name, _test in vars(_tests).items():
    if _name.startswith("test_") and callable(_test):
        parameters = set(inspect.signature(_test).parameters)
        if "store" in parameters and not parameters & SQLITE_ONLY and _name not in SQLITE_TESTS:
            globals()[_name] = _test


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(postgres_dsn, clock):
    opened = PgQueueStore(postgres_dsn, max_attempts=3, clock=clock)
    yield opened
    opened.close()


def test_two_hosts_never_claim_one_item(postgres_dsn):
    """Four stores (hosts) claim 200 items concurrently: each item exactly once."""
    stores = [PgQueueStore(postgres_dsn) for _ in range(4)]
    for index in range(200):
        add(stores[0], name=f"{index}.nzb", priority=Priority(index % 3 - 1))
    claimed: list[list[int]] = [[] for _ in stores]

    def drain(index: int) -> None:
        while (item := stores[index].claim(f"host-{index}")) is not None:
            claimed[index].append(item.id)

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    every = [item for ids in claimed for item in ids]
    try:
        assert len(every) == len(set(every)) == 200
        assert stores[1].counts()[State.PROCESSING] == 200
    finally:
        for one in stores:
            one.close()


def test_the_change_counter_moves_with_every_host(postgres_dsn):
    """data_version changes when another host commits, and only then."""
    a, b = PgQueueStore(postgres_dsn), PgQueueStore(postgres_dsn)
    try:
        before = a.data_version()
        assert a.data_version() == before
        item = add(b)
        assert a.data_version() != before
        moved = a.data_version()
        b.pause(item.id)
        assert a.data_version() != moved
    finally:
        a.close()
        b.close()


def test_optimize_runs(store):
    """`altmount db optimize` on PostgreSQL: VACUUM ANALYZE of the queue tables."""
    add(store)
    store.optimize()
    assert store.counts()[State.PENDING] == 1


def test_a_lost_database_is_a_named_error(postgres_dsn):
    """A statement on a session the server ended fails as DatabaseUnavailable, no password."""
    store = PgQueueStore(postgres_dsn)
    try:
        backend = store._conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
        with pytest.raises(DatabaseUnavailable, match="database.dsn"):
            store.counts()
    finally:
        store.close()
