"""The connections to one provider: lazy, bounded, pipelined, with retry and backoff.

Requests wait by class and priority (nntp/schedule.py: stream reads, then import
work, then background work; lower `priority` first, FIFO within one) and go to the
open connection with the fewest requests in flight. While streams are active, import
and background work together hold at most `background_limit` connections
(capacity − min(`nntp.stream_headroom` × streams, capacity − 1)); a class with
requests waiting and none in flight gets the next connection, so none starves. A new
connection is opened only when every open one has a full pipeline, and never beyond
`max_connections` (connections being opened, draining or lent count). A failed connect backs off exponentially; queued
requests then wait up to connect + request timeout for a connection before failing.
Requests lost with a dead connection are retried up to `max_retries` times. A refused
login disables the provider for the life of the pool: that needs a human.

The slot counting and sharing lives in nntp/poolbudget.py, backoff and disabling in
nntp/poolhealth.py, one request's bookkeeping in nntp/pooljob.py.
"""

from __future__ import annotations

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
    NNTPAuthExpired,
    NNTPConnectionLost,
    NNTPError,
    NNTPProtocolError,
    NNTPServiceUnavailable,
    NNTPTimeout,
    ProviderAuthError,
    ProviderUnavailable,
)
from altmount.nntp.breaker import CircuitBreaker
from altmount.nntp.budget import ConnectionBudget, Lease, UnlimitedBudget
from altmount.nntp.client import NNTPClientProtocol, connect
from altmount.nntp.poolbudget import BudgetShare
from altmount.nntp.poolhealth import INITIAL_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS, ProviderHealth
from altmount.nntp.pooljob import Job, error_kind
from altmount.nntp.schedule import RequestClass, Scheduler
from altmount.nntp.stats import ProviderStats

__all__ = ["ProviderPool", "INITIAL_BACKOFF_SECONDS", "MAX_BACKOFF_SECONDS"]

log = logging.getLogger(__name__)

#: Errors in a session that count against the provider (its circuit breaker); a plain
#: connection loss does not (a retry on another connection usually just works).
_PROVIDER_FAILURES = (NNTPTimeout, NNTPServiceUnavailable, NNTPProtocolError, NNTPAuthExpired)


