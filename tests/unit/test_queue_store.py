"""QueueStore on real SQLite files: items, claim order, state changes, retention, migrations."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from altmount.errors import QueueError, QueueItemNotFound
from altmount.queue._workers import local_process_gone
from altmount.queue.model import TRANSITIONS, Priority, State
from altmount.queue.store import MIGRATIONS, SCHEMA_VERSION, QueueStore

NZB = b'<?xml version="1.0"?><nzb xmlns="http://www.newzbin.com/DTD/2003/nzb"></nzb>' * 20


class Clock:
    """A settable wall clock for the store's timestamps."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    opened = QueueStore(tmp_path / "q.db", max_attempts=3, clock=clock)
    yield opened
    opened.close()


def add(store, name="a.nzb", priority=Priority.NORMAL, paused=False, category="Default"):
    return store.enqueue(NZB, name, category, priority, "cli", paused=paused)


def test_enqueue_stores_the_nzb_compressed(store):
    """The NZB comes back byte-exact and is kept zlib-compressed in its own table."""
    item = add(store)
    assert store.nzb(item.id) == NZB
    (blob,) = store._conn.execute("SELECT data FROM queue_nzbs").fetchone()
    assert zlib.decompress(blob) == NZB and len(blob) < len(NZB) / 4


def test_enqueue_returns_a_pending_item(store, clock):
    """A new item is pending with no attempts, timestamps set and a SABnzbd nzo_id."""
    item = add(store, name="Movie.nzb", category="movies")
    assert (item.state, item.attempts, item.nzb_name, item.category, item.source) == (
        State.PENDING,
        0,
        "Movie.nzb",
        "movies",
        "cli",
    )
    assert item.created_at == item.updated_at == clock.now
    assert item.started_at is None and item.completed_at is None
    assert store.get(item.id) == item == store.get_by_nzo(item.nzo_id)


def test_enqueue_paused_and_unknown_source(store):
    """paused=True adds the item paused; an unknown source is refused."""
    assert add(store, paused=True).state == State.PAUSED
    with pytest.raises(QueueError, match="source"):
        store.enqueue(NZB, "a.nzb", "Default", Priority.NORMAL, "carrier-pigeon")


def test_claim_order_is_priority_then_age_then_id(store, clock):
    """Claims take force before high before normal before low, oldest first within a level."""
    low = add(store, "low", Priority.LOW)
    clock.now += 1
    normal_old = add(store, "normal-old")
    clock.now += 1
    force = add(store, "force", Priority.FORCE)
    normal_new = add(store, "normal-new")
    high = add(store, "high", Priority.HIGH)
    order = [store.claim("w").id for _ in range(5)]
    assert order == [force.id, high.id, normal_old.id, normal_new.id, low.id]
    assert store.claim("w") is None


def test_claim_marks_processing_and_skips_paused(store, clock):
    """A claimed item is processing for that worker with one attempt; paused ones are left."""
    add(store, "held", paused=True)
    item = add(store)
    clock.now += 5
    claimed = store.claim("host:1")
    assert claimed.id == item.id
    assert (claimed.state, claimed.worker, claimed.attempts, claimed.started_at) == (
        State.PROCESSING,
        "host:1",
        1,
        clock.now,
    )
    assert store.claim("host:1") is None


def test_complete_records_target_and_size(store, clock):
    """Completing sets the release folder, the size and completed_at."""
    item = add(store)
    store.claim("w")
    clock.now += 2
    done = store.complete(item.id, "/complete/movies/X", 1234, worker="w")
    assert (done.state, done.target_path, done.size, done.completed_at) == (
        State.COMPLETED,
        "/complete/movies/X",
        1234,
        clock.now,
    )


def test_transient_failures_retry_until_max_attempts(store):
    """A transient failure goes back to pending until the third attempt, which fails for good."""
    item = add(store)
    for attempt in (1, 2):
        assert store.claim("w").attempts == attempt
        again = store.fail(item.id, "provider down", transient=True, worker="w")
        assert (again.state, again.error) == (State.PENDING, "provider down")
    store.claim("w")
    final = store.fail(item.id, "provider down", transient=True, worker="w")
    assert (final.state, final.attempts, final.error) == (State.FAILED, 3, "provider down")
    assert final.completed_at is not None


