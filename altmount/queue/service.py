"""The queue's asynchronous face, for the web layers and the CLI.

Every `QueueStore` call runs on one dedicated thread (`deferToThreadPool` on a
1-thread pool), so the sqlite connection is only ever used from that thread and
the reactor never waits on the disk. The service owns the timers: the processor
(`altmount.queue.processor`, up to `import.max_processor_workers` imports at
once) is woken every `import.queue_processing_interval_seconds` (another
process may have enqueued), when another process commits, and at once by
`add`, `retry` and `resume` here; waiters (`altmount.queue.waiting`) hear
each outcome.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from altmount.config import Config
from altmount.errors import QueueItemNotFound
from altmount.queue._workers import stale_after
from altmount.queue.model import Progress, QueueItem, State, gunzip_nzb, nzb_bytes, resolve_priority
from altmount.queue.processor import (
    STOP_GRACE_SECONDS,
    TRANSIENT_ERRORS,
    Importer,
    ImportProcessor,
    log_failure,
)
from altmount.queue.store import QueueStore
from altmount.queue.waiting import CHANGE_CHECK_SECONDS, SettledWaiters

__all__ = [
    "CHANGE_CHECK_SECONDS",
    "Importer",
    "QueueService",
    "STOP_GRACE_SECONDS",
    "TRANSIENT_ERRORS",
    "default_worker_name",
]

log = logging.getLogger(__name__)

#: Old failed/completed items are purged this often (retention is in hours/days).
PURGE_INTERVAL_SECONDS = 3600.0


def default_worker_name() -> str:
    """This process's worker name as stored with claimed items: "host:pid"."""
    return f"{socket.gethostname()}:{os.getpid()}"


