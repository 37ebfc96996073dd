"""QueueService and its processor on a fake clock, with a fake importer and a synchronous pool.

Store calls run inline (the pool runs them at once and the reactor's callFromThread
delivers at once), so each test drives time with `reactor.advance` and the import
outcomes by firing the fake importer's Deferreds.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from altmount.config import CategoryConfig, Config
from altmount.errors import ImportFailed, NNTPTimeout, QueueError, QueueItemNotFound
from altmount.importer import ImportResult
from altmount.queue import Priority, QueueService, QueueStore, State
from altmount.queue import service as service_module

NZB = b"<nzb/>"
INTERVAL = 5.0


class SyncReactor(MemoryReactorClock):
    """A MemoryReactorClock whose callFromThread runs the call at once."""

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


class SyncPool:
    """A thread pool stand-in that runs each call inline."""

    def __init__(self) -> None:
        self.started = self.stopped = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def callInThreadWithCallback(self, on_result, f, *args, **kwargs):
        try:
            result = f(*args, **kwargs)
        except BaseException:
            on_result(False, Failure())
        else:
            on_result(True, result)


class FakeImporter:
    """Records import calls; each returns a Deferred the test fires."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, str, str | None, defer.Deferred]] = []

    def import_nzb(self, data, nzb_filename, category=None, progress=None, name_from_file=False):
        d: defer.Deferred = defer.Deferred()
        self.calls.append((data, nzb_filename, category, d))
        return d

    def finish(self, index: int, sizes=(100, 23)) -> None:
        # The processor reads only each record's size.
        files = tuple(SimpleNamespace(size=size) for size in sizes)
        self.calls[index][3].callback(ImportResult("/complete/x", files, (), 1.0))


def config(workers: int = 2, **imports) -> Config:
    base = Config()
    return dataclasses.replace(
        base,
        import_=dataclasses.replace(
            base.import_,
            max_processor_workers=workers,
            queue_processing_interval_seconds=INTERVAL,
            **imports,
        ),
        sabnzbd=dataclasses.replace(
            base.sabnzbd,
            categories=[
                CategoryConfig("Default", 0, 0, "complete"),
                CategoryConfig("tv", 1, 1, "tv"),
            ],
        ),
    )


@pytest.fixture
def env(tmp_path):
    """A started service over a temp store; stopped (and checked idle) after the test."""
    reactor = SyncReactor()
    importer = FakeImporter()
    store = QueueStore(tmp_path / "q.db", max_attempts=2)
    queue = QueueService(reactor, store, importer, config(), worker="test:1", threadpool=SyncPool())
    yield reactor, store, importer, queue
    if not queue._stopping:
        for _, _, _, d in importer.calls:
            if not d.called:
                d.errback(ImportFailed("test over"))
        result(queue.stop())
    assert reactor.getDelayedCalls() == []  # no poll, purge, watch or grace timer left


def result(d: defer.Deferred):
    """The value of an already fired Deferred (re-raising its failure)."""
    box: list = []
    d.addBoth(box.append)
    assert box, "Deferred has not fired"
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]


def test_add_wakes_the_processor_at_once(env):
    """An added item is claimed and imported without waiting for the poll."""
    reactor, store, importer, queue = env
    queue.start()
    item = result(queue.add(NZB, "Show.nzb", "tv"))
    assert [(c[0], c[1], c[2]) for c in importer.calls] == [(NZB, "Show.nzb", "tv")]
    assert store.get(item.id).state == State.PROCESSING
    importer.finish(0)
    done = store.get(item.id)
    assert (done.state, done.target_path, done.size) == (State.COMPLETED, "/complete/x", 123)


def test_add_resolves_category_and_priority(env):
    """Unknown categories become Default; -100 takes the category's priority; -2 adds paused."""
    _, _, _, queue = env
    unknown = result(queue.add(NZB, "a.nzb", "nosuch"))
    assert (unknown.category, unknown.priority) == ("Default", Priority.NORMAL)
    tv = result(queue.add(NZB, "b.nzb", "TV", priority=-100))
    assert (tv.category, tv.priority) == ("tv", Priority.HIGH)
    held = result(queue.add(NZB, "c.nzb", None, priority=-2))
    assert held.state == State.PAUSED
    with pytest.raises(QueueError):
        result(queue.add(NZB, "d.nzb", None, priority=7))


