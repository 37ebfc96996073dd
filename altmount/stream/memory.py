"""One memory budget for every stream's window and the segment cache's RAM tier (no I/O).

`MemoryBudget` counts the decoded bytes all streams hold (in flight or waiting to
be written). A stream asks `allows(n)` before it widens its window and reports
every change with `adjust(delta)`; a stream with nothing in flight is always let
through with one segment, so the total is bounded by the budget plus one segment
per stream (and streams are bounded by the HTTP connection caps).

`RamTier` is an LRU of decoded segments keyed by message-id. It lives inside the
same budget: it never grows past its own limit (`segment_cache.memory_mb`) nor past
what the streams leave free, and when streams need more it gives bytes back at once
(least recently used first). Streams come first because a cached segment can be
fetched again and a window cannot wait.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["MemoryBudget", "RamTier", "TierStats"]


@dataclass(frozen=True, slots=True)
class TierStats:
    """Counters of one cache tier (for the API and /metrics)."""

    enabled: bool
    hits: int  #: lookups answered by this tier
    misses: int  #: lookups this tier could not answer
    bytes_served: int  #: decoded bytes handed out by this tier
    bytes_stored: int  #: decoded bytes written into this tier
    size: int  #: decoded bytes held now
    entries: int  #: segments held now
    limit: int  #: most bytes this tier may hold now
    evictions: int  #: segments dropped to make room or because they expired
    errors: int = 0  #: damaged entries dropped, reads and writes that failed


class MemoryBudget:
    """Decoded bytes held by all streams, against one limit shared with the RAM tier."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the memory budget must be at least one byte")
        self.limit = limit
        self.streams = 0  #: bytes the streams' windows hold now
        self.peak_streams = 0  #: most bytes the windows held at once
        self.ram: RamTier | None = None  #: the tier that yields to the streams

    def allows(self, size: int) -> bool:
        """Whether a stream may hold `size` more bytes now (cache bytes do not count:
        they are given back on demand)."""
        return self.streams + size <= self.limit

    def adjust(self, delta: int) -> None:
        """A stream holds `delta` more (or, negative, fewer) bytes; the RAM tier makes room."""
        self.streams += delta
        if self.streams > self.peak_streams:
            self.peak_streams = self.streams
        if delta > 0 and self.ram is not None:
            self.ram.fit(self.room())

    def room(self) -> int:
        """Bytes the streams leave free for the RAM tier."""
        return max(0, self.limit - self.streams)

    def as_dict(self) -> dict[str, int]:
        """The budget's figures (for /api/health/streaming)."""
        cache = self.ram.size if self.ram is not None else 0
        return {
            "limit": self.limit,
            "streams": self.streams,
            "peak_streams": self.peak_streams,
            "cache": cache,
            "free": max(0, self.limit - self.streams - cache),
        }


class RamTier:
    """An LRU of decoded segments (message-id -> (bytes, begin in the posted file)),
    bounded by `limit` and by what the budget's streams leave free."""

    def __init__(self, limit: int, budget: MemoryBudget | None = None) -> None:
        self._limit = max(0, limit)
        self._budget = budget
        self.budget = budget  #: the budget this tier lives in (None: its own limit only)
        self._entries: OrderedDict[str, tuple[bytes, int]] = OrderedDict()
        self.size = 0
        self._hits = 0
        self._misses = 0
        self._served = 0
        self._stored = 0
        self._evictions = 0
        if budget is not None:
            budget.ram = self

    def limit(self) -> int:
        """Most bytes the tier may hold now: its own limit, or less when streams need it."""
        if self._budget is None:
            return self._limit
        return min(self._limit, self._budget.room())

    def get(self, key: str) -> tuple[bytes, int] | None:
        """(bytes, begin) of the segment, marked as just used, or None (counted as a hit
        or a miss)."""
        entry = self._entries.get(key)
        if entry is None:
            self._misses += 1
            return None
        self._entries.move_to_end(key)
        self._hits += 1
        self._served += len(entry[0])
        return entry

    def put(self, key: str, data: bytes, begin: int) -> bool:
        """Keep `data` under `key` if it fits (older entries make way); False if it cannot."""
        if key in self._entries:
            self._entries.move_to_end(key)
            return True
        room = self.limit()
        if len(data) > room:
            return False
        self.fit(room - len(data))
        self._entries[key] = (data, begin)
        self.size += len(data)
        self._stored += len(data)
        return True

    def fit(self, most: int) -> None:
        """Drop least recently used segments until at most `most` bytes are held."""
        entries = self._entries
        while self.size > most and entries:
            _, (data, _) = entries.popitem(last=False)
            self.size -= len(data)
            self._evictions += 1

    def discard(self, key: str) -> None:
        """Forget one segment (if held)."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.size -= len(entry[0])

    def clear(self) -> int:
        """Forget every segment; returns the bytes freed."""
        freed = self.size
        self._entries.clear()
        self.size = 0
        return freed

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> TierStats:
        """The tier's counters as one snapshot."""
        return TierStats(
            True,
            self._hits,
            self._misses,
            self._served,
            self._stored,
            self.size,
            len(self._entries),
            self.limit(),
            self._evictions,
        )
