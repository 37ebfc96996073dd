"""The queue's asynchronous face and its processor, for the web layers and the CLI.

Every `QueueStore` call runs on one dedicated thread (`deferToThreadPool` on a
1-thread pool), so the sqlite connection is only ever used from that thread and
the reactor never waits on the disk. The processor imports up to
`import.max_processor_workers` items at once; it polls every
`import.queue_processing_interval_seconds` (another process may have enqueued)
and is woken at once by `add`, `retry` and `resume` in this process.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from altmount.config import Config
from altmount.errors import (
    AltmountError,
    NNTPConnectionLost,
    NNTPTimeout,
    NoProvidersAvailable,
    ProviderUnavailable,
    QueueError,
    QueueItemNotFound,
)
from altmount.queue.model import (
    Progress,
    QueueItem,
    State,
    gunzip_nzb,
    nzb_bytes,
    resolve_priority,
)
from altmount.queue.store import QueueStore

__all__ = ["QueueService", "Importer", "TRANSIENT_ERRORS", "default_worker_name"]

log = logging.getLogger(__name__)

#: Provider connectivity problems: the NZB may be fine, so the item is retried
#: (up to `import.max_attempts`). A bad NZB or a missing article is final.
TRANSIENT_ERRORS: tuple[type[AltmountError], ...] = (
    NoProvidersAvailable,
    NNTPTimeout,
    ProviderUnavailable,
    NNTPConnectionLost,
)
#: Items added through the SABnzbd API: their release folder is named after the NZB's
#: file name (or `nzbname`), as SABnzbd names a job, so Sonarr finds it by that name.
SABNZBD_SOURCES = frozenset({"sabnzbd", "url"})
#: Old failed/completed items are purged this often (retention is in hours/days).
PURGE_INTERVAL_SECONDS = 3600.0
#: stop() lets running imports finish for this long (an import is a few round
#: trips), then cancels the rest and puts them back to pending for the next start.
STOP_GRACE_SECONDS = 10.0
#: How often we ask SQLite whether another process committed (an `altmount import`
#: enqueueing, another server finishing an item). The check is one cheap PRAGMA on
#: the DB thread, and it makes such changes visible in a fraction of a second
#: instead of one poll interval.
CHANGE_CHECK_SECONDS = 0.25
#: States after which an item changes no more without a user's action.
_SETTLED = frozenset({State.COMPLETED, State.FAILED, State.CANCELLED})


class Importer(Protocol):
    """What the processor needs from `altmount.importer.DirectImporter`."""

    def import_nzb(
        self,
        data: bytes,
        nzb_filename: str,
        category: str | None = None,
        progress: Callable[[float], object] | None = None,
        name_from_file: bool = False,
    ) -> defer.Deferred: ...


def default_worker_name() -> str:
    """This process's worker name as stored with claimed items: "host:pid"."""
    return f"{socket.gethostname()}:{os.getpid()}"