class ProviderPool(BudgetShare, ProviderHealth):
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
        self._schedule: Scheduler[Job, NNTPClientProtocol] = Scheduler(
            provider.max_connections, nntp.stream_headroom, reactor.seconds, _alive
        )
        self._queue = self._schedule.queue
        self._ready: list[NNTPClientProtocol] = []
        self._draining: set[NNTPClientProtocol] = set()
        self._attempts: set[defer.Deferred[NNTPClientProtocol]] = set()
        self._held = 0  # slots lent to connections made outside the pool (provider test)
        self._idle: dict[NNTPClientProtocol, IDelayedCall] = {}
        self._breaker = CircuitBreaker()
        self._probe_call: IDelayedCall | None = None
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
    def background_limit(self) -> int:
        """Connections import and background work may hold now (streams first)."""
        return self._schedule.background_limit()

    @property
    def background_connections(self) -> int:
        """Connections carrying import or background work now."""
        return self._schedule.background_connections

    def count_streams(self, streams: Callable[[], int]) -> None:
        """Where the number of open streams comes from (the server's stream registry);
        without it, a stream request counts one stream for a few seconds."""
        self._schedule.streams = streams

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
        if self.circuit_open:  # the router asks other providers meanwhile
            return defer.fail(self._circuit_error())
        job = Job(kind, message_id, priority, self._deadline())
        self._enqueue(job)
        self._pump()
        return job.deferred

    def _deadline(self) -> float:
        wait = self._nntp.connect_timeout_seconds + self._nntp.request_timeout_seconds
        return self._reactor.seconds() + wait

    def _enqueue(self, job: Job) -> None:
        self._schedule.push(job, job.priority)

    def _pump(self) -> None:
        """Spread queued jobs over connections; pipeline only what cannot get its own.

        A server answers pipelined commands one after another, so parallelism comes
        from connections: an idle connection takes a job first, then every job left
        gets a connection of its own while `max_connections` allows, and only the
        jobs beyond that are pipelined onto busy connections (up to the depth). Which
        job a connection takes is the scheduler's choice (streams first).
        """
        queue, schedule = self._queue, self._schedule
        while queue and (conn := self._idle_connection()) is not None:
            job = schedule.next_for(schedule.may_take_background(conn))
            if job is None:  # only import/background work waits, over its limit
                break
            self._dispatch(job, conn)
        if queue:
            self._maybe_connect()
        uncovered = len(queue) - len(self._attempts)  # jobs no pending connect will take
        while uncovered > 0 and queue and self._pipeline_one():
            uncovered -= 1
        if queue:
            self._arm_expiry()

    def _pipeline_one(self) -> bool:
        """Pipeline the next job onto the least busy connection that may carry it."""
        schedule = self._schedule
        any_conn = self._least_busy()
        if any_conn is None:  # every pipeline is full
            return False
        lower = (
            self._least_busy(schedule.may_take_background) if schedule.wants_background() else None
        )
        job = schedule.next_for(lower is not None)
        if job is None:
            return False
        if job.cls is RequestClass.STREAM:
            # Behind other stream work if it can: an import's pipeline is no place to wait.
            free = self._least_busy(lambda conn: not schedule.carries_background(conn))
            self._dispatch(job, free or any_conn)
        else:
            self._dispatch(job, lower)
        return True

    def _idle_connection(self) -> NNTPClientProtocol | None:
        for conn in self._ready:
            if not conn.in_flight and conn.usable:
                return conn
        return None

    def _least_busy(
        self, accept: Callable[[NNTPClientProtocol], bool] | None = None
    ) -> NNTPClientProtocol | None:
        """The usable connection (that `accept`s) with the fewest requests below the
        depth; among equals, the one whose head request started first.

        A server answers one command after another per connection, so a pipelined job
        waits for everything ahead of it: behind the oldest head it starts soonest.
        """
        best, best_key = None, None
        for conn in self._ready:
            load = conn.in_flight
            if load >= self._depth or not conn.usable or (accept and not accept(conn)):
                continue
            key = (load, conn.busy_since)
            if best_key is None or key < best_key:
                best, best_key = conn, key
        return best

    def _dispatch(self, job: Job, conn: NNTPClientProtocol) -> None:
        idle = self._idle.pop(conn, None)
        if idle is not None and idle.active():
            idle.cancel()
        self._schedule.started(job, conn)
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

    def _job_done(self, result: Any, job: Job, conn: NNTPClientProtocol) -> None:
        self._schedule.finished(job, conn)
        self._answered()
        if job.kind == "body":
            self.stats.record_article(len(result), conn.last_rtt_ms)
        else:
            self.stats.last_rtt_ms = conn.last_rtt_ms
            if job.kind == "stat" and not result:
                self.stats.record_missing()
        if not job.deferred.called:
            job.deferred.callback(result)
        self._after_answer(conn)

    def _job_failed(self, failure: Failure, job: Job, conn: NNTPClientProtocol) -> None:
        self._schedule.finished(job, conn)
        error = failure.value
        if not isinstance(error, NNTPError):  # a bug: let the caller see the traceback
            if not job.deferred.called:
                job.deferred.errback(failure)
            return
        if isinstance(error, ArticleNotFound):
            self.stats.record_missing()
            self._answered()
        else:
            self.stats.record_error(error_kind(error), str(error))
        # A connection that fails takes its whole pipeline down, head first. Only the
        # head was at fault (its request stalled or broke the connection); the requests
        # queued behind it are re-sent without spending one of their attempts.
        head = conn not in self._failed_conns
        self._failed_conns.add(conn)
        # 480 in a session: log in again (a fresh connection does) and retry once.
        reauth = head and isinstance(error, NNTPAuthExpired) and not job.reauthed
        if isinstance(error, ProviderAuthError):
            self._disable(error)
        elif head and not reauth and isinstance(error, _PROVIDER_FAILURES):
            self._provider_failed(error)
        retry = not isinstance(error, ArticleNotFound | ProviderAuthError)
        if head and isinstance(error, NNTPAuthExpired):
            retry = reauth
            job.reauthed = True
        collateral = isinstance(error, NNTPConnectionLost) and (
            reauth
            or not head
            or job.same_outage(self._reactor.seconds(), self._provider.max_connections)
        )
        usable = self.enabled and not self.circuit_open
        if job.deferred.called:
            pass
        elif retry and collateral and usable:
            job.deadline = self._deadline()
            self._enqueue(job)
        elif retry and job.attempts < self._nntp.max_retries and usable:
            job.attempts += 1
            job.deadline = self._deadline()
            self._enqueue(job)
        else:
            job.deferred.errback(error)
        self._after_answer(conn)

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
        for job in self._queue.clear():
            if not job.deferred.called:
                job.deferred.errback(error)

    def _arm_expiry(self) -> None:
        # Queued jobs only expire while no connection is open: with one open, the
        # queue is moving and a long wait just means a busy provider.
        if self._ready or not self._queue:
            return
        if self._expiry_call is not None and self._expiry_call.active():
            return
        due = min(job.deadline for job in self._queue)
        delay = max(0.0, due - self._reactor.seconds())
        self._expiry_call = self._reactor.callLater(delay, self._expire)

    def _expire(self) -> None:
        self._expiry_call = None
        if self._ready:
            return
        now = self._reactor.seconds()
        expired = self._queue.remove(lambda job: job.deadline <= now)
        if expired:
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
        if not self.enabled or self._waiting_out:
            return
        wanted = max(at_least, self._schedule.connections_wanted()) - len(self._attempts)
        if self._recovering:
            wanted = min(wanted, 1 - len(self._attempts))
        room = self._provider.max_connections - self.slots_used
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

    def _connected(self, conn: NNTPClientProtocol, attempt: defer.Deferred[Any]) -> None:
        self._attempts.discard(attempt)
        self._hand_lease(attempt, conn)
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
        self._provider_failed(error)


def _alive(job: Job) -> bool:
    return job.alive