class QueueService:
    """Deferred-returning queue operations plus the import processor.

    The service owns `store` and the thread pool from construction on: `stop()`
    closes and stops them. `worker` names this process in claimed items
    (default "host:pid"); `threadpool` must have exactly one thread.
    `on_imported(item, result)` runs after each successful import, before it is
    recorded as completed (the import strategy writes its links there).
    """

    def __init__(
        self,
        reactor: Any,
        store: QueueStore,
        importer: Importer,
        config: Config,
        *,
        worker: str | None = None,
        threadpool: ThreadPool | None = None,
        on_imported: Callable[[QueueItem, Any], defer.Deferred] | None = None,
    ) -> None:
        self._reactor = reactor
        self._store = store
        self._importer = importer
        self._config = config
        self.worker = worker or default_worker_name()
        self._interval = config.import_.queue_processing_interval_seconds
        #: A processor silent this long is taken for dead and its items are queued again.
        self.stale_after = stale_after(self._interval)
        # One thread: the sqlite connection is then used by that thread only, and
        # store calls run in the order they were made.
        self._pool = threadpool or ThreadPool(minthreads=1, maxthreads=1, name="altmount-queue-db")
        self._pool.start()
        self._poll: LoopingCall | None = None
        self._purger: LoopingCall | None = None
        self._changes: LoopingCall | None = None
        self._data_version: int | None = None
        self._started = False
        self._stopping = False
        self._settled_listeners: list[Callable[[QueueItem], object]] = []
        self._deleted_listeners: list[Callable[[QueueItem], object]] = []
        self._waiters = SettledWaiters(reactor, self.get)
        self._processor = ImportProcessor(
            reactor,
            self._db,
            store,
            importer,
            config,
            self.worker,
            outcome=self._waiters.settled,
            finished=self._tell_settled,
            imported=on_imported,
        )

    # -- store operations --------------------------------------------------------

    def _db(self, function, *args, **kwargs) -> defer.Deferred:
        return deferToThreadPool(self._reactor, self._pool, function, *args, **kwargs)

    def add(
        self,
        nzb: bytes,
        nzb_name: str,
        category: str | None = None,
        priority: int | None = None,
        source: str = "api",
        paused: bool = False,
    ) -> defer.Deferred[QueueItem]:
        """Enqueue an NZB (gzip accepted) and wake the processor; fires with the new item.

        `category` is resolved as SABnzbd does (unknown or None → Default);
        `priority` is SABnzbd's number: None or -100 → the category's priority,
        -2 → added paused. Fails with QueueError for a bad priority and
        NZBParseError for a gzip stream that is corrupt or too large.
        """
        resolved = self._config.category(category)
        level, paused_by_priority = resolve_priority(priority, resolved.priority)

        def enqueue() -> QueueItem:
            data = gunzip_nzb(nzb)
            return self._store.enqueue(
                data,
                nzb_name,
                resolved.name,
                level,
                source,
                paused=paused or paused_by_priority,
                size=nzb_bytes(data),
            )

        return self._db(enqueue).addCallback(self._woken)

    def get(self, item_id: int) -> defer.Deferred[QueueItem]:
        """The item with this id; fails with QueueItemNotFound."""
        return self._db(self._store.get, item_id)

    def get_by_nzo(self, nzo_id: str) -> defer.Deferred[QueueItem]:
        """The item with this SABnzbd nzo_id; fails with QueueItemNotFound."""
        return self._db(self._store.get_by_nzo, nzo_id)

    def nzb(self, item_id: int) -> defer.Deferred[bytes]:
        """The NZB bytes stored with the item."""
        return self._db(self._store.nzb, item_id)

    def list(
        self,
        states: Iterable[State] | None = None,
        search: str | None = None,
        category: str | None = None,
        offset: int = 0,
        limit: int = 50,
        sort: str = "created_at",
        descending: bool = True,
    ) -> defer.Deferred[list[QueueItem]]:
        """A page of items; see `QueueStore.list` for the filters and sort keys."""
        return self._db(self._store.list, states, search, category, offset, limit, sort, descending)

    def count(
        self,
        states: Iterable[State] | None = None,
        search: str | None = None,
        category: str | None = None,
    ) -> defer.Deferred[int]:
        """How many items `list` would page through with these filters."""
        return self._db(self._store.count, states, search, category)

    def counts(self) -> defer.Deferred[dict[State, int]]:
        """Items per state (every state present, zero included)."""
        return self._db(self._store.counts)

    def retry(self, item_id: int) -> defer.Deferred[QueueItem]:
        """Put a failed or cancelled item back to pending (attempts reset) and wake."""
        return self._db(self._store.retry, item_id).addCallback(self._woken)

    def pause(self, item_id: int) -> defer.Deferred[QueueItem]:
        """Hold a pending item; the processor skips it until resumed."""
        return self._db(self._store.pause, item_id)

    def resume(self, item_id: int) -> defer.Deferred[QueueItem]:
        """Release a paused item back to pending and wake."""
        return self._db(self._store.resume, item_id).addCallback(self._woken)

    def cancel(self, item_id: int) -> defer.Deferred[QueueItem]:
        """Cancel a pending, paused or processing item (a running import here is stopped)."""

        def cancelled(item: QueueItem) -> QueueItem:
            self._processor.abandon(item_id)
            self._waiters.settled(item)
            return item

        return self._db(self._store.cancel, item_id).addCallback(cancelled)

    def delete(self, item_id: int) -> defer.Deferred[None]:
        """Remove the item and its NZB whatever its state (a running import here is stopped).

        The imported files stay (a library may point at them); the deleted-item
        listeners hear of it (the import strategy removes the item's links)."""

        def remove() -> QueueItem:
            item = self._store.get(item_id)
            self._store.delete(item_id)
            return item

        def deleted(item: QueueItem) -> None:
            self._processor.abandon(item_id)
            self._waiters.fire(
                item_id, Failure(QueueItemNotFound(f"queue item {item_id} was deleted"))
            )
            for listener in self._deleted_listeners:
                listener(item)

        return self._db(remove).addCallback(deleted)

    def purge(self) -> defer.Deferred[int]:
        """Delete items past `import.failed_item_retention_hours` / `history_retention_days`."""
        imports = self._config.import_
        return self._db(
            self._store.purge,
            time.time(),
            imports.failed_item_retention_hours,
            imports.history_retention_days,
        )

    def recover(self) -> defer.Deferred[int]:
        """Put items that dead processors left processing back to pending; fires with how
        many. Items of live ones (another server, an `altmount import --wait`) stay theirs.

        Call at server start, before `start()`; the poll repeats it for processors that
        die later.
        """
        return self._db(self._store.recover, self.stale_after).addCallback(
            lambda recovered: sum(recovered.values())
        )

    def api_key(self, override: str | None = None) -> defer.Deferred[str]:
        """The SABnzbd API key: `override` (default `api.key_override`) or the stored one."""
        key = self._config.api.key_override if override is None else override
        return self._db(self._store.api_key, key)

    def optimize(self) -> defer.Deferred[None]:
        """VACUUM and ANALYZE the database."""
        return self._db(self._store.optimize)

    # -- processor -----------------------------------------------------------------

    @property
    def processing_paused(self) -> bool:
        """True while the whole processor is paused (SABnzbd `mode=pause`)."""
        return self._processor.paused

    def progress(self) -> dict[int, Progress]:
        """How far each import running in this process is, by item id."""
        return self._processor.progress()

    @property
    def running(self) -> frozenset[int]:
        """Ids of the items this process is importing now."""
        return self._processor.running

    def pause_processing(self) -> None:
        """Claim no new items (running imports finish); for SABnzbd `mode=pause`."""
        self._processor.pause()

    def resume_processing(self) -> None:
        """Undo `pause_processing` and look for work at once."""
        self._processor.resume()

    def start(self) -> None:
        """Start polling for items, the hourly purge and the liveness heartbeat."""
        if self._started or self._stopping:
            return
        self._started = True
        self._processor.enable()
        self._poll = LoopingCall(self._tick)
        self._poll.clock = self._reactor
        self._poll.start(self._interval, now=True).addErrback(log_failure, "queue poll")
        self._change_stamp: tuple[int, ...] | None = None
        self._changes = LoopingCall(self._check_changes)
        self._changes.clock = self._reactor
        self._changes.start(CHANGE_CHECK_SECONDS, now=True).addErrback(
            log_failure, "queue change check"
        )
        self._purger = LoopingCall(self._purge_logged)
        self._purger.clock = self._reactor
        self._purger.start(PURGE_INTERVAL_SECONDS, now=True).addErrback(log_failure, "queue purge")

    def wake(self) -> None:
        """Claim items until every worker slot is busy or the queue is empty."""
        self._processor.wake()

    def _tell_settled(self, item: QueueItem) -> None:
        for listener in self._settled_listeners:
            listener(item)

    def _woken(self, item: QueueItem) -> QueueItem:
        self.wake()
        return item

    @defer.inlineCallbacks
    def _check_changes(self):
        stamp = self._store.change_stamp()
        if stamp is not None and stamp == self._change_stamp:
            return  # no commit since the last check: nothing to ask the database thread
        self._change_stamp = stamp
        version = yield self._db(self._store.data_version)
        if version != self._data_version:
            if self._data_version is not None:
                self.wake()
                if self._waiters:
                    yield self._waiters.check()
            self._data_version = version

    def _tick(self) -> defer.Deferred:
        self.wake()
        beating = self._db(self._store.heartbeat, self.worker, time.time())
        beating.addCallback(lambda _: self._db(self._store.recover, self.stale_after))
        return beating.addCallback(self._recovered)

    def _recovered(self, recovered: dict[str, int]) -> None:
        for worker, count in recovered.items():
            log.warning(
                "queue: %d item(s) held by %s, which stopped (no heartbeat for %.0f s or its "
                "process is gone), are queued again",
                count,
                worker,
                self.stale_after,
            )
        if recovered:
            self.wake()

    def _purge_logged(self) -> defer.Deferred:
        def report(count: int) -> None:
            if count:
                log.info("purged %d old queue item(s)", count)

        return self.purge().addCallback(report)

    # -- waiting for results -----------------------------------------------------------

    def add_settled_listener(self, listener: Callable[[QueueItem], object]) -> None:
        """Call `listener(item)` whenever this process finishes processing an item
        (completed or failed for good), e.g. to time imports without polling."""
        self._settled_listeners.append(listener)

    def add_deleted_listener(self, listener: Callable[[QueueItem], object]) -> None:
        """Call `listener(item)` (the item as it was) after `delete` removed it."""
        self._deleted_listeners.append(listener)

    def wait_for(self, item_id: int) -> defer.Deferred[QueueItem]:
        """Fires with the item once it is completed, failed or cancelled, whoever processes it.

        Items settled by another process are seen within CHANGE_CHECK_SECONDS;
        fails with QueueItemNotFound if the item is (or gets) deleted.
        """
        return self._waiters.wait_for(item_id)

    # -- shutdown ------------------------------------------------------------------------

    @defer.inlineCallbacks
    def stop(self):
        """Stop claiming, let running imports finish (cancelling them after a grace
        period: their items go back to pending), cancel waiters, close the store."""
        self._stopping = True
        draining = self._processor.stop()
        for loop in (self._poll, self._changes, self._purger):
            if loop is not None and loop.running:
                loop.stop()
        self._waiters.stop_watching()
        yield draining
        self._waiters.cancel_all()
        try:
            if self._started:
                yield self._db(self._store.forget_worker, self.worker)
            yield self._db(self._store.close)
        finally:
            self._pool.stop()
