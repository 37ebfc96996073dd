"""Reactor heartbeat: how late the event loop runs a timer, i.e. how long it stalled.

A timer asks to run every `interval`; whatever it runs late by is time the reactor
spent on something else without coming back to its loop (a long callback, a
blocking call). Reported in `/api/health/streaming` and logged when a stall passes
`STALL_SECONDS`, so the soak test's "no stall > 250 ms" is measured inside the server.

It beats every `interval` only while `busy()` says the server is working (streams are
served); an idle server is looked at once every `idle_interval`, so that a server with
nothing to do does not wake 20 times a second (a stall then shows only when it delays
that one beat).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["HEARTBEAT_SECONDS", "IDLE_HEARTBEAT_SECONDS", "ReactorHeartbeat", "STALL_SECONDS"]

log = logging.getLogger(__name__)

#: How often the heartbeat runs: fine enough to see a 250 ms stall, cheap (20 calls/s).
HEARTBEAT_SECONDS = 0.05
#: How often it runs while the server is idle.
IDLE_HEARTBEAT_SECONDS = 1.0
#: A lag above this is a stall worth a log line (the issue's bar for the soak).
STALL_SECONDS = 0.25


class ReactorHeartbeat:
    """Measures the reactor's lag with a periodic timer on the injected reactor."""

    def __init__(
        self,
        reactor: Any,
        *,
        interval: float = HEARTBEAT_SECONDS,
        idle_interval: float = IDLE_HEARTBEAT_SECONDS,
        busy: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reactor = reactor
        self._interval = interval
        self._idle_interval = idle_interval
        self._busy = busy
        self._clock = clock
        self._call: Any = None
        self._last = 0.0
        self._delay = interval
        self.max_lag = 0.0  #: the longest lag seen, in seconds
        self.stalls = 0  #: lags above STALL_SECONDS

    def start(self) -> None:
        """Begin beating."""
        self._schedule(self._clock())

    def stop(self) -> None:
        """Stop beating."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _schedule(self, now: float) -> None:
        self._last = now
        self._delay = self._interval if self._busy() else self._idle_interval
        self._call = self._reactor.callLater(self._delay, self._beat)

    def _beat(self) -> None:
        now = self._clock()
        lag = max(0.0, now - self._last - self._delay)
        self._schedule(now)
        if lag > self.max_lag:
            self.max_lag = lag
        if lag > STALL_SECONDS:
            self.stalls += 1
            log.warning("reactor stalled for %.0f ms", lag * 1000)

    def as_dict(self) -> dict[str, float | int]:
        """The figures for the API."""
        return {
            "max_lag_ms": round(self.max_lag * 1000, 1),
            "stalls_over_250ms": self.stalls,
            "interval_ms": self._interval * 1000,
        }
