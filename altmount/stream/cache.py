"""The segment cache: what streams fetch through, so re-reads cost no provider traffic.

`SegmentCache.fetch` has the fetcher's signature and answers, in order, from the
RAM tier (an LRU shared by every stream, `memory.RamTier`), from a fetch of the
same message-id already in flight (every concurrent reader waits on that one), from
the disk tier (`DiskTier`), and only then from the fetcher, whose result goes into
both tiers. A segment whose CRC failed on every provider (`crc_ok` False) is served
but never kept. A cached segment is only served for a segment table it fits (the
same begin in the posted file, enough bytes); anything else goes to the fetcher.

`DiskTier` is the Twisted shell of `cache_disk`: the index lives on the reactor
thread, file work runs through `run_io` (the engine passes a small thread pool).
A damaged entry is dropped and the segment fetched again; a failing disk turns
the tier off with one warning and streaming goes on from RAM and the providers.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.python.failure import Failure

from altmount.errors import CacheEntryDamaged
from altmount.stream import cache_disk
from altmount.stream.memory import RamTier, TierStats

__all__ = ["DiskTier", "SegmentCache"]

log = logging.getLogger(__name__)

#: Decoded bytes waiting to be written to disk at most; beyond it a segment is not
#: written (a slow disk must not hold memory the budget does not see).
MAX_PENDING_WRITES = 64 << 20
#: How often entries past `expiry_hours` are swept from the disk tier, in seconds.
SWEEP_INTERVAL = 600.0


class DiskTier:
    """Decoded segments on disk, bounded by size, age and the file system's free space."""

    def __init__(
        self,
        clock: Any,
        root: str,
        run_io: Callable[..., Deferred],
        *,
        max_bytes: int,
        expiry_seconds: float,
        min_free: int,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.root = root
        self._clock = clock
        self._run_io = run_io
        self._now = now
        self._min_free = min_free
        self.index = cache_disk.DiskIndex(max_bytes, expiry_seconds)
        self.enabled = True
        self._writable = True
        self._verified: set[str] = set()  # names whose CRC this process checked or wrote
        self._writing: set[str] = set()
        self._pending_bytes = 0
        self._sweep: Any = None
        self._hits = 0
        self._misses = 0
        self._served = 0
        self._stored = 0
        self._evictions = 0
        self._errors = 0
        self._skipped = 0

    def start(self) -> Deferred[None]:
        """Create the folders, learn what is on disk, schedule the expiry sweep."""
        return self._run_io(cache_disk.scan, self.root).addCallbacks(self._scanned, self._broken)

    def stop(self) -> None:
        """Stop the expiry sweep (writes in flight finish in the I/O threads)."""
        if self._sweep is not None and self._sweep.active():
            self._sweep.cancel()
        self._sweep = None

    def _scanned(self, found: list[tuple[str, int, float]]) -> None:
        for name, size, written in reversed(found):
            self.index.merge(name, size, written)
        self._expire()

    def _expire(self) -> None:
        self._sweep = self._clock.callLater(SWEEP_INTERVAL, self._expire)
        self._delete(self.index.expired(self._now()))
        self._delete(self.index.evict())

    def _delete(self, names: list[str]) -> None:
        if not names:
            return
        self._evictions += len(names)
        self._verified.difference_update(names)
        self._run_io(cache_disk.remove_entries, self.root, names).addErrback(self._broken)

    def _broken(self, failure: Failure) -> None:
        """The disk fails: the tier goes off (one warning) and streaming goes on."""
        self._errors += 1
        if self.enabled:
            self.enabled = False
            self.stop()
            log.warning(
                "segment cache: disk tier at %s turned off: %s; segments are kept in RAM only",
                self.root,
                failure.getErrorMessage(),
            )

    def has(self, message_id: str) -> bool:
        """Whether an entry is on disk and fresh (it may have been written by another
        process: one stat then; an expired file is deleted)."""
        if not self.enabled:
            return False
        name = cache_disk.entry_name(message_id)
        if name in self.index:
            if self.index.use(name, self._now()):
                return True
            self._delete([name])
            return False
        try:
            stat = os.stat(cache_disk.entry_path(self.root, name))
        except OSError:
            return False
        if self._now() - stat.st_mtime > self.index.expiry_seconds:
            return False
        self.index.add(name, stat.st_size, stat.st_mtime)
        return True

    def read(self, message_id: str) -> Deferred[tuple[bytes, int] | None]:
        """(bytes, begin) of an entry `has` found, or None when it is gone or damaged
        (then deleted). Its CRC32 is checked the first time this process reads it."""
        name = cache_disk.entry_name(message_id)
        check = name not in self._verified
        reading = self._run_io(cache_disk.read_entry, self.root, message_id, check)
        return reading.addCallbacks(
            self._read_ok, self._read_failed, callbackArgs=(name,), errbackArgs=(name,)
        )

    def _read_ok(self, result: tuple[bytes, int], name: str) -> tuple[bytes, int]:
        self._verified.add(name)
        self._hits += 1
        self._served += len(result[0])
        return result

    def _read_failed(self, failure: Failure, name: str) -> None:
        failure.trap(OSError, CacheEntryDamaged)
        self._misses += 1
        self.index.remove(name)
        self._verified.discard(name)
        if failure.check(FileNotFoundError):
            return None  # evicted or cleared meanwhile
        if failure.check(CacheEntryDamaged):
            self._errors += 1
            log.warning("segment cache: %s; dropped, fetching it again", failure.getErrorMessage())
            self._delete([name])
            return None
        self._broken(failure)
        return None

    def verified(self, message_id: str) -> bool:
        """Whether an entry is on disk, fresh, and its bytes were checked by this process
        (written or read whole), so it may be sent from the file unread."""
        return cache_disk.entry_name(message_id) in self._verified and self.has(message_id)

    def open(self, message_id: str) -> Deferred[cache_disk.FileSegment | None]:
        """A `verified` entry opened for sendfile, or None when it is gone or damaged."""
        name = cache_disk.entry_name(message_id)
        # Inline: an open and a header read of a file checked before take microseconds,
        # less than the hand-over to an I/O thread (measured: bench cached).
        opening = maybeDeferred(cache_disk.open_entry, self.root, message_id)
        return opening.addCallbacks(
            self._opened, self._read_failed, callbackArgs=(name,), errbackArgs=(name,)
        )

    def _opened(self, segment: cache_disk.FileSegment, name: str) -> cache_disk.FileSegment:
        self._hits += 1
        self._served += segment.length
        return segment

    def miss(self) -> None:
        """Count a lookup the tier could not answer."""
        self._misses += 1

    def write(self, message_id: str, data: bytes, begin: int) -> None:
        """Keep a segment on disk, in the background (skipped when writes pile up)."""
        if not (self.enabled and self._writable):
            return
        name = cache_disk.entry_name(message_id)
        if name in self._writing or name in self.index:
            return
        if self._pending_bytes + len(data) > MAX_PENDING_WRITES:
            self._skipped += 1
            return
        self._writing.add(name)
        self._pending_bytes += len(data)
        self._delete(self.index.evict(len(data)))
        writing = self._run_io(
            cache_disk.write_entry, self.root, message_id, data, begin, self._min_free
        )
        writing.addBoth(self._written, name, len(data))

    def _written(self, result: Any, name: str, length: int) -> None:
        self._writing.discard(name)
        self._pending_bytes -= length
        if not isinstance(result, Failure):
            self._stored += length
            self._verified.add(name)
            self.index.add(*result, self._now())
            return
        if result.check(cache_disk.NoRoom):
            self._no_room(result.value.args[0])
        elif result.check(ValueError):
            self._skipped += 1
        elif result.check(OSError) and result.value.errno == errno.ENOSPC:
            self._no_room(0)
        else:
            self._broken(result)

    def _no_room(self, short: int) -> None:
        """Below the free-space floor: shrink the tier by what is missing, or stop
        writing when it holds nothing (one warning either way)."""
        if self.index.size == 0:
            if self._writable:
                self._writable = False
                log.warning(
                    "segment cache: %s has less free space than segment_cache.min_free_gb; "
                    "the disk tier stops growing (it is read from as before)",
                    self.root,
                )
            return
        limit = max(0, self.index.size - max(short, 1))
        if self.index.max_bytes > limit:
            log.warning(
                "segment cache: %s is short of free space; the disk tier shrinks to %.1f MB",
                self.root,
                limit / 1e6,
            )
            self.index.max_bytes = limit
        self._delete(self.index.evict())

    def clear(self) -> Deferred[int]:
        """Delete every entry; fires with the bytes freed."""
        names = self.index.names()
        freed = self.index.size
        for name in names:
            self.index.remove(name)
        self._verified.clear()
        if not self.enabled:
            return succeed(0)
        return self._run_io(_remove_all, self.root).addCallback(lambda _: freed)

    def stats(self) -> TierStats:
        """The tier's counters as one snapshot."""
        return TierStats(
            self.enabled,
            self._hits,
            self._misses,
            self._served,
            self._stored,
            self.index.size,
            len(self.index),
            self.index.max_bytes if self.enabled else 0,
            self._evictions,
            self._errors,
        )


def _remove_all(root: str) -> None:
    """Delete every entry file under `root` (what other processes wrote too)."""
    cache_disk.remove_entries(root, [name for name, _, _ in cache_disk.scan(root)])


@dataclass(frozen=True, slots=True)
class _Want:
    """What one reader asked for: segment `index` of `table`, and what fits it (the same
    begin in the posted file, at least `needed` bytes)."""

    table: Any
    index: int
    priority: int
    path: str
    begin: int
    needed: int

    @classmethod
    def of(cls, table: Any, index: int, priority: int, path: str) -> _Want:
        """The want of a `fetch` call."""
        needed = int(table.skips[index]) + int(table.offsets[index + 1] - table.offsets[index])
        return cls(table, index, priority, path, int(table.part_begins[index]), needed)

    @property
    def message_id(self) -> str:
        """The message-id of the wanted segment (the key of both tiers and the flights)."""
        return self.table.message_ids[self.index]

    def fits(self, entry: tuple[Any, int] | None) -> bool:
        """Whether a cached (data, begin) can answer this reader."""
        return entry is not None and entry[1] == self.begin and len(entry[0]) >= self.needed


class _Flight:
    """One fetch of a message-id in flight and the readers waiting on it."""

    __slots__ = ("key", "source", "waiters")

    def __init__(self, key: str) -> None:
        self.key = key
        self.source: Deferred | None = None
        self.waiters: list[Deferred] = []


class SegmentCache:
    """The segment source of every stream: RAM tier, shared in-flight fetches, disk tier,
    then `fetcher` (a SegmentFetcher, or anything with its `fetch`)."""

    def __init__(
        self, fetcher: Any, ram: RamTier, disk: DiskTier | None = None, *, clock: Any = None
    ) -> None:
        self._fetcher = fetcher
        self.fetcher = fetcher  #: where misses go (stream/locate.py fetches there too)
        self.budget = ram.budget  #: the streams' memory budget (RangeStreamer takes it)
        self.clock = clock  #: the clock of the streams' paused-client timers
        self.ram = ram
        self.disk = disk
        self._flights: dict[str, _Flight] = {}
        self.shared = 0  #: fetches answered by joining one already in flight
        self.uncacheable = 0  #: segments served but not kept (CRC failed everywhere)
        self.files = 0  #: segments handed out as open disk-tier files (sent with sendfile)

    @property
    def flights(self) -> int:
        """Message-ids being fetched now (each once, however many readers wait)."""
        return len(self._flights)

    def fetch(
        self, table: Any, index: int, priority: int = 0, *, path: str = "", as_file: bool = False
    ) -> Deferred:
        """Fire with the decoded data of segment `index` of `table`, as the fetcher's
        `fetch` does. Cancelling leaves the shared fetch running for the other readers.
        With `as_file`, a segment the disk tier holds checked (and RAM does not) comes as
        a `cache_disk.FileSegment` to send from the file; the caller closes it."""
        want = _Want.of(table, index, priority, path)
        message_id = want.message_id
        cached = self.ram.get(message_id)
        if want.fits(cached):
            return succeed(cached[0])
        if (
            as_file
            and self.disk is not None
            and message_id not in self._flights
            and self.disk.verified(message_id)
        ):
            return self.disk.open(message_id).addCallback(self._file_fits, want)
        return self._shared(want)

    def _shared(self, want: _Want) -> Deferred:
        """The segment from a fetch in flight, the disk tier or the fetcher (in that order)."""
        message_id = want.message_id
        flight = self._flights.get(message_id)
        if flight is not None:
            self.shared += 1
            return self._join(flight, want)
        flight = _Flight(message_id)
        self._flights[message_id] = flight
        waiter = self._join(flight, want)
        if self.disk is not None and self.disk.has(message_id):
            source = self.disk.read(message_id).addCallback(self._from_disk, want)
        else:
            if self.disk is not None:
                self.disk.miss()
            source = self._from_fetcher(want)
        flight.source = source
        source.addBoth(self._landed, flight)
        return waiter

    def keep(self, message_id: str, data: bytes, begin: int, crc_ok: bool = True) -> None:
        """Keep a segment fetched elsewhere (the importer's first and last articles)."""
        if not crc_ok:
            self.uncacheable += 1
            return
        if type(data) is not bytes:
            data = bytes(data)
        self.ram.put(message_id, data, begin)
        if self.disk is not None:
            self.disk.write(message_id, data, begin)

    def clear(self) -> Deferred[dict[str, int]]:
        """Empty both tiers (fetches in flight finish); fires with the bytes freed per tier."""
        ram = self.ram.clear()
        if self.disk is None:
            return succeed({"ram": ram, "disk": 0})
        return self.disk.clear().addCallback(lambda disk: {"ram": ram, "disk": disk})

    def stats(self) -> dict[str, Any]:
        """Per-tier counters plus the shared-fetch figures (for the API and /metrics)."""
        disk = self.disk.stats() if self.disk is not None else None
        return {
            "ram": self.ram.stats(),
            "disk": disk,
            "shared": self.shared,
            "in_flight": len(self._flights),
            "uncacheable": self.uncacheable,
            "files": self.files,
        }

    def report(self) -> dict[str, Any]:
        """`stats()` as JSON-ready figures (for /api/health/streaming)."""
        stats = self.stats()
        tiers = {}
        for tier in ("ram", "disk"):
            figures = stats[tier]
            tiers[tier] = (
                {"enabled": False}
                if figures is None
                else {name: getattr(figures, name) for name in figures.__slots__}
            )
        return {
            **tiers,
            "shared_fetches": stats["shared"],
            "in_flight": stats["in_flight"],
            "uncacheable": stats["uncacheable"],
            "sendfile_segments": stats["files"],
        }

    # internals

    def _join(self, flight: _Flight, want: _Want) -> Deferred:
        """A reader's Deferred on `flight`: fires with the data for its own table."""

        def leave(waiter: Deferred) -> None:
            if waiter in flight.waiters:
                flight.waiters.remove(waiter)
            if not flight.waiters and self._flights.get(flight.key) is flight:
                del self._flights[flight.key]
                if flight.source is not None:
                    flight.source.cancel()

        waiter: Deferred = Deferred(leave)
        flight.waiters.append(waiter)
        return waiter.addCallback(self._fits, want)

    def _from_fetcher(self, want: _Want) -> Deferred:
        """The fetcher's answer as (data, begin, crc_ok)."""
        fetch_segment = getattr(self._fetcher, "fetch_segment", None)
        if fetch_segment is not None:
            return fetch_segment(want.table, want.index, want.priority, path=want.path).addCallback(
                lambda s: (s.data, s.begin, s.crc_ok)
            )
        return self._fetcher.fetch(
            want.table, want.index, want.priority, path=want.path
        ).addCallback(lambda data: (data, want.begin, True))

    def _from_disk(self, entry: tuple[bytes, int] | None, want: _Want) -> Any:
        if want.fits(entry):
            data, begin = entry
            self.ram.put(want.message_id, data, begin)
            return data, begin, None  # None: already on disk, not to be written again
        return self._from_fetcher(want)

    def _file_fits(self, segment: cache_disk.FileSegment | None, want: _Want) -> Any:
        if segment is not None and want.fits((segment, segment.begin)):
            self.files += 1
            return segment
        if segment is not None:
            segment.close()
        return self._shared(want)

    def _landed(self, result: Any, flight: _Flight) -> None:
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]
        waiters, flight.waiters = flight.waiters, []
        if isinstance(result, Failure):
            for waiter in waiters:
                waiter.errback(result)
            return
        data, begin, crc_ok = result
        if crc_ok:
            if type(data) is not bytes:
                data = bytes(data)  # a process pool's shared block: free it, keep a copy
            self.keep(flight.key, data, begin)
        elif crc_ok is False:
            self.uncacheable += 1
        for waiter in waiters:
            waiter.callback((data, begin))

    def _fits(self, landed: tuple[bytes, int], want: _Want) -> Any:
        """What a waiter gets: the landed data when it fits its table, else its own fetch."""
        if want.fits(landed):
            return landed[0]
        return self._fetcher.fetch(want.table, want.index, want.priority, path=want.path)