def test_at_most_max_workers_at_once(env):
    """With two workers a third item waits until one import finishes, then starts at once."""
    _, store, importer, queue = env
    queue.start()
    for name in ("1.nzb", "2.nzb", "3.nzb"):
        queue.add(NZB, name)
    assert [c[1] for c in importer.calls] == ["1.nzb", "2.nzb"]
    assert queue.running == {1, 2}
    importer.finish(1)
    assert [c[1] for c in importer.calls] == ["1.nzb", "2.nzb", "3.nzb"]
    assert store.counts()[State.PROCESSING] == 2


def test_polls_for_items_other_processes_enqueued(env):
    """An item written straight into the database is picked up at the next poll."""
    reactor, store, importer, queue = env
    queue.start()
    store.enqueue(NZB, "other.nzb", "Default", Priority.NORMAL, "cli")
    reactor.advance(INTERVAL - 0.1)
    assert importer.calls == []
    reactor.advance(0.1)
    assert [c[1] for c in importer.calls] == ["other.nzb"]


def test_transient_error_retries_then_fails(env):
    """A provider timeout puts the item back (picked up at the next poll) until attempts run out."""
    reactor, store, importer, queue = env
    queue.start()
    item = result(queue.add(NZB, "a.nzb"))
    importer.calls[0][3].errback(NNTPTimeout("provider x: no answer in 30 s"))
    assert store.get(item.id).state == State.PENDING
    reactor.advance(INTERVAL)
    assert len(importer.calls) == 2
    importer.calls[1][3].errback(NNTPTimeout("provider x: no answer in 30 s"))
    failed = store.get(item.id)
    assert (failed.state, failed.attempts, failed.error) == (
        State.FAILED,
        2,
        "provider x: no answer in 30 s",
    )


def test_import_failed_is_final_and_waiters_hear_it(env):
    """ImportFailed fails the item at once with its message; wait_for fires with it."""
    _, _, importer, queue = env
    queue.start()
    item = result(queue.add(NZB, "bad.nzb"))
    waiting = queue.wait_for(item.id)
    importer.calls[0][3].errback(ImportFailed("bad.nzb: line 3: not well-formed XML"))
    settled = result(waiting)
    assert (settled.state, settled.error) == (State.FAILED, "bad.nzb: line 3: not well-formed XML")


def test_unexpected_exception_fails_the_item(env):
    """A bug in the importer fails the item with a readable reason instead of hanging it."""
    _, store, importer, queue = env
    queue.start()
    item = result(queue.add(NZB, "a.nzb"))
    importer.calls[0][3].errback(KeyError("boom"))
    failed = store.get(item.id)
    assert failed.state == State.FAILED and "internal error: KeyError('boom')" == failed.error


def test_wait_for_sees_another_process_finish(env, tmp_path):
    """A waiter learns of an item completed through another connection within one poll."""
    reactor, store, _, queue = env
    item = result(queue.add(NZB, "a.nzb"))  # processor not started: nobody here claims
    waiting = queue.wait_for(item.id)
    other = QueueStore(tmp_path / "q.db")
    other.claim("elsewhere:2")
    other.complete(item.id, "/complete/x", 5, worker="elsewhere:2")
    other.close()
    assert not waiting.called
    reactor.advance(INTERVAL)
    assert result(waiting).state == State.COMPLETED
    assert not queue._waiters.watching  # no waiters left: the watch loop stopped


def test_wait_for_a_deleted_item_fails(env):
    """Deleting an item someone waits for fails the wait with QueueItemNotFound."""
    _, _, _, queue = env
    item = result(queue.add(NZB, "a.nzb"))
    waiting = queue.wait_for(item.id)
    result(queue.delete(item.id))
    with pytest.raises(QueueItemNotFound, match="deleted"):
        result(waiting)


def test_cancel_stops_a_running_import(env):
    """Cancelling a processing item cancels its import and records no result."""
    _, store, importer, queue = env
    queue.start()
    item = result(queue.add(NZB, "a.nzb"))
    waiting = queue.wait_for(item.id)
    assert result(queue.cancel(item.id)).state == State.CANCELLED
    assert importer.calls[0][3].called  # cancelled → CancelledError
    assert store.get(item.id).state == State.CANCELLED
    assert result(waiting).state == State.CANCELLED
    assert queue.running == frozenset()


def test_pause_processing_claims_nothing_until_resumed(env):
    """While the processor is paused, adds and polls claim nothing; resume claims at once."""
    reactor, _, importer, queue = env
    queue.start()
    queue.pause_processing()
    queue.add(NZB, "a.nzb")
    reactor.advance(INTERVAL * 3)
    assert importer.calls == [] and queue.processing_paused
    queue.resume_processing()
    assert len(importer.calls) == 1


