"""SegmentCache: RAM tier, shared in-flight fetches, disk tier checks, and what is never kept."""

from __future__ import annotations

import logging
import os
import random

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
from twisted.internet.task import Clock

from altmount.errors import ArticleNotFound
from altmount.metadata import SegmentTable
from altmount.stream import cache_disk
from altmount.stream.cache import DiskTier, SegmentCache
from altmount.stream.memory import MemoryBudget, RamTier

PART = 1000
DATA = random.Random(7).randbytes(10 * PART)
IDS = tuple(f"part{i}@cache.test" for i in range(10))
TABLE = SegmentTable.uniform(IDS, PART, len(DATA))


class Segment:
    """The shape of the fetcher's `fetch_segment` result."""

    def __init__(self, data, begin, crc_ok=True):
        self.data, self.begin, self.end, self.crc_ok = data, begin, begin + len(data), crc_ok


class Fetcher:
    """Answers segments of DATA (placed where the table says, as the real fetcher checks)
    when the test says so, counting every request."""

    def __init__(self, instant=True):
        self.instant = instant
        self.requests: list[int] = []
        self.pending: dict[int, Deferred] = {}
        self.cancelled: list[int] = []
        self.crc_bad: set[int] = set()

    def fetch_segment(self, table, index, priority=0, *, path=""):
        self.requests.append(index)
        segment = Segment(
            DATA[index * PART : (index + 1) * PART],
            int(table.part_begins[index]),
            index not in self.crc_bad,
        )
        if self.instant:
            return succeed(segment)
        d = Deferred(lambda _d, i=index: self.cancelled.append(i))
        d.addCallback(lambda _: segment)
        self.pending[index] = d
        return d

    def fetch(self, table, index, priority=0, *, path=""):
        return self.fetch_segment(table, index, priority, path=path).addCallback(lambda s: s.data)


def disk_tier(root, now=lambda: 1_000_000.0, **limits):
    """A disk tier whose file work runs synchronously (no threads in unit tests)."""
    options = {"max_bytes": 1 << 30, "expiry_seconds": 3600.0, "min_free": 0, **limits}
    tier = DiskTier(Clock(), str(root), maybeDeferred, now=now, **options)
    tier.start()
    return tier


def result(d):
    """The result of a fired Deferred."""
    out = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    return out[0]


def test_second_read_comes_from_ram():
    """A segment read twice is fetched once: the second read is a RAM tier hit."""
    fetcher = Fetcher()
    cache = SegmentCache(fetcher, RamTier(1 << 20))
    assert result(cache.fetch(TABLE, 3)) == DATA[3000:4000]
    assert result(cache.fetch(TABLE, 3)) == DATA[3000:4000]
    assert fetcher.requests == [3]
    assert cache.stats()["ram"].hits == 1


def test_concurrent_reads_share_one_fetch():
    """Readers of a segment already being fetched wait on that fetch, not a new one."""
    fetcher = Fetcher(instant=False)
    cache = SegmentCache(fetcher, RamTier(1 << 20))
    first, second = cache.fetch(TABLE, 2), cache.fetch(TABLE, 2)
    assert fetcher.requests == [2] and cache.flights == 1
    fetcher.pending.pop(2).callback(None)
    assert result(first) == result(second) == DATA[2000:3000]
    assert cache.shared == 1 and cache.flights == 0


def test_one_reader_leaving_keeps_the_shared_fetch():
    """Cancelling one of two readers leaves the fetch running for the other."""
    fetcher = Fetcher(instant=False)
    cache = SegmentCache(fetcher, RamTier(1 << 20))
    first, second = cache.fetch(TABLE, 1), cache.fetch(TABLE, 1)
    first.cancel()
    assert isinstance(result(first).value, CancelledError)
    assert fetcher.cancelled == []
    fetcher.pending.pop(1).callback(None)
    assert result(second) == DATA[1000:2000]


def test_last_reader_leaving_cancels_the_fetch():
    """When every reader of a shared fetch goes away, the download is cancelled."""
    fetcher = Fetcher(instant=False)
    cache = SegmentCache(fetcher, RamTier(1 << 20))
    first, second = cache.fetch(TABLE, 4), cache.fetch(TABLE, 4)
    first.cancel()
    second.cancel()
    assert fetcher.cancelled == [4] and cache.flights == 0
    assert isinstance(result(second).value, CancelledError)


