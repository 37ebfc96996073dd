"""Waiting for queue items to settle, whoever processes them.

A waiter fires when the item is completed, failed or cancelled; it fails with
QueueItemNotFound once the item is deleted. Items settled by this process fire
at once (`settled`); items settled by another process are seen by a poll of
the store every CHANGE_CHECK_SECONDS while anyone waits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from altmount.errors import QueueItemNotFound
from altmount.queue.model import QueueItem, State
from altmount.queue.processor import log_failure

__all__ = ["CHANGE_CHECK_SECONDS", "SettledWaiters"]

#: How often we ask SQLite whether another process committed (an `altmount import`
#: enqueueing, another server finishing an item). The check is one cheap PRAGMA on
#: the DB thread, and it makes such changes visible in a fraction of a second
#: instead of one poll interval.
CHANGE_CHECK_SECONDS = 0.25
#: States after which an item changes no more without a user's action.
_SETTLED = frozenset({State.COMPLETED, State.FAILED, State.CANCELLED})


class SettledWaiters:
    """Deferreds waiting for items to settle; `fetch(item_id)` reads an item."""

    def __init__(self, reactor: Any, fetch: Callable[[int], defer.Deferred]) -> None:
        self._reactor = reactor
        self._fetch = fetch
        self._waiters: dict[int, list[defer.Deferred]] = {}
        self._watch: LoopingCall | None = None

    def __bool__(self) -> bool:
        return bool(self._waiters)

    @property
    def watching(self) -> bool:
        """True while the store is polled for other processes' outcomes."""
        return self._watch is not None

    def wait_for(self, item_id: int) -> defer.Deferred[QueueItem]:
        """Fires with the item once it is settled; fails with QueueItemNotFound."""

        def forget(waiter: defer.Deferred) -> None:
            waiters = self._waiters.get(item_id, [])
            if waiter in waiters:
                waiters.remove(waiter)

        waiter: defer.Deferred = defer.Deferred(forget)
        self._waiters.setdefault(item_id, []).append(waiter)
        if self._watch is None:
            self._watch = LoopingCall(self.check)
            self._watch.clock = self._reactor
            self._watch.start(CHANGE_CHECK_SECONDS, now=True).addErrback(log_failure, "queue wait")
        return waiter

    @defer.inlineCallbacks
    def check(self):
        """Read each waited-for item and fire the waiters of settled or deleted ones."""
        for item_id in [key for key, waiters in self._waiters.items() if waiters]:
            try:
                item = yield self._fetch(item_id)
            except QueueItemNotFound as exc:
                self.fire(item_id, Failure(exc))
            else:
                self.settled(item)
        self._waiters = {key: waiters for key, waiters in self._waiters.items() if waiters}
        if not self._waiters and self._watch is not None:
            self._watch.stop()
            self._watch = None

    def settled(self, item: QueueItem) -> None:
        """Fire the item's waiters if its state is final."""
        if item.state in _SETTLED:
            self.fire(item.id, item)

    def fire(self, item_id: int, outcome: QueueItem | Failure) -> None:
        """Fire (or fail, for a Failure) every waiter of the item."""
        for waiter in self._waiters.pop(item_id, []):
            if isinstance(outcome, Failure):
                waiter.errback(outcome)
            else:
                waiter.callback(outcome)

    def stop_watching(self) -> None:
        """Stop the poll (shutdown); waiters stay until `cancel_all`."""
        if self._watch is not None and self._watch.running:
            self._watch.stop()
        self._watch = None

    def cancel_all(self) -> None:
        """Cancel every waiter (shutdown)."""
        for waiters in self._waiters.values():
            for waiter in list(waiters):
                waiter.cancel()
        self._waiters.clear()