class QueueService:
    """Deferred-returning queue operations plus the import processor.

    The service owns `store` and the thread pool from construction on: `stop()`
    closes and stops them. `worker` names this process in claimed items
    (default "host:pid"); `threadpool` must have exactly one thread.
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
    ) -> None:
        self._reactor = reactor
        self._store = store
        self._importer = importer
        self._config = config
        self.worker = worker or default_worker_name()
        self._interval = config.import_.queue_processing_interval_seconds
        # One thread: the sqlite connection is then used by that thread only, and
        # store calls run in the order they were made.
        self._pool = threadpool or ThreadPool(minthreads=1, maxthreads=1, name="altmount-queue-db")
        self._pool.start()
        self._poll: LoopingCall | None = None
        self._purger: LoopingCall | None = None
        self._changes: LoopingCall | None = None
        self._data_version: int | None = None
        self._watch: LoopingCall | None = None
        self._started = False
        self._stopping = False
        self._paused = False
        self._filling: defer.Deferred | None = None
        self._refill = False
        self._running: dict[int, defer.Deferred] = {}
        self._imports: dict[int, defer.Deferred] = {}
        self._abandoned: set[int] = set()
        self._settled_listeners: list[Callable[[QueueItem], object]] = []
        self._deleted_listeners: list[Callable[[QueueItem], object]] = []
        #: Running imports here: item id → (share of stages done, reactor time started).
        self._progress: dict[int, tuple[float, float]] = {}
        self._waiters: dict[int, list[defer.Deferred]] = {}

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
            self._abandon(item_id)
            self._settled(item)
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
            self._abandon(item_id)
            self._fire_waiters(
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
        """Put items a crashed process left processing back to pending; fires with how many.

        Call once at server start, before `start()`.
        """
        return self._db(self._store.recover)

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
        return self._paused

    def progress(self) -> dict[int, Progress]:
        """How far each import running in this process is, by item id."""
        now = self._reactor.seconds()
        return {
            item_id: Progress(done, max(0.0, now - started))
            for item_id, (done, started) in self._progress.items()
        }

    @property
    def running(self) -> frozenset[int]:
        """Ids of the items this process is importing now."""
        return frozenset(self._running)

    def pause_processing(self) -> None:
        """Claim no new items (running imports finish); for SABnzbd `mode=pause`."""
        self._paused = True

    def resume_processing(self) -> None:
        """Undo `pause_processing` and look for work at once."""
        self._paused = False
        self.wake()

    def start(self) -> None:
        """Start polling for items, the hourly purge and the liveness heartbeat."""
        if self._started or self._stopping:
            return
        self._started = True
        self._poll = LoopingCall(self._tick)
        self._poll.clock = self._reactor
        self._poll.start(self._interval, now=True).addErrback(self._log_failure, "queue poll")
        self._changes = LoopingCall(self._check_changes)
        self._changes.clock = self._reactor
        self._changes.start(CHANGE_CHECK_SECONDS, now=True).addErrback(
            self._log_failure, "queue change check"
        )
        self._purger = LoopingCall(self._purge_logged)
        self._purger.clock = self._reactor
        self._purger.start(PURGE_INTERVAL_SECONDS, now=True).addErrback(
            self._log_failure, "queue purge"
        )

    def wake(self) -> None:
        """Claim items until every worker slot is busy or the queue is empty."""
        if not self._started or self._stopping or self._paused:
            return
        if self._filling is not None:
            self._refill = True  # a claim is in flight; look again when it is done
            return
        self._filling = self._fill()
        self._filling.addErrback(self._log_failure, "queue claim")
        self._filling.addBoth(self._filled)

    def _filled(self, _: object) -> None:
        self._filling = None
        if self._refill:
            self._refill = False
            self.wake()

    @defer.inlineCallbacks
    def _fill(self):
        slots = self._config.import_.max_processor_workers
        while len(self._running) < slots and not self._stopping and not self._paused:
            item = yield self._db(self._store.claim, self.worker)
            if item is None:
                return
            if self._stopping:
                yield self._db(self._store.release, item.id)
                return
            log.info(
                "importing %s (queue item %d, attempt %d)",
                item.nzb_name,
                item.id,
                item.attempts,
                extra={"nzo_id": item.nzo_id},
            )
            running = self._process(item)
            self._running[item.id] = running
            running.addErrback(self._log_failure, f"queue item {item.id}")
            running.addBoth(self._finished, item.id)

    def _finished(self, final: QueueItem | None, item_id: int) -> None:
        del self._running[item_id]
        self._abandoned.discard(item_id)
        if final is not None and final.state == State.PENDING:
            return  # a transient failure: retry at the next poll, not in a tight loop
        if final is not None:
            for listener in self._settled_listeners:
                listener(final)
        self.wake()

    @defer.inlineCallbacks
    def _process(self, item: QueueItem):
        try:
            data = yield self._db(self._store.nzb, item.id)
        except QueueItemNotFound:
            return None  # deleted (by another process) right after the claim
        if item.id in self._abandoned:
            return None  # cancelled or deleted while the NZB was read
        self._progress[item.id] = (0.0, self._reactor.seconds())

        def advanced(done: float) -> None:
            if item.id in self._progress:
                self._progress[item.id] = (done, self._progress[item.id][1])

        importing = self._importer.import_nzb(
            data,
            item.nzb_name,
            item.category,
            progress=advanced,
            name_from_file=item.source in SABNZBD_SOURCES,
        )
        self._imports[item.id] = importing
        try:
            result = yield importing
        except defer.CancelledError:
            if item.id not in self._abandoned:  # stop(): let the next start redo it
                yield self._db(self._store.release, item.id)
            return None
        except Exception as exc:  # noqa: BLE001 - any failure must settle the item
            transient = isinstance(exc, TRANSIENT_ERRORS)
            if not isinstance(exc, AltmountError):
                log.error(
                    "import of %s crashed",
                    item.nzb_name,
                    exc_info=exc,
                    extra={"nzo_id": item.nzo_id},
                )
            reason = str(exc) if isinstance(exc, AltmountError) else f"internal error: {exc!r}"
            final = yield self._update(self._store.fail, item.id, reason, transient)
        else:
            size = sum(record.size for record in result.files)
            final = yield self._update(self._store.complete, item.id, result.release_dir, size)
        finally:
            self._imports.pop(item.id, None)
            self._progress.pop(item.id, None)
        if final is not None:
            self._log_outcome(final)
            self._settled(final)
        return final

    @defer.inlineCallbacks
    def _update(self, method, *args):
        """Record an outcome; None if the item was cancelled or deleted meanwhile."""
        try:
            item = yield self._db(method, *args)
        except QueueError as exc:
            log.info("import result not recorded: %s", exc)
            return None
        return item

    @staticmethod
    def _log_outcome(item: QueueItem) -> None:
        ids = {"nzo_id": item.nzo_id}
        if item.state == State.COMPLETED:
            log.info(
                "imported %s → %s (%d bytes)",
                item.nzb_name,
                item.target_path,
                item.size,
                extra=ids,
            )
        elif item.state == State.FAILED:
            log.warning("import of %s failed: %s", item.nzb_name, item.error, extra=ids)
        else:
            log.warning(
                "import of %s failed (attempt %d, will retry): %s",
                item.nzb_name,
                item.attempts,
                item.error,
                extra=ids,
            )

    def _abandon(self, item_id: int) -> None:
        """Stop this process's import of the item, if any; its result is not recorded."""
        if item_id in self._running:
            self._abandoned.add(item_id)
            importing = self._imports.get(item_id)
            if importing is not None:
                importing.cancel()

    def _woken(self, item: QueueItem) -> QueueItem:
        self.wake()
        return item

    @defer.inlineCallbacks
    def _check_changes(self):
        version = yield self._db(self._store.data_version)
        if version != self._data_version:
            if self._data_version is not None:
                self.wake()
                if self._waiters:
                    yield self._check_waiters()
            self._data_version = version

    def _tick(self) -> defer.Deferred:
        self.wake()
        return self._db(self._store.heartbeat, self.worker, time.time())

    def _purge_logged(self) -> defer.Deferred:
        def report(count: int) -> None:
            if count:
                log.info("purged %d old queue item(s)", count)

        return self.purge().addCallback(report)

    @staticmethod
    def _log_failure(failure: Failure, what: str) -> None:
        log.error(
            "%s: %s",
            what,
            failure.getErrorMessage(),
            exc_info=(failure.type, failure.value, failure.getTracebackObject()),
        )

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

        def forget(waiter: defer.Deferred) -> None:
            waiters = self._waiters.get(item_id, [])
            if waiter in waiters:
                waiters.remove(waiter)

        waiter: defer.Deferred = defer.Deferred(forget)
        self._waiters.setdefault(item_id, []).append(waiter)
        if self._watch is None:
            self._watch = LoopingCall(self._check_waiters)
            self._watch.clock = self._reactor
            self._watch.start(CHANGE_CHECK_SECONDS, now=True).addErrback(
                self._log_failure, "queue wait"
            )
        return waiter

    @defer.inlineCallbacks
    def _check_waiters(self):
        for item_id in [key for key, waiters in self._waiters.items() if waiters]:
            try:
                item = yield self._db(self._store.get, item_id)
            except QueueItemNotFound as exc:
                self._fire_waiters(item_id, Failure(exc))
            else:
                self._settled(item)
        self._waiters = {key: waiters for key, waiters in self._waiters.items() if waiters}
        if not self._waiters and self._watch is not None:
            self._watch.stop()
            self._watch = None

    def _settled(self, item: QueueItem) -> None:
        if item.state in _SETTLED:
            self._fire_waiters(item.id, item)

    def _fire_waiters(self, item_id: int, outcome: QueueItem | Failure) -> None:
        for waiter in self._waiters.pop(item_id, []):
            if isinstance(outcome, Failure):
                waiter.errback(outcome)
            else:
                waiter.callback(outcome)

    # -- shutdown ------------------------------------------------------------------------

    @defer.inlineCallbacks
    def stop(self):
        """Stop claiming, let running imports finish (cancelling them after a grace
        period: their items go back to pending), cancel waiters, close the store."""
        self._stopping = True
        for loop in (self._poll, self._changes, self._purger, self._watch):
            if loop is not None and loop.running:
                loop.stop()
        self._watch = None
        if self._filling is not None:
            yield self._filling
        if self._running:
            deadline = self._reactor.callLater(STOP_GRACE_SECONDS, self._cancel_imports)
            yield defer.DeferredList(list(self._running.values()))
            if deadline.active():
                deadline.cancel()
        for waiters in self._waiters.values():
            for waiter in list(waiters):
                waiter.cancel()
        self._waiters.clear()
        try:
            if self._started:
                yield self._db(self._store.forget_worker, self.worker)
            yield self._db(self._store.close)
        finally:
            self._pool.stop()

    def _cancel_imports(self) -> None:
        log.warning(
            "stopping: cancelling %d import(s) still running after %.0f s; they will "
            "be retried at the next start",
            len(self._imports),
            STOP_GRACE_SECONDS,
        )
        for importing in list(self._imports.values()):
            importing.cancel()
