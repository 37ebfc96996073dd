"""The part of a provider pool that decides whether the provider is usable.

A mixin of `ProviderPool` (nntp/pool.py): a failed connect backs off exponentially
(0.5 s doubling to 30 s, one connection at a time while recovering), and a refused
login disables the provider for the life of the pool: that needs a human.
"""

from __future__ import annotations

import logging
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall

from altmount.errors import NNTPError
from altmount.nntp.client import NNTPClientProtocol

__all__ = ["ProviderHealth", "INITIAL_BACKOFF_SECONDS", "MAX_BACKOFF_SECONDS"]

# One logger for the whole pool: operators filter on altmount.nntp.pool.
log = logging.getLogger("altmount.nntp.pool")

#: First wait after a failed connect; doubles on each further failure.
INITIAL_BACKOFF_SECONDS = 0.5
#: Longest wait between connect attempts to an unreachable provider.
MAX_BACKOFF_SECONDS = 30.0


class ProviderHealth:
    """Backoff and disabling; the pool provides the attributes below."""

    name: str
    _reactor: Any
    _ready: list[NNTPClientProtocol]
    _attempts: set[defer.Deferred[NNTPClientProtocol]]
    _queue: Any
    _idle: dict[NNTPClientProtocol, IDelayedCall]
    _budget_call: IDelayedCall | None
    _expiry_call: IDelayedCall | None
    _backoff: float
    _backoff_call: IDelayedCall | None
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
        """False while the provider is refusing connections and none is open: the router
        then asks other providers first instead of queueing behind the backoff."""
        return bool(self._ready) or not self._backoff

    @property
    def _recovering(self) -> bool:
        """Connect attempts failed lately: probe with one connection at a time."""
        return bool(self._backoff)

    @property
    def _waiting_out(self) -> bool:
        """A pause before the next connect attempt is running."""
        return self._backoff_call is not None and self._backoff_call.active()

    def _connected_ok(self) -> None:
        """A connection logged in: the provider works."""
        self._backoff = 0.0

    def _connect_error(self, error: NNTPError) -> None:
        """A connect attempt failed (not a refused login): back off."""
        if self._waiting_out:
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