def test_failure_reaches_every_waiter_and_nothing_is_kept():
    """A failed fetch fails every reader waiting on it; the next read tries again."""
    fetcher = Fetcher(instant=False)
    cache = SegmentCache(fetcher, RamTier(1 << 20))
    first, second = cache.fetch(TABLE, 5), cache.fetch(TABLE, 5)
    fetcher.pending.pop(5).errback(ArticleNotFound("430 <part5@cache.test>"))
    assert result(first).check(ArticleNotFound) and result(second).check(ArticleNotFound)
    cache.fetch(TABLE, 5)
    assert fetcher.requests == [5, 5]


def test_crc_failed_segment_is_served_never_kept(tmp_path):
    """A segment whose CRC failed everywhere is served but kept in neither tier."""
    fetcher = Fetcher()
    fetcher.crc_bad.add(6)
    cache = SegmentCache(fetcher, RamTier(1 << 20), disk_tier(tmp_path))
    assert result(cache.fetch(TABLE, 6)) == DATA[6000:7000]
    assert result(cache.fetch(TABLE, 6)) == DATA[6000:7000]
    assert fetcher.requests == [6, 6]
    assert cache.uncacheable == 2 and len(cache.disk.index) == 0


def test_ram_tier_is_an_lru_within_its_limit():
    """The RAM tier holds at most memory_mb: the least recently used segment goes first."""
    fetcher = Fetcher()
    cache = SegmentCache(fetcher, RamTier(2 * PART))
    for index in (0, 1, 0, 2):
        result(cache.fetch(TABLE, index))
    assert cache.ram.size == 2 * PART
    result(cache.fetch(TABLE, 0))
    result(cache.fetch(TABLE, 1))
    assert fetcher.requests == [0, 1, 2, 1]


def test_ram_tier_yields_to_the_streams_budget():
    """Bytes the streams' windows take from the budget are given back by the RAM tier."""
    budget = MemoryBudget(4 * PART)
    cache = SegmentCache(Fetcher(), RamTier(3 * PART, budget))
    for index in range(3):
        result(cache.fetch(TABLE, index))
    assert cache.ram.size == 3 * PART
    budget.adjust(2 * PART)
    assert cache.ram.size == 2 * PART and budget.as_dict()["free"] == 0


def test_a_segment_that_does_not_fit_the_table_is_fetched():
    """A cached segment is only served for a table that places it at the same begin."""
    fetcher = Fetcher()
    cache = SegmentCache(fetcher, RamTier(1 << 20))
    result(cache.fetch(TABLE, 0))
    other = SegmentTable((IDS[0],), [0, PART], [0], [5 * PART])
    cache.fetch(other, 0)
    assert fetcher.requests == [0, 0]


def test_disk_tier_survives_a_restart(tmp_path):
    """Segments written to disk are served by a new cache over the same folder."""
    first = Fetcher()
    cache = SegmentCache(first, RamTier(1 << 20), disk_tier(tmp_path))
    for index in range(3):
        result(cache.fetch(TABLE, index))
    second = Fetcher()
    restarted = SegmentCache(second, RamTier(1 << 20), disk_tier(tmp_path))
    assert len(restarted.disk.index) == 3
    assert [result(restarted.fetch(TABLE, i)) for i in range(3)] == [
        DATA[i * PART : (i + 1) * PART] for i in range(3)
    ]
    assert second.requests == []
    assert restarted.stats()["disk"].hits == 3


def test_damaged_entry_is_dropped_and_refetched(tmp_path, caplog):
    """An entry whose bytes no longer match its CRC is deleted and fetched again."""
    cache = SegmentCache(Fetcher(), RamTier(1 << 20), disk_tier(tmp_path))
    result(cache.fetch(TABLE, 7))
    path = cache_disk.entry_path(str(tmp_path), cache_disk.entry_name(IDS[7]))
    with open(path, "r+b") as entry:
        entry.seek(-10, os.SEEK_END)
        entry.write(b"\x00" * 10)
    fetcher = Fetcher()
    restarted = SegmentCache(fetcher, RamTier(1 << 20), disk_tier(tmp_path))
    with caplog.at_level(logging.WARNING):
        assert result(restarted.fetch(TABLE, 7)) == DATA[7000:8000]
    assert fetcher.requests == [7]
    assert "CRC32 mismatch" in caplog.text
    assert restarted.stats()["disk"].errors == 1
    assert os.path.exists(path)  # written again, from the good copy
    assert cache_disk.read_entry(str(tmp_path), IDS[7])[0] == DATA[7000:8000]


