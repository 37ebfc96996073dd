"""The connections to one provider: lazy, bounded, pipelined, with retry and backoff.

Requests wait in a priority queue (lower `priority` first, FIFO within one) and go to
the open connection with the fewest requests in flight. A new connection is opened
only when every open one has a full pipeline, and never beyond `max_connections`
(connections being opened count). A failed connect backs off exponentially; queued
requests then wait up to connect + request timeout for a connection before failing.
Requests lost with a dead connection are retried up to `max_retries` times. A refused
login disables the provider for the life of the pool: that needs a human.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import weakref
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from altmount.config import NNTPConfig, ProviderConfig
from altmount.errors import (
    ArticleNotFound,
    NNTPConnectionLost,
    NNTPError,
    NNTPProtocolError,
    NNTPTimeout,
    ProviderAuthError,
    ProviderUnavailable,
)
from altmount.nntp.budget import ConnectionBudget, Lease, UnlimitedBudget
from altmount.nntp.client import NNTPClientProtocol, connect
from altmount.nntp.stats import ProviderStats

__all__ = ["ProviderPool", "INITIAL_BACKOFF_SECONDS", "MAX_BACKOFF_SECONDS"]

log = logging.getLogger(__name__)

#: First wait after a failed connect; doubles on each further failure.
INITIAL_BACKOFF_SECONDS = 0.5
#: Longest wait between connect attempts to an unreachable provider.
MAX_BACKOFF_SECONDS = 30.0
#: Connection losses of one request within this long of each other are one outage.
OUTAGE_SECONDS = 1.0


class _Job:
    """One caller's request, possibly tried on several connections."""

    __slots__ = (
        "kind",
        "message_id",
        "priority",
        "deferred",
        "attempts",
        "deadline",
        "lost_at",
        "outage_losses",
    )

    def __init__(self, kind: str, message_id: str, priority: int, deadline: float) -> None:
        self.kind = kind
        self.message_id = message_id
        self.priority = priority
        self.deadline = deadline
        self.attempts = 0
        self.lost_at = -OUTAGE_SECONDS  # when a connection loss last cost an attempt
        self.outage_losses = 0
        # Cancelling a queued job just lets the queue skip it; an answer that arrives
        # for a cancelled job in flight is dropped.
        self.deferred: defer.Deferred[Any] = defer.Deferred()


def _error_kind(error: NNTPError) -> str:
    if isinstance(error, NNTPTimeout):
        return "timeout"
    if isinstance(error, NNTPConnectionLost):
        return "connection_lost"
    if isinstance(error, ProviderAuthError):
        return "auth"
    if isinstance(error, NNTPProtocolError):
        return "protocol"
    return "connect"


