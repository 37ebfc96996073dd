"""The interpolation search over a sparse segment table (stream/locate.py), no I/O."""

from __future__ import annotations

import itertools
import math
import random

from twisted.internet.defer import succeed

from altmount.metadata import SegmentTable
from altmount.stream.fetcher import Segment
from altmount.stream.locate import MAX_TABLES, OffsetLearner, bracket, next_probe


def search(sizes: list[int], offset: int, missing: frozenset[int] = frozenset()) -> tuple[int, int]:
    """(segment found, articles read) for a file of these part sizes, as OffsetLearner does."""
    ends = list(itertools.accumulate(sizes))
    n = len(sizes)
    table = SegmentTable.sparse(
        [f"m{i}" for i in range(n)], {0: 0, 1: ends[0], n - 1: ends[-2], n: ends[-1]}
    )
    reads, width, bisect = 0, n, False
    skipped: set[int] = set()
    while (probe := next_probe(table, offset, bisect, skipped)) is not None:
        reads += 1
        if probe in missing:
            skipped.add(probe)
            continue
        table = table.learn({probe: ends[probe] - sizes[probe], probe + 1: ends[probe]})
        lo, hi = bracket(table, offset)
        bisect, width = hi - lo > width // 2, hi - lo
    return bracket(table, offset)[0], reads


def test_search_finds_the_segment_within_log2_plus_one_reads():
    """Random 400-800 KB parts: every offset is found in at most log2(n) + 1 reads."""
    rng = random.Random(5)
    for n in (40, 1000, 70_000):
        sizes = [rng.randint(400_000, 800_000) for _ in range(n)]
        total = sum(sizes)
        for _ in range(20):
            offset = rng.randrange(total)
            found, reads = search(sizes, offset)
            begin = sum(sizes[:found])
            assert begin <= offset < begin + sizes[found]
            assert reads <= math.log2(n) + 1


def test_skewed_sizes_fall_back_to_bisection():
    """One huge part among tiny ones defeats interpolation; bisection keeps it logarithmic."""
    sizes = [1000] * 500 + [50_000_000] + [1000] * 523
    found, reads = search(sizes, 50_000_000 + 500 * 1000 + 10)
    assert found == 501
    assert reads <= 2 * math.log2(len(sizes)) + 1


def test_missing_articles_are_stepped_over():
    """A probe that no provider has is skipped; a run of missing parts yields its first index."""
    sizes = [500_000 + 1000 * i for i in range(40)]
    offset = sum(sizes[:20]) + 7
    found, _ = search(sizes, offset, missing=frozenset({19, 20, 21}))
    assert found == 19  # the first of the run: the stream zero-fills from there


class Articles:
    """A fetcher whose `fetch_placed` answers at once with each part's placement."""

    def __init__(self, sizes: list[int]) -> None:
        self.ends = list(itertools.accumulate(sizes))
        self.sizes = sizes
        self.placed = 0

    def fetch_placed(self, table, index, priority=0, *, path=""):
        self.placed += 1
        begin = self.ends[index] - self.sizes[index]
        return succeed(Segment(bytes([index % 256]) * self.sizes[index], begin, self.ends[index]))

    def fetch(self, table, index, priority=0, *, path=""):
        assert table.segment_known(index)
        return self.fetch_placed(table, index, priority, path=path).addCallback(lambda s: s.data)


class Store:
    """The metadata store's learn_offsets, recorded."""

    def __init__(self) -> None:
        self.written: list[tuple[str, bool]] = []

    def learn_offsets(self, path, table) -> bool:
        self.written.append((path, table.exact))
        return True


def sparse_of(sizes: list[int]) -> SegmentTable:
    ends = list(itertools.accumulate(sizes))
    n = len(sizes)
    return SegmentTable.sparse(
        [f"m{i}" for i in range(n)], {0: 0, 1: ends[0], n - 1: ends[-2], n: ends[-1]}
    )


def test_learner_locates_and_hands_the_probe_over_without_a_cache():
    """The segment found by the search is served from the learner, not fetched again."""
    sizes = [random.Random(2).randint(400, 800) for _ in range(30)]
    articles, store = Articles(sizes), Store()
    learner = OffsetLearner(articles, articles, store)
    table = sparse_of(sizes)
    offset = sum(sizes[:17]) + 3
    found = []
    learner.locate("/a.mkv", table, offset).addCallback(found.append)
    assert found == [17]
    probes = articles.placed
    assert learner.probes == probes and store.written == [("/a.mkv", False)]
    data = []
    learner.fetch(table, 17, path="/a.mkv").addCallback(data.append)
    assert data == [bytes([17]) * sizes[17]] and articles.placed == probes


def test_learner_keeps_a_bounded_number_of_tables():
    """Past MAX_TABLES files the oldest is written to the store and dropped from memory."""
    sizes = [500, 600, 700, 800, 900, 1000]
    articles, store = Articles(sizes), Store()
    learner = OffsetLearner(articles, articles, store)
    for number in range(MAX_TABLES + 1):
        learner.fetch(sparse_of(sizes), 2, path=f"/f{number}.mkv")
    assert len(learner._tables) == MAX_TABLES
    assert "/f0.mkv" not in learner._tables
    assert ("/f0.mkv", False) in store.written