def test_retry_and_resume_wake_the_processor(env):
    """retry of a failed item and resume of a paused one start an import without a poll."""
    _, _, importer, queue = env
    queue.start()
    failed = result(queue.add(NZB, "a.nzb"))
    importer.calls[0][3].errback(ImportFailed("no"))
    result(queue.retry(failed.id))
    assert len(importer.calls) == 2
    importer.finish(1)
    held = result(queue.add(NZB, "b.nzb", priority=-2))
    assert len(importer.calls) == 2
    result(queue.resume(held.id))
    assert len(importer.calls) == 3


def test_stop_waits_for_running_imports(env):
    """stop() lets a running import finish and record its result before closing."""
    _, _, importer, queue = env
    queue.start()
    item = result(queue.add(NZB, "a.nzb"))
    stopping = queue.stop()
    assert not stopping.called
    importer.finish(0)
    result(stopping)
    reopened = QueueStore(queue._store.path)
    assert reopened.get(item.id).state == State.COMPLETED
    assert reopened.live_workers(1e12, 1e12) == []  # heartbeat removed
    reopened.close()


def test_stop_cancels_slow_imports_and_requeues_them(env):
    """An import still running after the grace period is cancelled and its item is pending again."""
    reactor, _, importer, queue = env
    queue.start()
    item = result(queue.add(NZB, "a.nzb"))
    stopping = queue.stop()
    reactor.advance(service_module.STOP_GRACE_SECONDS)
    result(stopping)
    assert importer.calls[0][3].called
    reopened = QueueStore(queue._store.path)
    back = reopened.get(item.id)
    assert (back.state, back.attempts) == (State.PENDING, 0)
    reopened.close()


def test_start_beats_and_purges(env):
    """A started processor records its heartbeat each poll and purges old items at once."""
    reactor, store, _, queue = env
    old = store.enqueue(NZB, "old.nzb", "Default", Priority.NORMAL, "cli")
    store._conn.execute("UPDATE queue_items SET state='failed', updated_at=0 WHERE id=?", (old.id,))
    queue.start()
    assert store.count() == 0
    assert store.live_workers(reactor.seconds() + 1e10, 1e12) == ["test:1"]
    assert reactor.getDelayedCalls()


def test_recover_and_api_key(env):
    """recover() and api_key() reach the store; the override comes from the config."""
    _, store, _, queue = env
    item = store.enqueue(NZB, "a.nzb", "Default", Priority.NORMAL, "cli")
    store.claim("dead:1")
    assert result(queue.recover()) == 0  # it beat when it claimed
    store.forget_worker("dead:1")
    assert result(queue.recover()) == 1
    assert store.get(item.id).state == State.PENDING
    key = result(queue.api_key())
    assert len(key) == 32 and result(queue.api_key("mine")) == "mine"


def test_enqueue_by_another_process_is_seen_within_a_change_check(env, tmp_path):
    """A commit from another connection wakes the processor at the next change check."""
    reactor, store, importer, queue = env
    queue.start()
    other = QueueStore(tmp_path / "q.db")
    try:
        other.enqueue(NZB, "Other.nzb", "tv", Priority.NORMAL, "cli")
    finally:
        other.close()
    assert importer.calls == []
    reactor.advance(service_module.CHANGE_CHECK_SECONDS)
    assert service_module.CHANGE_CHECK_SECONDS < INTERVAL
    assert [c[1] for c in importer.calls] == ["Other.nzb"]


def test_settled_listeners_hear_each_finished_item(env):
    """A listener is told once per item this process completes, with its final state."""
    _, _, importer, queue = env
    heard = []
    queue.add_settled_listener(heard.append)
    queue.start()
    item = result(queue.add(NZB, "Show.nzb", "tv"))
    assert heard == []
    importer.finish(0)
    assert [(i.id, i.state) for i in heard] == [(item.id, State.COMPLETED)]


def test_poll_takes_up_the_items_of_a_dead_processor(env, caplog):
    """An item held by a processor without a heartbeat is queued again at the next poll
    and imported here; the warning names that processor."""
    reactor, store, importer, queue = env
    item = store.enqueue(NZB, "a.nzb", "Default", Priority.NORMAL, "cli")
    store.claim("crashed:7")
    queue.start()
    assert importer.calls == []  # it beat when it claimed: still taken for alive
    store.forget_worker("crashed:7")
    with caplog.at_level("WARNING"):
        reactor.advance(INTERVAL)
    assert "1 item(s) held by crashed:7" in caplog.text
    again = store.get(item.id)
    assert (again.state, again.worker, again.attempts) == (State.PROCESSING, "test:1", 2)
    importer.finish(0)
    assert store.get(item.id).state == State.COMPLETED