class ProviderPool:
    """Every connection to one provider, shared by all streams and imports."""

    def __init__(
        self,
        reactor: Any,
        provider: ProviderConfig,
        nntp: NNTPConfig,
        stats: ProviderStats,
        budget: ConnectionBudget | None = None,
    ) -> None:
        self._reactor = reactor
        #: Slots shared with the other processes using this provider (nntp/budget.py).
        self._budget = budget or UnlimitedBudget()
        self._leases: dict[Any, Lease] = {}  # connect attempt or connection -> its slot
        self._budget_call: IDelayedCall | None = None
        self._shedding: set[NNTPClientProtocol] = set()
        self._provider = provider
        self._nntp = nntp
        self.stats = stats
        stats.max_connections = provider.max_connections
        self.name = provider.name or provider.host
        self._depth = provider.inflight_requests
        self._queue: list[tuple[int, int, _Job]] = []
        self._order = itertools.count()
        self._ready: list[NNTPClientProtocol] = []
        # Closed by us but the socket not yet gone: they still count against the limit,
        # so the provider never sees more than max_connections at once.
        self._draining: set[NNTPClientProtocol] = set()
        self._attempts: set[defer.Deferred[NNTPClientProtocol]] = set()
        self._held = 0  # slots lent to connections made outside the pool (provider test)
        self._idle: dict[NNTPClientProtocol, IDelayedCall] = {}
        self._backoff = 0.0
        self._backoff_call: IDelayedCall | None = None
        self._expiry_call: IDelayedCall | None = None
        self._last_connect_error: NNTPError | None = None
        self._ever_connected = False
        #: Connections that already charged a failure to a request (see _job_failed).
        self._failed_conns: weakref.WeakSet[NNTPClientProtocol] = weakref.WeakSet()
        self._closing = False
        self._disabled_error: NNTPError | None = None
        if not provider.enabled:
            self._disabled_error = ProviderUnavailable(
                f"provider {self.name}: disabled in the configuration"
            )

    # -- public API ------------------------------------------------------------

    @property
    def is_backup(self) -> bool:
        """Asked only after every primary answered 430."""
        return self._provider.is_backup_provider

    @property
    def enabled(self) -> bool:
        """False once disabled (by configuration or a refused login) or closed."""
        return self._disabled_error is None and not self._closing

    @property
    def disabled_reason(self) -> str:
        """Why the provider is disabled, '' while it is enabled."""
        return "" if self._disabled_error is None else str(self._disabled_error)

    @property
    def connections_open(self) -> int:
        """Logged-in connections."""
        return len(self._ready)

    @property
    def connections_connecting(self) -> int:
        """Connection attempts under way (they count against max_connections)."""
        return len(self._attempts)

    @property
    def connections_busy(self) -> int:
        """Open connections with at least one request in flight."""
        return sum(1 for conn in self._ready if conn.in_flight)

    @property
    def connections_idle(self) -> int:
        """Open connections with nothing in flight."""
        return self.connections_open - self.connections_busy

    @property
    def queued(self) -> int:
        """Requests waiting for a connection."""
        return len(self._queue)

    @property
    def reachable(self) -> bool:
        """False while the provider is refusing connections and none is open: the router
        then asks other providers first instead of queueing behind the backoff."""
        return bool(self._ready) or not self._backoff

    @property
    def load(self) -> float:
        """Queued plus in-flight requests per pipeline slot; the router prefers the lowest."""
        in_flight = sum(conn.in_flight for conn in self._ready)
        return (len(self._queue) + in_flight) / (self._provider.max_connections * self._depth)

    def body(self, message_id: str, priority: int = 0) -> defer.Deferred[bytes]:
        """The dot-stuffed body of an article; 430 → ArticleNotFound (never retried here)."""
        return self._submit("body", message_id, priority)

    def stat(self, message_id: str, priority: int = 0) -> defer.Deferred[bool]:
        """Whether the provider has the article."""
        return self._submit("stat", message_id, priority)

    def date(self, priority: int = 0) -> defer.Deferred[float]:
        """Time a DATE round trip on a pooled connection; fires with it in milliseconds.

        Going through the pool keeps a health probe inside `max_connections`.
        """
        return self._submit("date", "", priority)

    def hold_slot(self) -> Callable[[], None] | None:
        """Lend one of `max_connections` to a connection opened outside the pool (the
        provider test), or None when the other processes sharing the provider hold every
        free slot. The pool stays below the limit until the returned function is called,
        once that connection has closed. None too when this pool's own connections (open,
        being opened, draining, being shed) and earlier loans already use every slot."""
        used = (
            len(self._ready) + len(self._draining) + len(self._attempts) + len(self._shedding)
            + self._held
        )
        if used >= self._provider.max_connections:
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

    def close(self) -> defer.Deferred[None]:
        """Fail queued requests, QUIT every connection; fires when all are closed."""
        self._closing = True
        self._fail_queue(ProviderUnavailable(f"provider {self.name}: pool closed"))
        self._cancel_timers()
        for attempt in list(self._attempts):
            attempt.cancel()
        closing = [conn.quit() for conn in [*self._ready, *self._shedding]]
        return defer.DeferredList(closing).addCallback(lambda _: self._budget.close())

    # -- queue -----------------------------------------------------------------------

    def _submit(self, kind: str, message_id: str, priority: int) -> defer.Deferred[Any]:
        if self._disabled_error is not None:
            return defer.fail(type(self._disabled_error)(str(self._disabled_error)))
        if self._closing:
            return defer.fail(ProviderUnavailable(f"provider {self.name}: pool closed"))
        job = _Job(kind, message_id, priority, self._deadline())
        self._enqueue(job)
        self._pump()
        return job.deferred

    def _deadline(self) -> float:
        wait = self._nntp.connect_timeout_seconds + self._nntp.request_timeout_seconds
        return self._reactor.seconds() + wait

    def _enqueue(self, job: _Job) -> None:
        heapq.heappush(self._queue, (job.priority, next(self._order), job))

    def _pump(self) -> None:
        """Spread queued jobs over connections; pipeline only what cannot get its own.

        A server answers pipelined commands one after another, so parallelism comes
        from connections: an idle connection takes a job first, then every job left
        gets a connection of its own while `max_connections` allows, and only the
        jobs beyond that are pipelined onto busy connections (up to the depth).
        """
        queue = self._queue
        while queue and (conn := self._idle_connection()) is not None:
            self._dispatch_next(conn)
        if queue:
            self._maybe_connect()
        uncovered = len(queue) - len(self._attempts)  # jobs no pending connect will take
        while uncovered > 0 and queue and (conn := self._least_busy()) is not None:
            self._dispatch_next(conn)
            uncovered -= 1
        if queue:
            self._arm_expiry()

    def _dispatch_next(self, conn: NNTPClientProtocol) -> None:
        job = heapq.heappop(self._queue)[2]
        if not job.deferred.called:  # else cancelled while queued
            self._dispatch(job, conn)

    def _idle_connection(self) -> NNTPClientProtocol | None:
        for conn in self._ready:
            if not conn.in_flight and conn.usable:
                return conn
        return None

    def _least_busy(self) -> NNTPClientProtocol | None:
        """The usable connection with the fewest requests below the depth; among equals,
        the one whose head request started first.

        A server answers one command after another per connection, so a pipelined job
        waits for everything ahead of it: behind the oldest head it starts soonest.
        """
        best, best_key = None, None
        for conn in self._ready:
            load = conn.in_flight
            if load >= self._depth or not conn.usable:
                continue
            key = (load, conn.busy_since)
            if best_key is None or key < best_key:
                best, best_key = conn, key
        return best

    def _dispatch(self, job: _Job, conn: NNTPClientProtocol) -> None:
        idle = self._idle.pop(conn, None)
        if idle is not None and idle.active():
            idle.cancel()
        if job.kind == "body":
            answer = conn.body(job.message_id)
        elif job.kind == "stat":
            answer = conn.stat(job.message_id)
        else:
            answer = conn.date().addCallback(lambda _: conn.last_rtt_ms)
        answer.addCallbacks(
            self._job_done,
            self._job_failed,
            callbackArgs=(job, conn),
            errbackArgs=(job, conn),
        )

    def _job_done(self, result: Any, job: _Job, conn: NNTPClientProtocol) -> None:
        if job.kind == "body":
            self.stats.record_article(len(result), conn.last_rtt_ms)
        else:
            self.stats.last_rtt_ms = conn.last_rtt_ms
            if job.kind == "stat" and not result:
                self.stats.record_missing()
        if not job.deferred.called:
            job.deferred.callback(result)
        self._after_answer(conn)

    def _job_failed(self, failure: Failure, job: _Job, conn: NNTPClientProtocol) -> None:
        error = failure.value
        if not isinstance(error, NNTPError):  # a bug: let the caller see the traceback
            if not job.deferred.called:
                job.deferred.errback(failure)
            return
        if isinstance(error, ArticleNotFound):
            self.stats.record_missing()
        else:
            self.stats.record_error(_error_kind(error), str(error))
        if isinstance(error, ProviderAuthError):
            self._disable(error)
        retry = not isinstance(error, ArticleNotFound | ProviderAuthError)
        # A connection that fails takes its whole pipeline down, head first. Only the
        # head was at fault (its request stalled or broke the connection); the requests
        # queued behind it are re-sent without spending one of their attempts.
        lost = isinstance(error, NNTPConnectionLost)
        collateral = lost and (conn in self._failed_conns or self._same_outage(job))
        self._failed_conns.add(conn)
        if job.deferred.called:
            pass
        elif retry and collateral and self.enabled:
            job.deadline = self._deadline()
            self._enqueue(job)
        elif retry and job.attempts < self._nntp.max_retries and self.enabled:
            job.attempts += 1
            job.deadline = self._deadline()
            self._enqueue(job)
        else:
            job.deferred.errback(error)
        self._after_answer(conn)

    def _same_outage(self, job: _Job) -> bool:
        """Whether this connection loss is part of one the job was already charged for.

        A provider that drops every connection at once (a restart) is noticed one
        connection at a time, so a retried request can be sent to a sibling that is
        already dead. Losses soon after the charged one are the same outage, free up to
        one per connection; a request that kills each connection it is sent on is
        still charged each time after that.
        """
        now = self._reactor.seconds()
        if (
            now - job.lost_at < OUTAGE_SECONDS
            and job.outage_losses < self._provider.max_connections
        ):
            job.outage_losses += 1
            return True
        job.lost_at = now
        job.outage_losses = 0
        return False

    def _after_answer(self, conn: NNTPClientProtocol) -> None:
        if conn in self._shedding:
            if not conn.in_flight:
                self._shedding.discard(conn)
                conn.quit()
            self._pump()
            return
        self._pump()
        if conn.usable and not conn.in_flight and conn not in self._idle:
            self._idle[conn] = self._reactor.callLater(
                self._nntp.idle_timeout_seconds, self._close_idle, conn
            )

    def _close_idle(self, conn: NNTPClientProtocol) -> None:
        self._idle.pop(conn, None)
        conn.quit()

    def _fail_queue(self, error: NNTPError) -> None:
        jobs = [job for _, _, job in self._queue]
        self._queue.clear()
        for job in jobs:
            if not job.deferred.called:
                job.deferred.errback(error)

    def _arm_expiry(self) -> None:
        # Queued jobs only expire while no connection is open: with one open, the
        # queue is moving and a long wait just means a busy provider.
        if self._ready or not self._queue:
            return
        if self._expiry_call is not None and self._expiry_call.active():
            return
        due = min(job.deadline for _, _, job in self._queue)
        delay = max(0.0, due - self._reactor.seconds())
        self._expiry_call = self._reactor.callLater(delay, self._expire)

    def _expire(self) -> None:
        self._expiry_call = None
        if self._ready:
            return
        now = self._reactor.seconds()
        expired = [job for _, _, job in self._queue if job.deadline <= now]
        if expired:
            self._queue = [entry for entry in self._queue if entry[2].deadline > now]
            heapq.heapify(self._queue)
            last = self._last_connect_error
            error = ProviderUnavailable(
                f"provider {self.name}: no connection available"
                + (f" (last error: {last})" if last else "")
            )
            for job in expired:
                if not job.deferred.called:
                    job.deferred.errback(error)
        self._arm_expiry()

    # -- connections -------------------------------------------------------------------

    def _maybe_connect(self, at_least: int = 0) -> None:
        if not self.enabled or (self._backoff_call is not None and self._backoff_call.active()):
            return
        wanted = max(at_least, len(self._queue)) - len(self._attempts)
        if self._backoff:  # recovering from failures: probe with one connection at a time
            wanted = min(wanted, 1 - len(self._attempts))
        busy = (
            len(self._ready) + len(self._draining) + len(self._attempts) + len(self._shedding)
            + self._held
        )
        room = self._provider.max_connections - busy
        short = False
        for _ in range(min(wanted, room)):
            lease = self._budget.try_acquire()
            if lease is None:  # other processes hold the rest of max_connections
                short = True
                break
            attempt = defer.maybeDeferred(connect, self._reactor, self._provider, self._nntp)
            self._leases[attempt] = lease
            self._attempts.add(attempt)
            attempt.addCallbacks(
                self._connected,
                self._connect_failed,
                callbackArgs=(attempt,),
                errbackArgs=(attempt,),
            )
        self._budget.set_waiting(short)
        self._arm_budget()

    # -- the slots shared with other processes -------------------------------------------

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

    def _connected(self, conn: NNTPClientProtocol, attempt: defer.Deferred[Any]) -> None:
        self._attempts.discard(attempt)
        self._hand_lease(attempt, conn)
        self._backoff = 0.0
        if not self.enabled:
            conn.quit()
            return
        self._ready.append(conn)
        self._ever_connected = True
        self.stats.set_connections(len(self._ready))
        conn.closed.addCallback(self._lost, conn)
        self._pump()
        if not conn.in_flight and conn.usable:
            self._after_answer(conn)

    def _lost(self, _: None, conn: NNTPClientProtocol) -> None:
        if conn.close_error is not None and not self._closing:
            # One line per broken connection, however many requests it carried.
            log.info("%s; requests in flight are retried", conn.close_error)
        if conn in self._ready:
            self._ready.remove(conn)
        self._shedding.discard(conn)
        idle = self._idle.pop(conn, None)
        if idle is not None and idle.active():
            idle.cancel()
        self.stats.set_connections(len(self._ready))
        if not conn.disconnected.called:
            self._draining.add(conn)
            conn.disconnected.addCallback(self._gone, conn)

    def _gone(self, _: None, conn: NNTPClientProtocol) -> None:
        self._draining.discard(conn)
        self._pump()

    def _connect_failed(self, failure: Failure, attempt: defer.Deferred[Any]) -> None:
        self._attempts.discard(attempt)
        self._release_lease(attempt)
        if failure.check(defer.CancelledError) or self._closing:
            return
        error = failure.value
        if not isinstance(error, NNTPError):
            error = ProviderUnavailable(f"provider {self.name}: {failure.getErrorMessage()}")
        auth = isinstance(error, ProviderAuthError)
        self.stats.record_error("auth" if auth else "connect", str(error))
        if auth:
            self._disable(error)
            return
        self._last_connect_error = error
        if self._backoff_call is not None and self._backoff_call.active():
            return  # several attempts failed together: one step of backoff
        if not self._backoff:
            # A provider that never answered was already reported by the start-up probe;
            # one that worked and stopped is news, worth a warning.
            report = log.warning if self._ever_connected else log.info
            report("%s; retrying with backoff", error)
        self._backoff = min(MAX_BACKOFF_SECONDS, 2 * self._backoff or INITIAL_BACKOFF_SECONDS)
        self._backoff_call = self._reactor.callLater(self._backoff, self._backoff_over)
        self._arm_expiry()

    def _backoff_over(self) -> None:
        self._backoff_call = None
        self._pump()
        if not self._queue and not self._ready and not self._attempts:
            # Nothing queued (the router sends traffic elsewhere meanwhile): try one
            # connection anyway, so a provider that comes back becomes reachable again.
            self._maybe_connect(at_least=1)

    def disable(self, error: NNTPError) -> None:
        """Stop using this provider (e.g. a start-up probe met 481); logs one warning."""
        self._disable(error)

    def _disable(self, error: NNTPError) -> None:
        if self._disabled_error is not None:
            return
        self._disabled_error = error
        log.warning("provider %s disabled: %s", self.name, error)
        self._cancel_timers()
        self._fail_queue(error)
        for attempt in list(self._attempts):
            attempt.cancel()
        for conn in list(self._ready):
            conn.quit()

    def _cancel_timers(self) -> None:
        for call in (
            self._backoff_call, self._expiry_call, self._budget_call, *self._idle.values()
        ):
            if call is not None and call.active():
                call.cancel()
        self._backoff_call = self._expiry_call = self._budget_call = None
        self._idle.clear()
