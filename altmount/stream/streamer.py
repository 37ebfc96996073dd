"""Serve one byte range of a virtual file to an HTTP response, with read-ahead and backpressure.

`RangeStreamer` is a Twisted push producer. It plans which segments cover the
range, keeps a window of segment fetches in flight ahead of the write position,
and writes each segment's slice as soon as it and every segment before it have
arrived. The response's transport pauses it when the client reads slowly: writes
stop, and so does the window, which moves only with the write position, so a slow
client stops the fetching instead of growing buffers. What was written before the
pause is refetched at once, though: a burst of arrivals fills the transport's buffer
and pauses the stream every few milliseconds, and waiting for the resume to refill
those slots left the providers idle for a round trip (at 50 ms latency a 16 MiB
window streamed 0.6 of the raw fetch rate, 0.7–0.9 refilled while paused). A client
that goes away cancels every pending fetch.

Memory bound: the decoded segments held (in flight or waiting to be written)
never exceed `max_buffer` bytes, except that one segment is always allowed so a
segment larger than the bound still streams. In-flight segments are counted at
their minimum decoded size (skip + contribution) until they arrive.

One budget for all streams: with a `budget` (`memory.MemoryBudget`, the
engine's `streaming.memory_budget_mb`) the window also widens only while every
stream's held bytes together stay under it (the segment cache's RAM tier gives
way first); a stream with nothing ahead always gets one segment, so none starves.
A client paused longer than `paused_timeout` seconds (on `clock`) gives its
window back: its fetches are cancelled and what had arrived is dropped; on resume
the window is fetched again, mostly from the segment cache.

Missing articles: without `zero_fill` a segment missing on every provider ends the
stream after the bytes before it. With it (streaming.missing_article_policy
`zero_fill_media`, the default, media containers only, see `zero_fill_applies`) the
segment is served as zeros of its length instead and `on_hole` is told: players skip
a damaged patch of a Matroska/MP4 file, but an archive or a subtitle is useless.

Uneven parts: a file imported with a sparse table (metadata/records.py) streams
through an `OffsetLearner` (stream/locate.py). A range whose offsets are all known
streams as any other; else `start()` first finds the segment holding the range's
first byte, then fetches segment after segment from there, and each one's slice is
cut when it is written, from the offsets its own yEnc header taught; the stream ends
at the segment that reaches the range's end. A missing segment of unknown length is
written (as zeros) once the next present segment shows where it ended.

Files: with `files` (the consumer has `write_file`, see `web.sendfile`) a segment the
cache's disk tier holds arrives as a `FileSegment`, an open entry file, and is handed
to the consumer to send with `os.sendfile`, so its bytes never enter the process; it
holds no memory, so it counts nothing against the budgets.

Copies: Twisted's TCP transport accepts only `bytes` (a memoryview raises
TypeError in `FileDescriptor.write` when the response has a Content-Length), so a
segment used whole is written as the decoded object itself (no copy, the
transport keeps a reference) and a partial one (the first and last of a range,
archive members) is copied once into a new `bytes` of just the slice.
"""

from __future__ import annotations

import dataclasses
import logging
import posixpath
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

from altmount._core import plan_range
from altmount.errors import ArticleNotFound, StreamError
from altmount.stream.cache_disk import FileSegment
from altmount.stream.locate import bracket

__all__ = [
    "ByteConsumer",
    "SegmentSource",
    "RangeStreamer",
    "MEDIA_EXTENSIONS",
    "zero_fill_applies",
]

log = logging.getLogger(__name__)

#: Containers whose demuxers resync after a run of zeros (the `zero_fill_media` policy).
MEDIA_EXTENSIONS = frozenset({".mkv", ".mp4", ".m4v", ".webm", ".mov"})


def zero_fill_applies(policy: str, path: str) -> bool:
    """Whether a segment of `path` missing everywhere is served as zeros under `policy`."""
    return policy == "zero_fill_media" and posixpath.splitext(path)[1].lower() in MEDIA_EXTENSIONS


class ByteConsumer(Protocol):
    """The consumer side we use: a twisted.web Request or any IConsumer."""

    def write(self, data: bytes) -> None: ...


class SegmentSource(Protocol):
    """What the streamer needs of the fetcher: one decoded segment, cancellable."""

    def fetch(self, table: Any, index: int, priority: int = 0, *, path: str = "") -> Deferred: ...


