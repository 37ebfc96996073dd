"""Learn where the parts of an unevenly cut file sit, when the file is read.

A file posted in parts of uneven size is imported from its first and last
articles alone (`importer.layout.sparse_table`): the offsets between are
estimates. Every article read gives two of them exactly (its yEnc `=ypart begin=
end=`). A read that starts at an unknown offset first finds the segment holding
it: `next_probe` (pure) picks the article to read next, by interpolation between
the nearest known offsets (as nzbdav does), or by bisection when the last guess
did not halve the interval, so a seek costs about log2(segments) articles at
worst and one or two for the 400-800 KB parts posters make.

`OffsetLearner` runs that search over the streams' segment source, serves the
segments it fetched (through the segment cache, or from the few it holds itself
when there is none), and stores what it learned in the metadata store, so a
later read, or a later process, does not search again.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Set
from typing import Any

import numpy as np
from twisted.internet.defer import Deferred, inlineCallbacks, succeed

from altmount.errors import ArticleNotFound, MetadataError, StreamError
from altmount.metadata import SegmentTable

__all__ = ["OffsetLearner", "bracket", "next_probe"]

log = logging.getLogger(__name__)

#: Segments learned between writes to the metadata store: a stream learns one per
#: article and a record holds every message-id, so it is rewritten once per batch
#: (and when a search or a stream ends).
FLUSH_EVERY = 256
#: Segments the learner keeps for the stream that asked, when there is no segment
#: cache to put them in (the last probe of a search is the first segment served).
HANDOFF_SEGMENTS = 4
#: Files whose learned tables stay in memory (least recently read go first, written to
#: the store before): a library of uneven posts must not grow the process.
MAX_TABLES = 64


def bracket(table: SegmentTable, offset: int) -> tuple[int, int]:
    """(lo, hi): the nearest known boundaries with offsets[lo] <= offset < offsets[hi]."""
    known = np.flatnonzero(table.known) if table.known is not None else None
    if known is None:
        index = table.segment_at(offset)
        return index, index + 1
    values = table.offsets[known]
    at = int(np.searchsorted(values, offset, side="right")) - 1
    return int(known[at]), int(known[at + 1])


def next_probe(
    table: SegmentTable, offset: int, bisect: bool, missing: Set[int] = frozenset()
) -> int | None:
    """The segment to read next to find the one holding file byte `offset`, or None
    when `bracket` already pins it (or every segment left in the interval is missing).

    Interpolates between the bracket's offsets, or takes its middle when `bisect`;
    segments in `missing` (no provider has them) are stepped over.
    """
    lo, hi = bracket(table, offset)
    if hi - lo <= 1:
        return None
    left, right = int(table.offsets[lo]), int(table.offsets[hi])
    if bisect:
        guess = lo + (hi - lo) // 2
    else:
        guess = lo + (offset - left) * (hi - lo) // max(1, right - left)
    guess = min(max(guess, lo), hi - 1)
    for step in range(hi - lo):
        for candidate in (guess + step, guess - step):
            if lo <= candidate < hi and candidate not in missing:
                return candidate
    return None


class OffsetLearner:
    """Finds, serves and remembers the segments of sparse tables (see the module docstring).

    `source` is what streams fetch through (the segment cache or the fetcher);
    `fetcher` the SegmentFetcher (its `fetch_placed` downloads without a placement
    check); `store` the metadata store learned offsets go to (None: memory only).
    """

    def __init__(self, source: Any, fetcher: Any, store: Any = None) -> None:
        self._source = source
        self._fetcher = fetcher
        self._store = store
        self._tables: OrderedDict[str, SegmentTable] = OrderedDict()
        self._dirty: set[str] = set()
        self._unsaved = 0
        self._handoff: OrderedDict[str, bytes] = OrderedDict()
        self._warned = False
        self.probes = 0  #: articles read to find where a read starts
        self.learned = 0  #: segments whose offsets were learned

    @property
    def budget(self) -> Any:
        """The streams' memory budget (the source's)."""
        return getattr(self._source, "budget", None)

    @property
    def clock(self) -> Any:
        """The clock of the streams' paused-client timers (the source's)."""
        return getattr(self._source, "clock", None)

    def table(self, path: str, stored: SegmentTable) -> SegmentTable:
        """What is known of `path`'s table: `stored` plus what this process learned."""
        mine = self._tables.get(path)
        if mine is None or mine.message_ids != stored.message_ids:
            self._tables[path] = stored
            self._forget_oldest()
            return stored
        self._tables.move_to_end(path)
        if stored.known is not None and not np.array_equal(stored.known, mine.known):
            try:
                mine = mine.learn(stored.known_points())  # another process learned too
            except MetadataError:
                mine = stored
            self._tables[path] = mine
        return mine

    @inlineCallbacks
    def locate(self, path: str, stored: SegmentTable, offset: int, priority: int = 0):
        """Fire with the index of the segment holding file byte `offset`, reading
        articles until the table knows it (or knows that the missing ones hide it:
        then the first segment of that unknown run)."""
        table = self.table(path, stored)
        missing: set[int] = set()
        width = len(table)
        bisect = False
        while (probe := next_probe(table, offset, bisect, missing)) is not None:
            self.probes += 1
            try:
                data = yield self._learn(path, table, probe, priority)
            except ArticleNotFound:
                missing.add(probe)
                continue
            self._keep(table.message_ids[probe], data)
            table = self._tables[path]
            lo, hi = bracket(table, offset)
            bisect = hi - lo > width // 2
            width = hi - lo
        self.flush()
        return bracket(table, offset)[0]

    def fetch(self, table: Any, index: int, priority: int = 0, *, path: str = "") -> Deferred:
        """A stream's fetch of segment `index` of `path`: through the source when its
        offsets are known, else downloaded and learned from."""
        current = self._tables.get(path, table)
        message_id = current.message_ids[index]
        if current.segment_known(index):
            kept = self._handoff.pop(message_id, None)
            if kept is not None:
                return succeed(kept)
            return self._source.fetch(current, index, priority, path=path)
        return self._learn(path, current, index, priority)

    def _learn(self, path: str, table: SegmentTable, index: int, priority: int) -> Deferred:
        def placed(segment: Any) -> bytes:
            current = self._tables.get(path, table)
            try:
                learned = current.learn({index: segment.begin, index + 1: segment.end})
            except MetadataError as exc:
                raise StreamError(
                    f"segment {index} (<{table.message_ids[index]}>) of {path} holds bytes "
                    f"{segment.begin}-{segment.end} of the posted file, which do not fit "
                    f"the other articles ({exc}); the NZB lists its articles out of order"
                ) from None
            if learned is not current:
                self._tables[path] = learned
                self._tables.move_to_end(path)
                self._forget_oldest()
                self.learned += 1
                self._dirty.add(path)
                self._unsaved += 1
                if self._unsaved >= FLUSH_EVERY:
                    self.flush()
            if segment.crc_ok:
                keep = getattr(self._source, "keep", None)
                if keep is not None:
                    keep(table.message_ids[index], segment.data, segment.begin)
            return segment.data

        return self._fetcher.fetch_placed(table, index, priority, path=path).addCallback(placed)

    def _keep(self, message_id: str, data: bytes) -> None:
        """Hold a probed segment for the stream when no cache will serve it again."""
        if hasattr(self._source, "keep"):
            return
        self._handoff[message_id] = data
        self._handoff.move_to_end(message_id)
        while len(self._handoff) > HANDOFF_SEGMENTS:
            self._handoff.popitem(last=False)

    def _forget_oldest(self) -> None:
        while len(self._tables) > MAX_TABLES:
            path = next(iter(self._tables))
            if path in self._dirty:
                self.flush()
            del self._tables[path]

    def flush(self) -> None:
        """Write what was learned to the metadata store now."""
        dirty, self._dirty = self._dirty, set()
        self._unsaved = 0
        if self._store is None:
            return
        for path in dirty:
            try:
                self._store.learn_offsets(path, self._tables[path])
            except MetadataError as exc:
                if not self._warned:
                    self._warned = True
                    log.warning("learned offsets of %s kept in memory only: %s", path, exc)
