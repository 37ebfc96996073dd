"""The part of a provider pool that decides whether the provider is usable.

A mixin of `ProviderPool` (nntp/pool.py) around the provider's circuit breaker
(nntp/breaker.py). Failures of the provider itself (a refused or timed-out connect, a
request timeout, 400/502 or garbage during a session) count one per failed round:
each lengthens the wait before the next connection attempt (0.5 s doubling to 30 s,
one connection at a time while recovering), and after `BREAKER_THRESHOLD` rounds in a
row the circuit opens: requests fail at once (the router asks other providers) until,
after a pause that grows each time, a half-open probe (one connection, one DATE) is
answered. An answered request closes it again. A refused login (481 at AUTHINFO)
disables the provider with one warning until `reenable()` (a config reload): that
needs a human.
"""

from __future__ import annotations

import logging
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall

from altmount.config import ProviderConfig
from altmount.errors import NNTPError, ProviderUnavailable
from altmount.nntp.breaker import (
    INITIAL_BACKOFF_SECONDS,
    MAX_BACKOFF_SECONDS,
    BreakerState,
    CircuitBreaker,
)
from altmount.nntp.client import NNTPClientProtocol
from altmount.nntp.pooljob import Job
from altmount.nntp.schedule import STREAM_PRIORITY

__all__ = ["ProviderHealth", "INITIAL_BACKOFF_SECONDS", "MAX_BACKOFF_SECONDS"]

# One logger for the whole pool: operators filter on altmount.nntp.pool.
log = logging.getLogger("altmount.nntp.pool")


class ProviderHealth:
    """The circuit breaker, backoff and disabling; the pool provides the attributes below."""

    name: str
    _reactor: Any
    _provider: ProviderConfig
    _ready: list[NNTPClientProtocol]
    _attempts: set[defer.Deferred[NNTPClientProtocol]]
    _queue: Any
    _idle: dict[NNTPClientProtocol, IDelayedCall]
    _budget_call: IDelayedCall | None
    _expiry_call: IDelayedCall | None
    _breaker: CircuitBreaker
    _backoff_call: IDelayedCall | None
    _probe_call: IDelayedCall | None  # an open circuit's half-open probe
    _ever_connected: bool
    _closing: bool
    _disabled_error: NNTPError | None

    def _pump(self) -> None:  # pragma: no cover - provided by the pool
        raise NotImplementedError

    def _maybe_connect(self, at_least: int = 0) -> None:  # pragma: no cover
        raise NotImplementedError

    def _arm_expiry(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def _fail_queue(self, error: NNTPError) -> None:  # pragma: no cover
        raise NotImplementedError

    def _deadline(self) -> float:  # pragma: no cover
        raise NotImplementedError

    def _enqueue(self, job: Job) -> None:  # pragma: no cover
        raise NotImplementedError

    @property
    def enabled(self) -> bool:
        """False once disabled (by configuration or a refused login) or closed."""
        return self._disabled_error is None and not self._closing

    @property
    def disabled_reason(self) -> str:
        """Why the provider is disabled, '' while it is enabled."""
        return "" if self._disabled_error is None else str(self._disabled_error)

    @property
    def reachable(self) -> bool:
        """False while the provider is failing and no connection is open: the router
        then asks other providers first instead of queueing behind the backoff."""
        return bool(self._ready) or (self._breaker.closed and not self._breaker.failures)

    @property
    def circuit(self) -> dict[str, Any]:
        """The circuit breaker's state, for /api/providers."""
        return self._breaker.as_dict(self._reactor.seconds())

    @property
    def circuit_open(self) -> bool:
        """True while requests are refused at once (open, not yet probing)."""
        return self._breaker.state is BreakerState.OPEN

    @property
    def _recovering(self) -> bool:
        """Failed lately: probe with one connection at a time."""
        return bool(self._breaker.failures) or not self._breaker.closed

    @property
    def _waiting_out(self) -> bool:
        """A pause before the next connect attempt is running."""
        return any(c is not None and c.active() for c in (self._backoff_call, self._probe_call))

    def _circuit_error(self) -> ProviderUnavailable:
        breaker = self._breaker
        wait = max(0.0, breaker.reopen_at - self._reactor.seconds())
        return ProviderUnavailable(
            f"provider {self.name}: circuit open after {breaker.failures} failed attempts "
            f"in a row (last: {breaker.last_failure}); next try in {wait:.0f} s"
        )

    def _answered(self) -> None:
        """The provider answered a request: it works."""
        if self._breaker.success(self._reactor.seconds()):
            log.warning("provider %s: circuit closed, the provider answers again", self.name)

    def _provider_failed(self, error: NNTPError) -> None:
        """One failed round: back off, or open the circuit after too many in a row."""
        if self._waiting_out:
            return  # several connections failed together: one round
        breaker = self._breaker
        first = not breaker.failures
        if breaker.failure(self._reactor.seconds(), str(error)):
            self._open_circuit()
            return
        if first:
            # A provider that never answered was already reported by the start-up probe;
            # one that worked and stopped is news, worth a warning.
            report = log.warning if self._ever_connected else log.info
            report("%s; retrying with backoff", error)
        self._backoff_call = self._reactor.callLater(
            breaker.reconnect_delay(), self._backoff_over
        )
        self._arm_expiry()

    def _open_circuit(self) -> None:
        breaker = self._breaker
        log.warning(
            "provider %s: circuit open after %d failed attempts in a row (last: %s); "
            "requests go to other providers, next try in %g s",
            self.name,
            breaker.failures,
            breaker.last_failure,
            breaker.pause,
        )
        self._fail_queue(self._circuit_error())
        self._probe_call = self._reactor.callLater(breaker.pause, self._half_open)

    def _half_open(self) -> None:
        """The pause is over: one connection and one DATE find out whether it is back."""
        self._probe_call = None
        self._breaker.pause_over()
        if not self._queue:
            probe = Job("date", "", STREAM_PRIORITY, self._deadline())
            probe.deferred.addErrback(lambda _: None)  # its outcome is the breaker's
            self._enqueue(probe)
        self._pump()

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

    def reenable(self, provider: ProviderConfig | None = None) -> bool:
        """Use a provider disabled by a refused login again, with `provider`'s (reloaded)
        credentials; True if it was re-enabled. A new refusal disables it again."""
        if self._disabled_error is None or self._closing or not self._provider.enabled:
            return False
        if provider is not None:
            if (provider.host, provider.port) != (self._provider.host, self._provider.port):
                return False  # another server: that needs a restart (its budget, its pool)
            self._provider = provider
        log.info("provider %s enabled again: configuration reloaded", self.name)
        self._disabled_error = None
        self._breaker = CircuitBreaker()
        return True

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
        timers = (self._backoff_call, self._probe_call, self._expiry_call, self._budget_call)
        for call in (*timers, *self._idle.values()):
            if call is not None and call.active():
                call.cancel()
        self._backoff_call = self._probe_call = self._expiry_call = self._budget_call = None
        self._idle.clear()
