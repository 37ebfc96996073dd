"""Per-provider counters for the API, /metrics and the logs; cheap enough to bump per article."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ProviderStats", "ERROR_KINDS", "SPEED_WINDOW_SECONDS"]

#: The kinds of error counted in `ProviderStats.errors`.
ERROR_KINDS = ("timeout", "connection_lost", "unavailable", "reauth", "protocol", "auth", "connect")
#: `avg_speed` averages over this many one-second buckets.
SPEED_WINDOW_SECONDS = 10


@dataclass(slots=True)
class ProviderStats:
    """Mutable counters of one provider, updated by its pool on the reactor thread.

    `clock` returns seconds (tests pass a `Clock().seconds`); it feeds the moving
    average of the download speed, kept as one bucket per second in a ring.
    """

    name: str
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    max_connections: int = 0
    current_connections: int = 0
    peak_connections: int = 0
    bytes: int = 0
    articles: int = 0
    articles_missing: int = 0
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_KINDS, 0))
    last_error: str = ""
    last_rtt_ms: float = 0.0
    _second: list[int] = field(default_factory=lambda: [-1] * SPEED_WINDOW_SECONDS, repr=False)
    _bytes: list[int] = field(default_factory=lambda: [0] * SPEED_WINDOW_SECONDS, repr=False)
    _started: float | None = field(default=None, repr=False)

    def record_article(self, nbytes: int, rtt_ms: float) -> None:
        """Count one article received (its body size and the time it took)."""
        self.bytes += nbytes
        self.articles += 1
        self.last_rtt_ms = rtt_ms
        now = self.clock()
        if self._started is None:
            self._started = now
        second = int(now)
        slot = second % SPEED_WINDOW_SECONDS
        if self._second[slot] != second:
            self._second[slot] = second
            self._bytes[slot] = 0
        self._bytes[slot] += nbytes

    def record_missing(self) -> None:
        """Count one 430 (article not on this provider)."""
        self.articles_missing += 1

    def record_error(self, kind: str, message: str) -> None:
        """Count one error of `kind` (one of ERROR_KINDS) and remember its message."""
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.last_error = message

    def set_connections(self, current: int) -> None:
        """Record the number of open connections and keep the peak."""
        self.current_connections = current
        if current > self.peak_connections:
            self.peak_connections = current

    @property
    def avg_speed(self) -> float:
        """Bytes per second received over the last SPEED_WINDOW_SECONDS seconds."""
        if self._started is None:
            return 0.0
        now = self.clock()
        second = int(now)
        total = sum(
            size
            for held, size in zip(self._second, self._bytes, strict=True)
            if 0 <= second - held < SPEED_WINDOW_SECONDS
        )
        # Time covered: from the start of the oldest bucket counted (or the first
        # article, for a young provider) to now; at least a second, to damp the start.
        since = max(self._started, second - SPEED_WINDOW_SECONDS + 1)
        return total / max(1.0, now - since)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the API and /metrics."""
        return {
            "name": self.name,
            "max_connections": self.max_connections,
            "current_connections": self.current_connections,
            "peak_connections": self.peak_connections,
            "bytes": self.bytes,
            "articles": self.articles,
            "articles_missing": self.articles_missing,
            "errors": dict(self.errors),
            "last_error": self.last_error,
            "last_rtt_ms": self.last_rtt_ms,
            "avg_speed": self.avg_speed,
        }