@implementer(IPushProducer)
class RangeStreamer:
    """Write file bytes [start, end) of `record` to `consumer`, fetching segments ahead.

    `read_ahead`: file bytes to keep requested ahead of the write position (at
    least two segments); `max_buffer`: most decoded bytes held for this stream.
    `start()` returns a Deferred firing with the number of bytes written, or
    failing with the fetch error, or with CancelledError after `stopProducing`.
    With `zero_fill`, a segment whose article every provider lacks is written as
    zeros and `on_hole(segment_index, message_id, zero_bytes)` is called for it
    (`zero_bytes`: the file bytes of this range it stands for).
    `log_context` (request_id, stream_id) is attached to this stream's log lines.
    """

    def __init__(
        self,
        fetcher: SegmentSource,
        record: Any,
        start: int,
        end: int,
        consumer: ByteConsumer,
        *,
        read_ahead: int,
        max_buffer: int,
        priority: int = 0,
        zero_fill: bool = False,
        on_hole: Callable[[int, str, int], None] | None = None,
        log_context: Mapping[str, Any] | None = None,
        budget: Any = None,
        clock: Any = None,
        paused_timeout: float = 0.0,
        learner: Any = None,
        files: bool = False,
    ) -> None:
        table = record.segments
        self._learner = learner
        self._lazy = False
        if learner is not None and not table.exact:
            table = learner.table(record.path, table)
            self._lazy = not table.covers(start, end)
            record = dataclasses.replace(record, segments=table)
            fetcher = learner if self._lazy else fetcher
        plan = plan_range(table.offsets, table.skips, start, end)
        self._start, self._end = start, end
        self._cursor = start  # lazy mode: the file offset the next written segment starts at
        self._holes: set[int] = set()  # lazy mode: plan positions missing everywhere
        self._fetcher = fetcher
        self._record = record
        self._consumer = consumer
        self._read_ahead = read_ahead
        self._max_buffer = max_buffer
        self._priority = priority
        self._zero_fill = zero_fill
        self._on_hole = on_hole
        self._log_context = dict(log_context or {})
        self._budget = budget
        self._clock = clock
        self._paused_timeout = paused_timeout
        self._fetch_options = {"as_file": True} if files and not self._lazy else {}
        self._pause_timer: Any = None
        self._epoch = 0  # bumped when the window is given back: late answers are dropped
        self.windows_released = 0  #: times a long pause gave the window back
        self._first = int(plan.first)
        self._src_start: list[int] = [int(v) for v in plan.src_start]
        self._length: list[int] = [int(v) for v in plan.length]
        self._count = len(self._length)
        self._next_issue = 0  # plan position of the next segment to request
        self._next_write = 0  # plan position of the next segment to write
        self._pending: dict[int, Deferred] = {}
        self._ready: dict[int, Any] = {}
        self._held: dict[int, int] = {}  # plan position -> decoded bytes accounted
        self._held_total = 0
        self._ahead_bytes = 0  # file bytes requested but not yet written
        self._paused = False
        self._finished = False
        self._pumping = False
        self._pump_again = False
        # The earliest segment that failed: bytes before it are still written,
        # so a client gets every good byte up to the hole, then a short body.
        self._failure: tuple[int, Failure] | None = None
        self.stopped = False  #: stopProducing was called: the consumer is gone
        self.bytes_written = 0
        self._done: Deferred[int] = Deferred()

    @property
    def held_bytes(self) -> int:
        """Decoded bytes in flight or waiting to be written (the bounded quantity)."""
        return self._held_total

    @property
    def in_flight(self) -> int:
        """Segment fetches in flight now."""
        return len(self._pending)

    def start(self) -> Deferred[int]:
        """Begin fetching and writing; the Deferred fires when the range is written."""
        if self._count == 0:
            self._finish(0)
        elif self._lazy:
            located = self._learner.locate(
                self._record.path, self._record.segments, self._start, self._priority
            )
            located.addCallbacks(self._located, self._finish)
        else:
            self._pump()
        return self._done

    def _located(self, index: int) -> None:
        """Lazy mode: the range starts in segment `index`; stream from there."""
        if self._finished:
            return
        table = self._learner.table(self._record.path, self._record.segments)
        self._first = index
        self._count = len(table) - index
        self._cursor = int(table.offsets[index])
        self._length = [int(v) for v in np.diff(table.offsets[index:])]
        self._pump()

    # IPushProducer

    def pauseProducing(self) -> None:
        """Stop writing; the window refills only what was written, so fetching stops too."""
        self._paused = True
        if self._clock is not None and self._paused_timeout > 0 and self._pause_timer is None:
            self._pause_timer = self._clock.callLater(self._paused_timeout, self._release_window)

    def resumeProducing(self) -> None:
        """Write what has arrived and refill the read-ahead window."""
        self._paused = False
        self._cancel_pause_timer()
        self._pump()

    def _cancel_pause_timer(self) -> None:
        if self._pause_timer is not None:
            if self._pause_timer.active():
                self._pause_timer.cancel()
            self._pause_timer = None

    def _release_window(self) -> None:
        """Paused too long: cancel the fetches ahead, drop what arrived, free the budget."""
        self._pause_timer = None
        if self._finished or not self._paused:
            return
        self._epoch += 1
        pending = list(self._pending.values())
        self._pending.clear()
        self._drop_ready()
        self._held.clear()
        self._holes.clear()
        self._hold(-self._held_total)
        self._next_issue = self._next_write
        self._ahead_bytes = 0
        self._failure = None
        self.windows_released += 1
        for fetch in pending:
            fetch.cancel()

    def _drop_ready(self) -> None:
        """Forget what arrived and was not written (closing the files among it)."""
        for data in self._ready.values():
            if type(data) is FileSegment:
                data.close()
        self._ready.clear()

    def _hold(self, delta: int) -> None:
        """Count `delta` more decoded bytes held, here and in the shared budget."""
        self._held_total += delta
        if self._budget is not None and delta:
            self._budget.adjust(delta)

    def stopProducing(self) -> None:
        """The consumer is gone: cancel every pending fetch now."""
        self.stopped = True
        self._finish(Failure(CancelledError(f"client stopped reading {self._record.path}")))

    # internals

    def _pump(self) -> None:
        """Write what can be written, then request what may be requested, until stable.

        Fetch results can arrive synchronously (inside `_issue`) and writes can
        pause or stop us synchronously, so the loop is guarded against re-entry.
        """
        if self._pumping:
            self._pump_again = True
            return
        self._pumping = True
        try:
            self._pump_again = True
            while self._pump_again and not self._finished:
                self._pump_again = False
                self._write_ready()
                if self._failure is not None and self._next_write == self._failure[0]:
                    self._fail_now(*self._failure)
                    return
                self._fill_window()
        finally:
            self._pumping = False

    def _write_ready(self) -> None:
        if self._lazy:
            self._write_learned()
            return
        while not self._paused and not self._finished and self._next_write in self._ready:
            position = self._next_write
            data = self._ready.pop(position)
            offset, length = self._src_start[position], self._length[position]
            self._hold(-self._held.pop(position))
            self._ahead_bytes -= length
            self._next_write += 1
            self.bytes_written += length
            if type(data) is FileSegment:
                # The consumer sends it from the file and closes it.
                self._consumer.write_file(data, offset, length)  # type: ignore[attr-defined]
            elif length:
                if offset == 0 and length == len(data) and type(data) is bytes:
                    chunk = data
                else:
                    chunk = bytes(memoryview(data)[offset : offset + length])
                del data
                self._consumer.write(chunk)
            if self._next_write == self._count:
                self._finish(self.bytes_written)

    def _write_learned(self) -> None:
        """Lazy mode's `_write_ready`: each segment's slice from the offsets learned."""
        while not self._paused and not self._finished and self._next_write in self._ready:
            position = self._next_write
            index = self._first + position
            table = self._learner.table(self._record.path, self._record.segments)
            hole = position in self._holes
            seg_end: int | None = None
            if table.known is None or table.known[index + 1]:
                seg_end = int(table.offsets[index + 1])
            elif not hole:
                self._failure = (
                    position,
                    Failure(
                        StreamError(
                            f"segment {index} of {self._record.path} arrived but its end is unknown"
                        )
                    ),
                )
                return
            elif position + 1 not in self._ready:
                return  # a hole whose end the next segment will show
            data = self._ready.pop(position)
            chunk, length = b"", 0
            if seg_end is not None:
                low, high = max(self._start, self._cursor), min(self._end, seg_end)
                length = max(0, high - low)
                if hole:
                    chunk = bytes(length)
                    if length and self._on_hole is not None:
                        self._on_hole(index, self._record.segments.message_ids[index], length)
                else:
                    skip = low - int(table.offsets[index])
                    whole = skip == 0 and length == len(data) and type(data) is bytes
                    chunk = data if whole else bytes(memoryview(data)[skip : skip + length])
                self._cursor = seg_end
            del data
            self._hold(-self._held.pop(position))
            self._ahead_bytes -= self._length[position]
            self._next_write += 1
            self.bytes_written += length
            if length:
                self._consumer.write(chunk)
            if self._cursor >= self._end or self._next_write == self._count:
                self._finish(self.bytes_written)

    def _fill_window(self) -> None:
        while not self._finished and self._failure is None and self._next_issue < self._count:
            if self._lazy and self._next_issue >= self._needed():
                return
            ahead = self._next_issue - self._next_write
            if ahead >= 2 and self._ahead_bytes >= self._read_ahead:
                return
            position = self._next_issue
            if self._length[position] == 0 and not self._lazy:
                # An empty segment inside the range (the planner keeps them): nothing to fetch.
                self._next_issue += 1
                self._held[position] = 0
                self._ready[position] = b""
                self._pump_again = True
                continue
            estimate = self._estimate(position)
            if ahead > 0 and (
                self._held_total + estimate > self._max_buffer
                or (self._budget is not None and not self._budget.allows(estimate))
            ):
                return
            self._issue(position, estimate)

    def _needed(self) -> int:
        """Lazy mode: plan positions that may hold range bytes (those before the first
        segment known to start at or after the range's end)."""
        table = self._learner.table(self._record.path, self._record.segments)
        return bracket(table, self._end - 1)[1] - self._first

    def _estimate(self, position: int) -> int:
        """Least decoded size of a segment: its skip plus its contribution to the file."""
        if self._lazy:
            return max(1, self._length[position])
        table = self._record.segments
        index = self._first + position
        return int(table.skips[index]) + int(table.offsets[index + 1] - table.offsets[index])

    def _issue(self, position: int, estimate: int) -> None:
        self._next_issue += 1
        self._held[position] = estimate
        self._hold(estimate)
        self._ahead_bytes += self._length[position]
        index = self._first + position
        fetch = self._fetcher.fetch(
            self._record.segments,
            index,
            self._priority,
            path=self._record.path,
            **self._fetch_options,
        )
        self._pending[position] = fetch
        fetch.addCallbacks(
            self._arrived,
            self._failed,
            callbackArgs=(position, self._epoch),
            errbackArgs=(position, self._epoch),
        )

    def _arrived(self, data: Any, position: int, epoch: int) -> None:
        stale = epoch != self._epoch  # fetched for a window given back during a long pause
        if not stale:
            self._pending.pop(position, None)
        if stale or self._finished:
            if type(data) is FileSegment:
                data.close()
            return
        held = 0 if type(data) is FileSegment else len(data)
        self._hold(held - self._held[position])
        self._held[position] = held
        self._ready[position] = data
        self._pump()

    def _failed(self, failure: Failure, position: int, epoch: int) -> None:
        if epoch != self._epoch:
            return  # our own cancellation when a long pause gave the window back
        self._pending.pop(position, None)
        if self._finished or (self._failure is not None and position > self._failure[0]):
            return  # our own cancellation after stop or after an earlier failure
        if self._zero_fill and failure.check(ArticleNotFound) and self._lazy:
            self._holes.add(position)
            self._hold(-self._held[position])
            self._held[position] = 0
            self._ready[position] = b""
            self._pump()
            return
        if self._zero_fill and failure.check(ArticleNotFound):
            index = self._first + position
            if self._on_hole is not None:
                message_id = self._record.segments.message_ids[index]
                self._on_hole(index, message_id, self._length[position])
            self._arrived(bytes(self._held[position]), position, epoch)
            return
        self._failure = (position, failure)
        for later in [p for p in self._pending if p > position]:
            self._pending.pop(later).cancel()
        self._pump()

    def _fail_now(self, position: int, failure: Failure) -> None:
        index = self._first + position
        log.error(
            "stream of %s stopped: segment %d (<%s>): %s",
            self._record.path,
            index,
            self._record.segments.message_ids[index],
            failure.getErrorMessage(),
            extra=self._log_context,
        )
        self._finish(failure)

    def _finish(self, result: int | Failure) -> None:
        if self._finished:
            return
        self._finished = True
        if self._lazy:
            self._learner.flush()
        self._cancel_pause_timer()
        pending = list(self._pending.values())
        self._pending.clear()
        self._drop_ready()
        self._held.clear()
        self._hold(-self._held_total)
        for fetch in pending:
            fetch.cancel()
        if isinstance(result, Failure):
            self._done.errback(result)
        else:
            self._done.callback(result)
