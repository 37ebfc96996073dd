"""UI sessions shared through the queue database (altmount.web.sessionshare), as two
serving processes see them: two SessionStores on one real SQLite file."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from altmount.config import Config, DatabaseConfig
from altmount.queue.store import QueueStore
from altmount.web.session import REVALIDATE_SECONDS, TOUCH_SECONDS, SessionStore
from altmount.web.sessionshare import SharedSessions, open_shared_sessions


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "q.db"
    QueueStore(path).close()  # makes the settings table
    return Config(database=DatabaseConfig(path=str(path)))


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def pair(database, clock):
    """Two processes' session stores on one database."""
    shares = [open_shared_sessions(database) for _ in range(2)]
    yield [SessionStore(clock, idle_timeout=600, max_age=3600, shared=s) for s in shares]
    for share in shares:
        share.close()


def test_a_login_in_one_process_is_known_to_the_other(pair):
    """A session created by process A is valid in process B, with the same CSRF token."""
    a, b = pair
    session = a.create("operator")
    seen = b.get(session.token)
    assert seen is not None and (seen.user, seen.csrf_token) == ("operator", session.csrf_token)
    assert b.get("not-a-token") is None


def test_a_logout_ends_the_session_everywhere(pair, clock):
    """Logout in B ends the session in A once A checks again (within REVALIDATE_SECONDS)."""
    a, b = pair
    session = a.create("operator")
    assert b.get(session.token) is not None
    assert b.delete(session.token) is True
    assert b.get(session.token) is None
    clock.now += REVALIDATE_SECONDS + 1
    assert a.get(session.token) is None
    assert a.delete(session.token) is False


def test_use_in_one_process_keeps_the_session_alive_in_the_other(pair, clock):
    """Requests on B push the shared last use forward, so A does not time the login out."""
    a, b = pair
    session = a.create("operator")
    for _ in range(12):  # 12 × 61 s of use on B: past A's own 600 s idle timeout
        clock.now += TOUCH_SECONDS + 1
        assert b.get(session.token) is not None
    assert a.get(session.token) is not None
    clock.now += 601
    assert a.get(session.token) is None and b.get(session.token) is None


def test_the_stored_token_is_only_a_hash(pair, database):
    """The settings table holds the SHA-256 of a token, never the token itself."""
    session = pair[0].create("operator")
    with sqlite3.connect(database.database.path) as conn:
        rows = conn.execute("SELECT key, value FROM settings WHERE key LIKE 'session:%'").fetchall()
    assert len(rows) == 1 and session.token not in repr(rows)


def test_expired_rows_are_deleted_at_the_next_login(pair, clock, database):
    """Rows past their age go when someone logs in (the table does not grow forever)."""
    a, _ = pair
    a.create("old")
    clock.now += 3601
    a.create("new")
    with sqlite3.connect(database.database.path) as conn:
        (count,) = conn.execute("SELECT count(*) FROM settings WHERE key LIKE 'session:%'").fetchone()
    assert count == 1


def test_an_unavailable_database_keeps_the_local_logins(clock, caplog):
    """When the database does not answer, each process keeps the sessions it knows; one
    warning says so."""
    conn = sqlite3.connect(":memory:", isolation_level=None)  # no settings table: every call fails
    store = SessionStore(clock, shared=SharedSessions(conn, "?", (sqlite3.Error,)))
    with caplog.at_level(logging.WARNING, logger="altmount.web.sessionshare"):
        session = store.create("operator")
        clock.now += REVALIDATE_SECONDS + 1
        assert store.get(session.token) is not None
        assert store.get(session.token) is not None
    assert sum("did not answer" in r.getMessage() for r in caplog.records) == 1
