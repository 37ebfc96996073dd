"""The part of a provider pool that counts `max_connections` and shares it.

A mixin of `ProviderPool` (nntp/pool.py). Every connection counts against the
provider's limit from the moment it is being opened until its socket is gone, and so
does a slot lent to a connection opened outside the pool (the provider test). Each
connection attempt also leases a slot of the provider's `ConnectionBudget`
(nntp/budget.py), shared with the other processes using the provider; a pool that
holds more than its share while another process waits sheds connections, idle ones
first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall

from altmount.config import ProviderConfig
from altmount.nntp.budget import ConnectionBudget, Lease
from altmount.nntp.client import NNTPClientProtocol

__all__ = ["BudgetShare"]


class BudgetShare:
    """Slot counting, leases and shedding; the pool provides the attributes below."""

    _reactor: Any
    _provider: ProviderConfig
    _budget: ConnectionBudget
    _leases: dict[Any, Lease]  # connect attempt or connection -> its slot
    _budget_call: IDelayedCall | None
    _ready: list[NNTPClientProtocol]
    #: Closed by us but the socket not yet gone: they still count against the limit,
    #: so the provider never sees more than max_connections at once.
    _draining: set[NNTPClientProtocol]
    _shedding: set[NNTPClientProtocol]  # shed, answering what they already carry
    _attempts: set[defer.Deferred[NNTPClientProtocol]]
    _held: int  # slots lent to connections made outside the pool
    _idle: dict[NNTPClientProtocol, IDelayedCall]
    _queue: Any
    stats: Any

    def _pump(self) -> None:  # pragma: no cover - provided by the pool
        raise NotImplementedError

    def _idle_connection(self) -> NNTPClientProtocol | None:  # pragma: no cover
        raise NotImplementedError

    def _least_busy(self) -> NNTPClientProtocol | None:  # pragma: no cover
        raise NotImplementedError

    @property
    def slots_used(self) -> int:
        """Connections counted against max_connections: open, being opened, closed but
        not yet gone, being shed, and slots lent outside the pool."""
        return (
            len(self._ready) + len(self._draining) + len(self._attempts) + len(self._shedding)
            + self._held
        )

    def hold_slot(self) -> Callable[[], None] | None:
        """Lend one of `max_connections` to a connection opened outside the pool (the
        provider test), or None when the other processes sharing the provider hold every
        free slot. The pool stays below the limit until the returned function is called,
        once that connection has closed. None too when this pool's own connections (open,
        being opened, draining, being shed) and earlier loans already use every slot."""
        if self.slots_used >= self._provider.max_connections:
            return None
        lease = self._budget.try_acquire()
        if lease is None:
            return None
        self._held += 1

        def give_back() -> None:
            if lease.held:
                lease.release()
                self._held -= 1
                self._pump()

        return give_back

    def _arm_budget(self) -> None:
        """Poll the shared budget while this pool waits for a slot or holds some:
        a waiting pool retries, a holding one gives back what others need."""
        if self._budget_call is not None and self._budget_call.active():
            return
        delay = self._budget.poll_delay()
        if delay is not None:
            self._budget_call = self._reactor.callLater(delay, self._budget_turn)

    def _budget_turn(self) -> None:
        self._budget_call = None
        for _ in range(self._budget.excess()):
            if not self._shed_one():
                break
        if self._queue:
            self._pump()
        else:
            self._budget.set_waiting(False)
        self._arm_budget()

    def _shed_one(self) -> bool:
        """Close one connection for another process: an idle one now, else the least busy
        one once its pipeline is answered (it takes no new requests meanwhile)."""
        idle = self._idle_connection()
        conn = idle or self._least_busy() or (self._ready[0] if self._ready else None)
        if conn is None:
            return False
        self._ready.remove(conn)
        idle_call = self._idle.pop(conn, None)
        if idle_call is not None and idle_call.active():
            idle_call.cancel()
        if conn.in_flight:
            self._shedding.add(conn)
        else:
            conn.quit()
        self.stats.set_connections(len(self._ready))
        return True

    def _hand_lease(self, source: Any, conn: NNTPClientProtocol) -> None:
        lease = self._leases.pop(source, None)
        if lease is None:
            return
        self._leases[conn] = lease
        # The slot is free when the socket is gone, not when QUIT is sent.
        conn.disconnected.addBoth(lambda result: (self._release_lease(conn), result)[1])

    def _release_lease(self, key: Any) -> None:
        lease = self._leases.pop(key, None)
        if lease is not None:
            lease.release()
