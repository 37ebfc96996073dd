"""A per-provider circuit breaker: a state machine fed failures and successes. No I/O.

closed → (`threshold` failures in a row) → open → (the pause is over) → half_open →
(the probe is answered) → closed, or (it fails) → open again with twice the pause.

While closed, each failure also lengthens the wait before the next connection attempt
(`reconnect_delay`: 0.5 s, 1 s, 2 s, … up to 30 s). While open, the pool refuses
requests at once, so the router asks other providers instead of queueing behind a
dead one; half open, one probe connection goes out. A provider that fails again soon
after it closed opens with a longer pause than the last; one that stayed healthy for
`max_pause` starts again from `first_pause`. The pool feeds one failure per failed
round (several connections failing together are one), so `threshold` counts rounds.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "BREAKER_THRESHOLD",
    "FIRST_PAUSE_SECONDS",
    "MAX_PAUSE_SECONDS",
    "INITIAL_BACKOFF_SECONDS",
    "MAX_BACKOFF_SECONDS",
]

#: Failed rounds in a row that open the circuit.
BREAKER_THRESHOLD = 5
#: First pause of an open circuit before the half-open probe.
FIRST_PAUSE_SECONDS = 5.0
#: Longest pause of an open circuit.
MAX_PAUSE_SECONDS = 300.0
#: First wait after a failure while closed; doubles on each further failure.
INITIAL_BACKOFF_SECONDS = 0.5
#: Longest wait between connection attempts while closed.
MAX_BACKOFF_SECONDS = 30.0


class BreakerState(Enum):
    """Where a provider's circuit is."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class _Event(Enum):
    FAILURE = "failure"
    TRIPPED = "tripped"  # a failure that reaches the threshold
    SUCCESS = "success"
    PAUSE_OVER = "pause_over"


_TRANSITIONS: dict[BreakerState, dict[_Event, BreakerState]] = {
    BreakerState.CLOSED: {
        _Event.FAILURE: BreakerState.CLOSED,
        _Event.TRIPPED: BreakerState.OPEN,
        _Event.SUCCESS: BreakerState.CLOSED,
    },
    BreakerState.OPEN: {
        _Event.FAILURE: BreakerState.OPEN,  # a straggler of the round that opened it
        _Event.TRIPPED: BreakerState.OPEN,
        _Event.SUCCESS: BreakerState.CLOSED,  # a connection that was already on its way
        _Event.PAUSE_OVER: BreakerState.HALF_OPEN,
    },
    BreakerState.HALF_OPEN: {
        _Event.FAILURE: BreakerState.OPEN,
        _Event.TRIPPED: BreakerState.OPEN,
        _Event.SUCCESS: BreakerState.CLOSED,
    },
}


class CircuitBreaker:
    """The circuit of one provider; `now` is any monotonic clock in seconds."""

    def __init__(
        self,
        threshold: int = BREAKER_THRESHOLD,
        first_pause: float = FIRST_PAUSE_SECONDS,
        max_pause: float = MAX_PAUSE_SECONDS,
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self.threshold = threshold
        self.first_pause = first_pause
        self.max_pause = max_pause
        self.state = BreakerState.CLOSED
        self.failures = 0  #: failed rounds since the last success
        self.pause = 0.0  #: the current (or last) open pause
        self.reopen_at = 0.0  #: when an open circuit lets its probe out
        self.times_opened = 0
        self.last_failure = ""
        self._closed_at = float("-inf")

    @property
    def closed(self) -> bool:
        """True while requests flow normally."""
        return self.state is BreakerState.CLOSED

    def reconnect_delay(self) -> float:
        """How long to wait before the next connection attempt while closed."""
        if not self.failures:
            return 0.0
        return min(MAX_BACKOFF_SECONDS, INITIAL_BACKOFF_SECONDS * 2 ** (self.failures - 1))

    def failure(self, now: float, reason: str) -> bool:
        """Count one failed round; True when this opens the circuit."""
        self.failures += 1
        self.last_failure = reason
        was = self.state
        trips = was is BreakerState.HALF_OPEN or (
            was is BreakerState.CLOSED and self.failures >= self.threshold
        )
        self._move(_Event.TRIPPED if trips else _Event.FAILURE)
        if not trips:
            return False
        if was is BreakerState.HALF_OPEN or now - self._closed_at < self.max_pause:
            self.pause = min(self.max_pause, 2 * self.pause or self.first_pause)
        else:
            self.pause = self.first_pause
        self.reopen_at = now + self.pause
        self.times_opened += 1
        return True

    def success(self, now: float) -> bool:
        """A request was answered; True when this closes an open or half-open circuit."""
        was = self.state
        self.failures = 0
        self._move(_Event.SUCCESS)
        if was is BreakerState.CLOSED:
            return False
        self._closed_at = now
        return True

    def pause_over(self) -> None:
        """The open pause has passed: let one probe through."""
        self._move(_Event.PAUSE_OVER)

    def _move(self, event: _Event) -> None:
        moves = _TRANSITIONS[self.state]
        if event not in moves:
            raise ValueError(f"circuit breaker: {event.value} while {self.state.value}")
        self.state = moves[event]

    def as_dict(self, now: float) -> dict[str, Any]:
        """The state for /api/providers."""
        answer: dict[str, Any] = {
            "state": self.state.value,
            "consecutive_failures": self.failures,
            "threshold": self.threshold,
            "times_opened": self.times_opened,
            "last_failure": self.last_failure or None,
        }
        if self.state is BreakerState.OPEN:
            answer["retry_in_seconds"] = round(max(0.0, self.reopen_at - now), 1)
            answer["pause_seconds"] = self.pause
        return answer
