"""Moving averages for the operations API: byte rates and durations (no I/O).

Both keep a fixed ring of one-second buckets, so recording is O(1) and memory is
constant whatever the traffic; the clock is injected (tests pass `Clock().seconds`).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["RateMeter", "DurationMeter", "human_rate"]


class RateMeter:
    """Units per second over the last `window` seconds, from one-second buckets."""

    __slots__ = ("window", "_clock", "_second", "_amount", "_started", "total")

    def __init__(self, clock: Callable[[], float], window: int = 10) -> None:
        if window < 1:
            raise ValueError("a rate window is at least one second")
        self.window = window
        self._clock = clock
        self._second = [-1] * window
        self._amount = [0] * window
        self._started: float | None = None
        self.total = 0  #: everything ever recorded

    def add(self, amount: int) -> None:
        """Record `amount` units now."""
        self.total += amount
        now = self._clock()
        if self._started is None:
            self._started = now
        second = int(now)
        slot = second % self.window
        if self._second[slot] != second:
            self._second[slot] = second
            self._amount[slot] = 0
        self._amount[slot] += amount

    def rate(self) -> float:
        """Units per second over the window (0.0 before anything was recorded)."""
        if self._started is None:
            return 0.0
        now = self._clock()
        second = int(now)
        recent = sum(
            amount
            for held, amount in zip(self._second, self._amount, strict=True)
            if 0 <= second - held < self.window
        )
        # Covered time: from the start of the oldest bucket counted (or the first
        # record, when younger) to now; at least one second, so a burst at start
        # does not read as an absurd rate.
        since = max(self._started, second - self.window + 1)
        return recent / max(1.0, now - since)


class DurationMeter:
    """Count, total and moving average of durations (milliseconds) over `window` seconds."""

    __slots__ = ("_sums", "_counts", "count", "total_ms")

    def __init__(self, clock: Callable[[], float], window: int = 3600) -> None:
        self._sums = RateMeter(clock, window)
        self._counts = RateMeter(clock, window)
        self.count = 0
        self.total_ms = 0.0

    def add(self, milliseconds: float) -> None:
        """Record one duration."""
        self.count += 1
        self.total_ms += milliseconds
        # RateMeter counts integers; microseconds keep the precision.
        self._sums.add(int(milliseconds * 1000))
        self._counts.add(1)

    @property
    def window(self) -> int:
        """Seconds the moving average looks back."""
        return self._sums.window

    def average(self) -> float:
        """Mean duration in the window, else over all time, else 0.0."""
        count = self._counts.rate()
        if count > 0:
            return self._sums.rate() / count / 1000
        return self.total_ms / self.count if self.count else 0.0


_UNITS = ("B/s", "KiB/s", "MiB/s", "GiB/s", "TiB/s")


def human_rate(bytes_per_second: float) -> str:
    """'12.3 MiB/s' style text for a byte rate."""
    value = float(bytes_per_second)
    if value < 1024:
        return f"{value:.0f} B/s"
    index = 0
    while value >= 1024 and index < len(_UNITS) - 1:
        value /= 1024
        index += 1
    return f"{value:.1f} {_UNITS[index]}"