def test_permanent_failure_is_final_and_retry_resets(store):
    """A non-transient failure fails at once; retry puts it back to pending with attempts 0."""
    item = add(store)
    store.claim("w")
    assert (
        store.fail(item.id, "NZB line 3: not XML", transient=False, worker="w").state
        == State.FAILED
    )
    retried = store.retry(item.id)
    assert (retried.state, retried.attempts, retried.error, retried.completed_at) == (
        State.PENDING,
        0,
        "",
        None,
    )


def test_outcome_for_an_item_not_processing_is_refused(store):
    """complete/fail/release of an item nobody claimed raise QueueError and change nothing."""
    item = add(store)
    for call in (
        lambda: store.complete(item.id, "/x", 1, worker="w"),
        lambda: store.fail(item.id, "x", transient=True, worker="w"),
        lambda: store.release(item.id, worker="w"),
    ):
        with pytest.raises(QueueError):
            call()
    assert store.get(item.id).state == State.PENDING


def test_release_gives_the_attempt_back(store):
    """release (shutdown) returns a processing item to pending without counting the attempt."""
    item = add(store)
    store.claim("w")
    released = store.release(item.id, worker="w")
    assert (released.state, released.attempts) == (State.PENDING, 0)


def test_pause_resume_cancel(store):
    """Pause holds a pending item, resume releases it, cancel keeps it in history."""
    item = add(store)
    assert store.pause(item.id).state == State.PAUSED
    with pytest.raises(QueueError):
        store.pause(item.id)
    assert store.resume(item.id).state == State.PENDING
    cancelled = store.cancel(item.id)
    assert cancelled.state == State.CANCELLED and cancelled.completed_at is not None
    with pytest.raises(QueueError, match="cancelled; it cannot become completed"):
        store.complete(item.id, "/x", 1, worker="w")


def test_unknown_ids_raise_not_found(store):
    """Every per-item method names the missing id with QueueItemNotFound."""
    for call in (
        store.get,
        store.nzb,
        store.pause,
        store.resume,
        store.cancel,
        store.retry,
        store.delete,
        lambda item_id: store.release(item_id, worker="w"),
    ):
        with pytest.raises(QueueItemNotFound, match="42"):
            call(42)
    with pytest.raises(QueueItemNotFound):
        store.get_by_nzo("SABnzbd_nzo_nothere")


def test_delete_removes_the_row_and_its_nzb(store):
    """delete leaves neither the item nor its NZB blob behind."""
    item = add(store)
    store.claim("w")
    store.delete(item.id)
    assert store._conn.execute("SELECT COUNT(*) FROM queue_nzbs").fetchone()[0] == 0
    assert store.count() == 0


def test_list_filters_sorts_and_pages(store, clock):
    """list filters by state, name substring (LIKE wildcards literal) and category, and pages."""
    names = ["Show.S01E01.nzb", "Show.S01E02.nzb", "Movie_2020.nzb", "Movie%.nzb"]
    items = []
    for name in names:
        clock.now += 1
        items.append(add(store, name, category="tv" if "Show" in name else "movies"))
    store.claim("w")  # Show.S01E01
    assert [i.nzb_name for i in store.list()] == names[::-1]
    assert [i.nzb_name for i in store.list(descending=False, limit=2, offset=1)] == names[1:3]
    assert [i.nzb_name for i in store.list(search="show")] == names[1::-1]
    assert [i.nzb_name for i in store.list(search="%")] == ["Movie%.nzb"]
    assert [i.nzb_name for i in store.list(search="w_")] == []
    assert [i.nzb_name for i in store.list(category="TV", states=[State.PENDING])] == [names[1]]
    assert store.list(states=[]) == []
    assert [i.nzb_name for i in store.list(sort="nzb_name", descending=False)] == sorted(
        names, key=str.lower
    )
    assert store.count(category="movies") == 2 and store.count(states=[State.PROCESSING]) == 1


def test_list_in_queue_order(store):
    """sort="queue" lists pending items in the order they would be claimed."""
    low = add(store, "low", Priority.LOW)
    force = add(store, "force", Priority.FORCE)
    listed = store.list(states=[State.PENDING], sort="queue", descending=False)
    assert [i.id for i in listed] == [force.id, low.id]


def test_list_rejects_unknown_sort_and_negative_paging(store):
    """A sort key outside SORT_KEYS or a negative offset is a QueueError, not SQL."""
    with pytest.raises(QueueError, match="cannot sort the queue by"):
        store.list(sort="id; DROP TABLE queue_items")
    with pytest.raises(QueueError):
        store.list(offset=-1)


def test_counts_cover_every_state(store):
    """counts() has every state, zero included."""
    add(store)
    add(store, paused=True)
    counts = store.counts()
    assert set(counts) == set(State)
    assert counts[State.PENDING] == counts[State.PAUSED] == 1 and counts[State.FAILED] == 0