def test_truncated_entry_is_never_served(tmp_path):
    """A file a crash left short fails its size check and is refetched."""
    cache = SegmentCache(Fetcher(), RamTier(1 << 20), disk_tier(tmp_path))
    result(cache.fetch(TABLE, 8))
    path = cache_disk.entry_path(str(tmp_path), cache_disk.entry_name(IDS[8]))
    os.truncate(path, 500)
    fetcher = Fetcher()
    restarted = SegmentCache(fetcher, RamTier(1 << 20), disk_tier(tmp_path))
    assert result(restarted.fetch(TABLE, 8)) == DATA[8000:9000]
    assert fetcher.requests == [8]


def test_disk_tier_evicts_by_size_least_recently_used_first(tmp_path):
    """The disk tier stays under max_size: the least recently used entries are deleted."""
    entry = cache_disk.HEADER.size + len(IDS[0]) + PART
    cache = SegmentCache(Fetcher(), RamTier(0), disk_tier(tmp_path, max_bytes=3 * entry))
    for index in (0, 1, 2, 0, 3):
        result(cache.fetch(TABLE, index))
    held = set(cache.disk.index.names())
    assert held == {cache_disk.entry_name(IDS[i]) for i in (0, 2, 3)}
    on_disk = {name for name, _, _ in cache_disk.scan(str(tmp_path))}
    assert on_disk == held


def test_disk_tier_expires_old_entries(tmp_path):
    """An entry older than expiry_hours is not served and its file is deleted."""
    clock = [1_000_000.0]
    tier = disk_tier(tmp_path, now=lambda: clock[0], expiry_seconds=60.0)
    fetcher = Fetcher()
    cache = SegmentCache(fetcher, RamTier(0), tier)
    result(cache.fetch(TABLE, 0))
    clock[0] += 61
    result(cache.fetch(TABLE, 0))
    assert fetcher.requests == [0, 0]


def test_failing_disk_turns_the_tier_off_with_one_warning(tmp_path, caplog):
    """A disk that fails writes turns the tier off once; segments still stream."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING):
        cache = SegmentCache(Fetcher(), RamTier(0), disk_tier(blocker / "cache"))
        for index in range(3):
            assert result(cache.fetch(TABLE, index)) == DATA[index * PART : (index + 1) * PART]
    assert not cache.disk.enabled
    assert caplog.text.count("disk tier") == 1


def test_free_space_floor_stops_growth(tmp_path, caplog):
    """Below min_free_gb the tier writes nothing more and says so once."""
    with caplog.at_level(logging.WARNING):
        cache = SegmentCache(Fetcher(), RamTier(0), disk_tier(tmp_path, min_free=1 << 60))
        for index in range(3):
            result(cache.fetch(TABLE, index))
    assert len(cache.disk.index) == 0
    assert caplog.text.count("free space") == 1


def test_clear_empties_both_tiers(tmp_path):
    """clear() drops every segment of both tiers, files included."""
    fetcher = Fetcher()
    cache = SegmentCache(fetcher, RamTier(1 << 20), disk_tier(tmp_path))
    for index in range(4):
        result(cache.fetch(TABLE, index))
    freed = result(cache.clear())
    assert freed["ram"] == 4 * PART and freed["disk"] > 4 * PART
    assert cache_disk.scan(str(tmp_path)) == []
    result(cache.fetch(TABLE, 0))
    assert fetcher.requests == [0, 1, 2, 3, 0]


def test_keep_stores_probe_articles(tmp_path):
    """Articles the importer fetched are served from the cache without a fetch."""
    fetcher = Fetcher()
    cache = SegmentCache(fetcher, RamTier(0), disk_tier(tmp_path))
    cache.keep(IDS[9], DATA[9000:], 9000)
    cache.keep(IDS[8], DATA[8000:9000], 8000, crc_ok=False)
    assert result(cache.fetch(TABLE, 9)) == DATA[9000:]
    result(cache.fetch(TABLE, 8))
    assert fetcher.requests == [8]
