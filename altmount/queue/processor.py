"""The import processor: claims queue items and runs their imports.

Up to `import.max_processor_workers` imports run at once. `QueueService` owns
the store, the DB thread and the timers; it hands this class its `db` caller
and wakes it (on add, retry, resume, each poll and each foreign commit).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet import defer
from twisted.python.failure import Failure

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
from altmount.queue.model import Progress, QueueItem, State
from altmount.queue.store import QueueStore

__all__ = [
    "ImportProcessor",
    "Importer",
    "SABNZBD_SOURCES",
    "STOP_GRACE_SECONDS",
    "TRANSIENT_ERRORS",
    "log_failure",
]

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
#: stop() lets running imports finish for this long (an import is a few round
#: trips), then cancels the rest and puts them back to pending for the next start.
STOP_GRACE_SECONDS = 10.0


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


def log_failure(failure: Failure, what: str) -> None:
    """Log a failed background Deferred with its traceback (an errback)."""
    log.error(
        "%s: %s",
        what,
        failure.getErrorMessage(),
        exc_info=(failure.type, failure.value, failure.getTracebackObject()),
    )


class ImportProcessor:
    """Claims items for `worker` and imports them; reports each outcome.

    `outcome(item)` hears every recorded result (waiters fire on it);
    `finished(item)` hears items that settled for good (the settled listeners);
    `imported(item, result)`, when given, runs after a successful import and before
    it is recorded (the import strategy's links); its failure fails the item.
    """

    def __init__(
        self,
        reactor: Any,
        db: Callable[..., defer.Deferred],
        store: QueueStore,
        importer: Importer,
        config: Config,
        worker: str,
        *,
        outcome: Callable[[QueueItem], object],
        finished: Callable[[QueueItem], object],
        imported: Callable[[QueueItem, Any], defer.Deferred] | None = None,
    ) -> None:
        self._reactor = reactor
        self._db = db
        self._store = store
        self._importer = importer
        self._config = config
        self._worker = worker
        self._outcome = outcome
        self._finished_item = finished
        self._imported = imported
        self._enabled = False
        self._stopping = False
        self._paused = False
        self._filling: defer.Deferred | None = None
        self._refill = False
        self._running: dict[int, defer.Deferred] = {}
        self._imports: dict[int, defer.Deferred] = {}
        self._abandoned: set[int] = set()
        #: Running imports here: item id → (share of stages done, reactor time started).
        self._progress: dict[int, tuple[float, float]] = {}

    @property
    def paused(self) -> bool:
        """True while no new items are claimed (SABnzbd `mode=pause`)."""
        return self._paused

    @property
    def running(self) -> frozenset[int]:
        """Ids of the items this process is importing now."""
        return frozenset(self._running)

    def progress(self) -> dict[int, Progress]:
        """How far each import running in this process is, by item id."""
        now = self._reactor.seconds()
        return {
            item_id: Progress(done, max(0.0, now - started))
            for item_id, (done, started) in self._progress.items()
        }

    def pause(self) -> None:
        """Claim no new items; running imports finish."""
        self._paused = True

    def resume(self) -> None:
        """Undo `pause` and look for work at once."""
        self._paused = False
        self.wake()

    def enable(self) -> None:
        """Allow claiming (the service has started)."""
        self._enabled = True

    def wake(self) -> None:
        """Claim items until every worker slot is busy or the queue is empty."""
        if not self._enabled or self._stopping or self._paused:
            return
        if self._filling is not None:
            self._refill = True  # a claim is in flight; look again when it is done
            return
        self._filling = self._fill()
        self._filling.addErrback(log_failure, "queue claim")
        self._filling.addBoth(self._filled)

    def abandon(self, item_id: int) -> None:
        """Stop this process's import of the item, if any; its result is not recorded."""
        if item_id in self._running:
            self._abandoned.add(item_id)
            importing = self._imports.get(item_id)
            if importing is not None:
                importing.cancel()

    @defer.inlineCallbacks
    def stop(self):
        """Claim no more; let running imports finish, cancelling them after
        STOP_GRACE_SECONDS (their items go back to pending)."""
        self._stopping = True
        if self._filling is not None:
            yield self._filling
        if self._running:
            deadline = self._reactor.callLater(STOP_GRACE_SECONDS, self._cancel_imports)
            yield defer.DeferredList(list(self._running.values()))
            if deadline.active():
                deadline.cancel()

    def _filled(self, _: object) -> None:
        self._filling = None
        if self._refill:
            self._refill = False
            self.wake()

    @defer.inlineCallbacks
    def _fill(self):
        slots = self._config.import_.max_processor_workers
        while len(self._running) < slots and not self._stopping and not self._paused:
            item = yield self._db(self._store.claim, self._worker)
            if item is None:
                return
            if self._stopping:
                yield self._update(self._store.release, item.id, worker=self._worker)
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
            running.addErrback(log_failure, f"queue item {item.id}")
            running.addBoth(self._finished, item.id)

    def _finished(self, final: QueueItem | None, item_id: int) -> None:
        del self._running[item_id]
        self._abandoned.discard(item_id)
        if final is not None and final.state == State.PENDING:
            return  # a transient failure: retry at the next poll, not in a tight loop
        if final is not None:
            self._finished_item(final)
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
            if self._imported is not None:
                # Before the item is recorded as completed: a client that sees it
                # completed must find its links (SABnzbd `storage`) there.
                yield self._imported(item, result)
        except defer.CancelledError:
            if item.id not in self._abandoned:  # stop(): let the next start redo it
                yield self._update(self._store.release, item.id, worker=self._worker)
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
            final = yield self._update(
                self._store.fail, item.id, reason, transient, worker=self._worker
            )
        else:
            size = sum(record.size for record in result.files)
            final = yield self._update(
                self._store.complete, item.id, result.release_dir, size, worker=self._worker
            )
        finally:
            self._imports.pop(item.id, None)
            self._progress.pop(item.id, None)
        if final is not None:
            _log_outcome(final)
            self._outcome(final)
        return final

    @defer.inlineCallbacks
    def _update(self, method, *args, **kwargs):
        """Record an outcome; None if the item was cancelled, deleted or taken over meanwhile."""
        try:
            item = yield self._db(method, *args, **kwargs)
        except QueueError as exc:
            log.info("import result not recorded: %s", exc)
            return None
        return item

    def _cancel_imports(self) -> None:
        log.warning(
            "stopping: cancelling %d import(s) still running after %.0f s; they will "
            "be retried at the next start",
            len(self._imports),
            STOP_GRACE_SECONDS,
        )
        for importing in list(self._imports.values()):
            importing.cancel()


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