def test_recover_requeues_or_fails_the_items_of_dead_workers(store, clock):
    """Items of a worker silent past the stale age go back to pending, or fail once out of
    attempts; a second recover finds nothing."""
    fresh, worn = add(store, "fresh"), add(store, "worn")
    store.claim("w")
    store.claim("w")
    store._conn.execute("UPDATE queue_items SET attempts=3 WHERE id=?", (worn.id,))
    assert store.recover(30.0, lambda worker: False) == {}
    clock.now += 31
    assert store.recover(30.0, lambda worker: False) == {"w": 2}
    assert store.get(fresh.id).state == State.PENDING
    failed = store.get(worn.id)
    assert failed.state == State.FAILED and "interrupted 3 times" in failed.error
    assert store.recover(30.0, lambda worker: False) == {}


def test_recover_leaves_live_workers_alone(store, clock):
    """Only the dead worker's item is recovered: the one whose heartbeat lapsed, the one
    without a heartbeat, the one whose process is gone; a live worker keeps its item."""
    items = {name: add(store, name) for name in ("live", "lapsed", "silent", "exited")}
    for name in items:
        store.claim(name)
    store.forget_worker("silent")
    clock.now += 20
    store.heartbeat("live", clock.now)
    store.heartbeat("exited", clock.now)
    clock.now += 15
    recovered = store.recover(30.0, lambda worker: worker == "exited")
    assert recovered == {"lapsed": 1, "silent": 1, "exited": 1}
    states = {name: store.get(item.id).state for name, item in items.items()}
    assert states == {
        "live": State.PROCESSING,
        "lapsed": State.PENDING,
        "silent": State.PENDING,
        "exited": State.PENDING,
    }


def test_outcome_of_a_worker_taken_for_dead_is_refused(store, clock):
    """After its item was recovered and claimed by another worker, the first worker's
    complete, fail and release are refused and the new holder's outcome counts."""
    item = add(store)
    store.claim("old")
    clock.now += 31
    store.recover(30.0, lambda worker: False)
    with pytest.raises(QueueError, match="given back to the queue"):
        store.complete(item.id, "/x", 1, worker="old")
    store.claim("new")
    for call in (
        lambda: store.complete(item.id, "/x", 1, worker="old"),
        lambda: store.fail(item.id, "x", transient=False, worker="old"),
        lambda: store.release(item.id, worker="old"),
    ):
        with pytest.raises(QueueError, match="being imported by new now"):
            call()
    assert store.get(item.id).state == State.PROCESSING
    assert store.complete(item.id, "/x", 1, worker="new").state == State.COMPLETED


def test_claim_records_the_heartbeat(store, clock):
    """A claim beats for its worker in the same transaction."""
    add(store)
    assert store.live_workers(clock.now, 1) == []
    store.claim("w")
    assert store.live_workers(clock.now, 0) == ["w"]


def test_local_process_gone():
    """A worker of this host whose pid has exited is gone; this process, other hosts and
    names without a pid are not."""
    exited = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    host = socket.gethostname()
    assert local_process_gone(f"{host}:{exited.stdout.strip()}")
    assert local_process_gone(f"{host}:{exited.stdout.strip()}:cli")
    assert not local_process_gone(f"{host}:{os.getpid()}")
    assert not local_process_gone(f"elsewhere.example:{exited.stdout.strip()}")
    assert not local_process_gone("w")


def test_purge_applies_both_retentions(store, clock):
    """Failed/cancelled items go after failed_hours, completed ones after history_days."""
    start = clock.now
    failed, done, cancelled, pending = (add(store, n) for n in "abcd")
    store.claim("w")
    store.claim("w")
    store.fail(failed.id, "bad", transient=False, worker="w")
    store.complete(done.id, "/x", 1, worker="w")
    store.cancel(cancelled.id)
    assert store.purge(start + 3599, failed_hours=1, history_days=1) == 0
    assert store.purge(start + 3601, failed_hours=1, history_days=1) == 2
    assert {i.id for i in store.list()} == {done.id, pending.id}
    assert store.purge(start + 10 * 86400, failed_hours=1, history_days=0) == 0
    assert store.purge(start + 86401, failed_hours=0, history_days=1) == 1
    assert [i.id for i in store.list()] == [pending.id]
    assert store._conn.execute("SELECT COUNT(*) FROM queue_nzbs").fetchone()[0] == 1


