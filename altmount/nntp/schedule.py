"""Which queued request a provider connection takes next: streams first. No I/O, no clock.

Every request has a priority number (lower first) and, from it, a class: stream reads,
then import work (first/last articles, STAT samples), then background work (health
checks, provider tests). A connection always takes the highest class waiting, except
that a lower class with requests waiting and none in flight gets the next connection:
whatever streams ask, imports and health checks keep moving.

While streams are active, imports and background work together may hold at most
`background_limit` of a provider's connections (AltMount's rule: capacity −
min(headroom × streams, capacity − 1)); the rest stay free for stream reads, so a
stream's first request never waits behind an import's pipeline.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator, Mapping
from enum import IntEnum
from typing import Generic, Protocol, TypeVar

__all__ = [
    "RequestClass",
    "STREAM_PRIORITY",
    "IMPORT_PRIORITY",
    "BACKGROUND_PRIORITY",
    "request_class",
    "background_limit",
    "choose_class",
    "ClassQueue",
    "Scheduler",
    "STREAM_LINGER_SECONDS",
]

#: Priority of stream reads (the router's and the pool's default).
STREAM_PRIORITY = 0
#: Priority of import work: probes of first/last articles, archive headers, STAT samples.
IMPORT_PRIORITY = 2
#: Priorities from this one up are background work: health checks, provider tests.
BACKGROUND_PRIORITY = 5
#: A pool that saw a stream request this recently counts one stream as active, even
#: when nobody tells it about streams: a player seeking closes one request and opens
#: the next, and the connections kept free must not go to imports in between.
STREAM_LINGER_SECONDS = 5.0


class RequestClass(IntEnum):
    """The scheduling classes, highest first."""

    STREAM = 0
    IMPORT = 1
    BACKGROUND = 2


_LOWER = (RequestClass.IMPORT, RequestClass.BACKGROUND)


def request_class(priority: int) -> RequestClass:
    """The class of a priority number."""
    if priority < IMPORT_PRIORITY:
        return RequestClass.STREAM
    if priority < BACKGROUND_PRIORITY:
        return RequestClass.IMPORT
    return RequestClass.BACKGROUND


def background_limit(capacity: int, headroom: int, streams: int) -> int:
    """Connections imports and background work may hold together while `streams` are
    active: capacity − min(headroom × streams, capacity − 1), so never fewer than one."""
    if streams <= 0 or headroom <= 0:
        return capacity
    return capacity - min(headroom * streams, capacity - 1)


def choose_class(
    waiting: Mapping[RequestClass, int],
    in_flight: Mapping[RequestClass, int],
    may_take_background: bool,
    last: RequestClass | None = None,
) -> RequestClass | None:
    """The class whose next request a connection takes, or None.

    `waiting`/`in_flight` count requests per class; `may_take_background` says whether
    this connection may carry import or background work (it already does, or fewer
    connections than `background_limit` do); `last` is the class sent last.
    """
    # A lower class with nothing in flight is next, so it never starves; but not twice
    # in a row while streams wait with nothing in flight (a one-connection provider
    # would otherwise carry nothing but imports).
    streams_moving = (
        not waiting.get(RequestClass.STREAM, 0)
        or in_flight.get(RequestClass.STREAM, 0)
        or last in (None, RequestClass.STREAM)
    )
    if may_take_background and streams_moving:
        for cls in _LOWER:
            if waiting.get(cls, 0) and not in_flight.get(cls, 0):
                return cls
    if waiting.get(RequestClass.STREAM, 0):
        return RequestClass.STREAM
    if may_take_background:
        for cls in _LOWER:
            if waiting.get(cls, 0):
                return cls
    return None


T = TypeVar("T")


class ClassQueue(Generic[T]):
    """Waiting requests: per class a heap ordered by priority, then arrival."""

    def __init__(self) -> None:
        self._heaps: dict[RequestClass, list[tuple[int, int, T]]] = {c: [] for c in RequestClass}
        self._order = itertools.count()

    def __len__(self) -> int:
        return sum(len(heap) for heap in self._heaps.values())

    def __iter__(self) -> Iterator[T]:
        for heap in self._heaps.values():
            for _, _, item in heap:
                yield item

    def waiting(self) -> dict[RequestClass, int]:
        """Requests waiting per class."""
        return {cls: len(heap) for cls, heap in self._heaps.items()}

    def push(self, item: T, priority: int) -> None:
        """Queue `item` behind everything of its priority."""
        heapq.heappush(self._heaps[request_class(priority)], (priority, next(self._order), item))

    def pop(self, cls: RequestClass) -> T:
        """The first request of `cls` (IndexError when there is none)."""
        return heapq.heappop(self._heaps[cls])[2]

    def remove(self, drop: Callable[[T], bool]) -> list[T]:
        """Take out (and return) every request for which `drop` is true."""
        removed: list[T] = []
        for cls, heap in self._heaps.items():
            kept = [entry for entry in heap if not drop(entry[2])]
            if len(kept) != len(heap):
                removed.extend(entry[2] for entry in heap if drop(entry[2]))
                heapq.heapify(kept)
                self._heaps[cls] = kept
        return removed

    def clear(self) -> list[T]:
        """Empty the queue; the requests it held."""
        return self.remove(lambda _: True)


class _Job(Protocol):
    @property
    def cls(self) -> RequestClass: ...


J = TypeVar("J", bound=_Job)
C = TypeVar("C")


class Scheduler(Generic[J, C]):
    """One pool's waiting requests and what its connections carry, per class.

    `alive(job)` is False for a job to skip (cancelled while queued); `clock()` gives
    seconds. `streams` is set by whoever counts open streams (the server, from its
    stream registry); the pool's own stream requests count one for a while too.
    """

    def __init__(
        self,
        capacity: int,
        headroom: int,
        clock: Callable[[], float],
        alive: Callable[[J], bool],
    ) -> None:
        self.capacity = capacity
        self.headroom = headroom
        self.queue: ClassQueue[J] = ClassQueue()
        self.in_flight: dict[RequestClass, int] = {cls: 0 for cls in RequestClass}
        self.streams: Callable[[], int] = lambda: 0
        self._clock = clock
        self._alive = alive
        self._background_on: dict[C, int] = {}  # connection -> import/background jobs on it
        self._last_stream = float("-inf")
        self._last_cls: RequestClass | None = None  # the class of the job taken last

    def push(self, job: J, priority: int) -> None:
        """Queue a job (again, after a retry)."""
        if job.cls is RequestClass.STREAM:
            self._last_stream = self._clock()
        self.queue.push(job, priority)

    def active_streams(self) -> int:
        """Streams counted now (at least one shortly after a stream request)."""
        recent = self._clock() - self._last_stream < STREAM_LINGER_SECONDS
        return max(self.streams(), int(recent))

    def background_limit(self) -> int:
        """Connections import and background work may hold now."""
        return background_limit(self.capacity, self.headroom, self.active_streams())

    @property
    def background_connections(self) -> int:
        """Connections carrying import or background work now."""
        return len(self._background_on)

    def carries_background(self, conn: C) -> bool:
        """Whether `conn` has import or background work in flight."""
        return conn in self._background_on

    def may_take_background(self, conn: C) -> bool:
        """Whether `conn` may take an import or background job now. Over the limit (a
        stream has just started), none may until enough connections have drained."""
        held, limit = len(self._background_on), self.background_limit()
        return held <= limit if conn in self._background_on else held < limit

    def next_for(self, may_take_background: bool) -> J | None:
        """Take the job a connection should carry next (None: nothing it may take)."""
        while True:
            cls = choose_class(
                self.queue.waiting(), self.in_flight, may_take_background, self._last_cls
            )
            if cls is None:
                return None
            job = self.queue.pop(cls)
            if self._alive(job):
                self._last_cls = cls
                return job

    def wants_background(self) -> bool:
        """Whether import or background jobs are waiting."""
        waiting = self.queue.waiting()
        return bool(waiting[RequestClass.IMPORT] or waiting[RequestClass.BACKGROUND])

    def connections_wanted(self) -> int:
        """New connections the waiting jobs could use: one per stream job, one per
        other job while the background limit leaves room."""
        waiting = self.queue.waiting()
        room = max(0, self.background_limit() - len(self._background_on))
        lower = waiting[RequestClass.IMPORT] + waiting[RequestClass.BACKGROUND]
        return waiting[RequestClass.STREAM] + min(lower, room)

    def started(self, job: J, conn: C) -> None:
        """`job` was sent on `conn`."""
        self.in_flight[job.cls] += 1
        if job.cls is not RequestClass.STREAM:
            self._background_on[conn] = self._background_on.get(conn, 0) + 1

    def finished(self, job: J, conn: C) -> None:
        """`job` on `conn` was answered or failed."""
        self.in_flight[job.cls] -= 1
        if job.cls is not RequestClass.STREAM:
            left = self._background_on.get(conn, 0) - 1
            if left > 0:
                self._background_on[conn] = left
            else:
                self._background_on.pop(conn, None)
