"""The registry of active streams: who reads what, how fast, and the totals served.

The WebDAV layer opens a `StreamHandle` per streamed response and reports each
write's size to it (a few integer additions per write, never per byte). The
operations API and /metrics read the registry; nothing here does I/O.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Any

from altmount.ops.meters import RateMeter

__all__ = ["StreamHandle", "StreamRegistry", "CURRENT_WINDOW_SECONDS", "AVERAGE_WINDOW_SECONDS"]

log = logging.getLogger(__name__)

#: "Current" speeds average over this many seconds.
CURRENT_WINDOW_SECONDS = 5
#: "Average" speeds average over this many seconds.
AVERAGE_WINDOW_SECONDS = 60


class StreamHandle:
    """One streamed HTTP response, from its first requested byte to its end."""

    __slots__ = (
        "id",
        "request_id",
        "path",
        "client",
        "start",
        "end",
        "started_at",
        "bytes_served",
        "first_byte_ms",
        "opened",
        "_meter",
        "_registry",
        "_closed",
    )

    def __init__(
        self,
        registry: StreamRegistry,
        stream_id: int,
        path: str,
        client: str,
        start: int,
        end: int,
        request_id: str = "",
    ) -> None:
        self.id = stream_id
        self.request_id = request_id
        self.path = path
        self.client = client
        self.start = start
        self.end = end
        self.started_at = registry.wall()
        self.bytes_served = 0
        self.first_byte_ms: float | None = None
        self.opened = registry.clock()
        self._meter = RateMeter(registry.clock, CURRENT_WINDOW_SECONDS)
        self._registry = registry
        self._closed = False

    def wrote(self, nbytes: int) -> None:
        """Count `nbytes` handed to the client's transport."""
        if self.first_byte_ms is None:
            self.first_byte_ms = (self._registry.clock() - self.opened) * 1000
            self._registry.first_byte(self.first_byte_ms)
        self.bytes_served += nbytes
        self._meter.add(nbytes)
        self._registry.wrote(nbytes)

    def close(self, outcome: str = "done") -> None:
        """The response ended (`outcome`: done, client_gone or failed); idempotent."""
        if self._closed:
            return
        self._closed = True
        self._registry.closed(self, outcome)

    @property
    def log_context(self) -> dict[str, Any]:
        """The `extra` of every log line about this stream: its id and its request's."""
        return {"stream_id": self.id, "request_id": self.request_id}

    @property
    def current_speed(self) -> float:
        """Bytes per second over the last CURRENT_WINDOW_SECONDS."""
        return self._meter.rate()

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the API."""
        return {
            "id": self.id,
            "path": self.path,
            "client": self.client,
            "range": {"start": self.start, "end": self.end - 1, "length": self.end - self.start},
            "bytes_served": self.bytes_served,
            "progress": self.bytes_served / (self.end - self.start)
            if self.end > self.start
            else 1.0,
            "current_speed": self.current_speed,
            "started_at": self.started_at,
            "time_to_first_byte_ms": self.first_byte_ms,
        }


class StreamRegistry:
    """Every active stream plus process-wide totals; all calls on the reactor thread.

    `clock` measures durations (monotonic seconds), `wall` stamps start times
    (epoch seconds); `on_first_byte(ms)` is told each stream's time to first byte.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        wall: Callable[[], float],
        on_first_byte: Callable[[float], None] | None = None,
    ) -> None:
        self.clock = clock
        self.wall = wall
        self._on_first_byte = on_first_byte
        self._ids = itertools.count(1)
        self._active: dict[int, StreamHandle] = {}
        self.current = RateMeter(clock, CURRENT_WINDOW_SECONDS)
        self.average = RateMeter(clock, AVERAGE_WINDOW_SECONDS)
        self.streams_total = 0
        self.outcomes: dict[str, int] = {"done": 0, "client_gone": 0, "failed": 0}

    def open(
        self, path: str, client: str, start: int, end: int, request_id: str = ""
    ) -> StreamHandle:
        """Register a stream of bytes [start, end) of `path` to `client` (for HTTP request
        `request_id`, named in its log lines)."""
        handle = StreamHandle(self, next(self._ids), path, client, start, end, request_id)
        self._active[handle.id] = handle
        self.streams_total += 1
        log.info(
            "stream open path=%s client=%s range=%d-%d",
            path,
            client,
            start,
            end - 1,
            extra=handle.log_context,
        )
        return handle

    def wrote(self, nbytes: int) -> None:
        """Count bytes served by any stream (called by StreamHandle.wrote)."""
        self.current.add(nbytes)
        self.average.add(nbytes)

    def first_byte(self, milliseconds: float) -> None:
        """Pass one time to first byte on to the observer."""
        if self._on_first_byte is not None:
            self._on_first_byte(milliseconds)

    def closed(self, handle: StreamHandle, outcome: str) -> None:
        """Forget a finished stream (called by StreamHandle.close)."""
        self._active.pop(handle.id, None)
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        elapsed = self.clock() - handle.opened
        log.info(
            "stream close outcome=%s bytes=%d ms=%.0f",
            outcome,
            handle.bytes_served,
            elapsed * 1000,
            extra=handle.log_context,
        )

    @property
    def bytes_served_total(self) -> int:
        """Every byte any stream has handed to a client since start."""
        return self.current.total

    @property
    def count(self) -> int:
        """Streams open now."""
        return len(self._active)

    def active(self) -> list[StreamHandle]:
        """The open streams, oldest first."""
        return list(self._active.values())