def test_api_key_override_else_generated_once(tmp_path):
    """The override wins; otherwise a 32-hex key is generated once and survives reopening."""
    first = QueueStore(tmp_path / "k.db")
    assert first.api_key("fixed") == "fixed"
    key = first.api_key("")
    assert len(key) == 32 and int(key, 16) >= 0
    first.close()
    again = QueueStore(tmp_path / "k.db")
    assert again.api_key("") == key
    again.close()


def test_heartbeats(store):
    """live_workers lists workers that beat recently; forget_worker drops one."""
    store.heartbeat("a:1", 100.0)
    store.heartbeat("b:2", 90.0)
    assert store.live_workers(105.0, 10) == ["a:1"]
    assert store.live_workers(100.0, 10) == ["a:1", "b:2"]
    store.forget_worker("a:1")
    assert store.live_workers(100.0, 10) == ["b:2"]


def test_pragmas_and_optimize(store):
    """The file is in WAL mode with NORMAL sync and foreign keys; optimize runs VACUUM/ANALYZE."""
    conn = store._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    assert conn.execute("PRAGMA temp_store").fetchone()[0] == 2
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    add(store)
    store.optimize()
    assert store.count() == 1


def test_migrates_an_empty_file_to_the_latest_schema(tmp_path):
    """A new file gets every migration and records the latest version."""
    store = QueueStore(tmp_path / "new.db")
    assert store.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
    store.close()


def test_migrates_a_version_1_database(tmp_path, clock):
    """A v1 file (no worker column, no claim index) keeps its items and gains v2."""
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (1)")
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO queue_items (nzo_id, nzb_name, category, priority, state, "
        "created_at, updated_at, source) VALUES "
        "('SABnzbd_nzo_old', 'old.nzb', 'tv', 1, 'pending', 1, 1, 'api')"
    )
    conn.execute("INSERT INTO queue_nzbs VALUES (1, ?)", (zlib.compress(NZB),))
    conn.execute("INSERT INTO settings VALUES ('api_key', 'k' )")
    conn.commit()
    conn.close()
    store = QueueStore(path, clock=clock)
    assert store.schema_version == 2
    old = store.get_by_nzo("SABnzbd_nzo_old")
    assert (old.nzb_name, old.priority, old.worker) == ("old.nzb", Priority.HIGH, "")
    assert store.nzb(old.id) == NZB and store.api_key("") == "k"
    assert store.claim("w:9").worker == "w:9"
    indexes = {
        row[0] for row in store._conn.execute("SELECT name FROM sqlite_master WHERE type='index'")
    }
    assert "queue_items_claim" in indexes
    store.close()


def test_refuses_a_newer_schema_and_a_non_database(tmp_path):
    """A file from a newer altmount, or not SQLite at all, is a QueueError naming the path."""
    newer = tmp_path / "newer.db"
    QueueStore(newer).close()
    conn = sqlite3.connect(newer)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(QueueError, match="schema version 99 is newer"):
        QueueStore(newer)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(QueueError, match=f"database.path {junk}"):
        QueueStore(junk)


OPERATIONS = (
    "claim",
    "complete",
    "fail",
    "fail_transient",
    "pause",
    "resume",
    "cancel",
    "retry",
    "release",
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from(OPERATIONS), max_size=25))
def test_random_operations_respect_the_transitions(tmp_path_factory, operations):
    """Any sequence of operations either makes a legal transition or raises and changes nothing."""
    store = QueueStore(tmp_path_factory.mktemp("prop") / "q.db", max_attempts=2)
    item = add(store)
    calls = {
        "claim": lambda: store.claim("w"),
        "complete": lambda: store.complete(item.id, "/x", 1, worker="w"),
        "fail": lambda: store.fail(item.id, "no", transient=False, worker="w"),
        "fail_transient": lambda: store.fail(item.id, "later", transient=True, worker="w"),
        "pause": lambda: store.pause(item.id),
        "resume": lambda: store.resume(item.id),
        "cancel": lambda: store.cancel(item.id),
        "retry": lambda: store.retry(item.id),
        "release": lambda: store.release(item.id, worker="w"),
    }
    try:
        for operation in operations:
            before = store.get(item.id)
            try:
                calls[operation]()
            except QueueError:
                assert store.get(item.id) == before
                continue
            after = store.get(item.id)
            if after.state != before.state:
                assert after.state in TRANSITIONS[before.state]
            else:
                assert operation == "claim" and before.state != State.PENDING
    finally:
        store.close()
