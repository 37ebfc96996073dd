"""RangeStreamer: exact bytes, read-ahead window, memory bound, pause/resume, stop, errors."""

from __future__ import annotations

import logging
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.testing import StringTransport

from altmount.errors import ArticleNotFound
from altmount.metadata import FileRecord, SegmentTable
from altmount.stream.streamer import RangeStreamer


def make_file(contributions, skips, tails, seed=0):
    """A record whose segment i gives `contributions[i]` bytes after skipping `skips[i]`."""
    rng = random.Random(seed)
    size = sum(contributions)
    data = rng.randbytes(size)
    offsets = [0]
    for length in contributions:
        offsets.append(offsets[-1] + length)
    ids = tuple(f"seg{i}@test" for i in range(len(contributions)))
    table = SegmentTable(ids, offsets, skips, [0] * len(ids))
    decoded = [
        b"\xee" * skips[i] + data[offsets[i] : offsets[i + 1]] + b"\xdd" * tails[i]
        for i in range(len(ids))
    ]
    record = FileRecord("/dir/file.mkv", size, 1.0, "ok", table, "release")
    return record, data, decoded


class FakeFetcher:
    """Serves decoded segments from memory, at once or when the test says so."""

    def __init__(self, decoded, instant=False):
        self.decoded = decoded
        self.instant = instant
        self.pending: dict[int, Deferred] = {}
        self.cancelled: list[int] = []
        self.requested: list[int] = []

    def fetch(self, table, index, priority=0, *, path=""):
        self.requested.append(index)
        if self.instant:
            return succeed(self.decoded[index])
        d = Deferred(lambda _d, i=index: self.cancelled.append(i))
        self.pending[index] = d
        return d

    def answer(self, index):
        self.pending.pop(index).callback(self.decoded[index])

    def fail(self, index, error):
        self.pending.pop(index).errback(error)


class RecordingConsumer(StringTransport):
    """A StringTransport that also keeps each written object (to check for copies)."""

    def __init__(self, pause_on_write=False):
        super().__init__()
        self.writes = []
        self.pause_on_write = pause_on_write

    def write(self, data):
        self.writes.append(data)
        super().write(data)
        if self.pause_on_write and self.producer is not None:
            self.producer.pauseProducing()


UNIFORM = make_file([100] * 10, [0] * 10, [0] * 10)


def stream(record, fetcher, start, end, consumer=None, read_ahead=250, max_buffer=10_000):
    consumer = consumer or RecordingConsumer()
    streamer = RangeStreamer(
        fetcher, record, start, end, consumer, read_ahead=read_ahead, max_buffer=max_buffer
    )
    consumer.registerProducer(streamer, True)
    outcome = []
    streamer.start().addBoth(outcome.append)
    return streamer, consumer, outcome


def test_whole_file_instant():
    """With instant fetches the whole file is written and the Deferred gives its length."""
    record, data, decoded = UNIFORM
    _, consumer, outcome = stream(record, FakeFetcher(decoded, instant=True), 0, len(data))
    assert consumer.value() == data
    assert outcome == [len(data)]


def test_whole_segments_are_not_copied():
    """Segments used whole are written as the fetched object itself; partial ones are bytes."""
    record, data, decoded = UNIFORM
    _, consumer, _ = stream(record, FakeFetcher(decoded, instant=True), 50, 350)
    assert [len(w) for w in consumer.writes] == [50, 100, 100, 50]
    assert consumer.writes[1] is decoded[1] and consumer.writes[2] is decoded[2]
    assert all(type(w) is bytes for w in consumer.writes)


def test_read_ahead_window_and_in_order_writes():
    """Fetches run ahead by the read-ahead bytes; out-of-order arrivals wait for their turn."""
    record, data, decoded = UNIFORM
    fetcher = FakeFetcher(decoded)
    streamer, consumer, outcome = stream(record, fetcher, 0, len(data), read_ahead=250)
    assert fetcher.requested == [0, 1, 2]
    fetcher.answer(2)
    fetcher.answer(1)
    assert consumer.value() == b""
    fetcher.answer(0)
    assert consumer.value() == data[:300]
    assert fetcher.requested == [0, 1, 2, 3, 4, 5]
    while fetcher.pending:
        fetcher.answer(min(fetcher.pending))
    assert consumer.value() == data and outcome == [len(data)]


def test_at_least_two_segments_ahead():
    """Even a tiny read-ahead keeps two segments in flight."""
    record, data, decoded = UNIFORM
    fetcher = FakeFetcher(decoded)
    stream(record, fetcher, 0, len(data), read_ahead=1)
    assert fetcher.requested == [0, 1]


def test_memory_bound_limits_in_flight():
    """Held decoded bytes never exceed max_buffer, so the window shrinks to fit it."""
    record, data, decoded = make_file([100] * 10, [0] * 10, [60] * 10)
    fetcher = FakeFetcher(decoded)
    streamer, consumer, _ = stream(record, fetcher, 0, len(data), read_ahead=10_000, max_buffer=350)
    assert fetcher.requested == [0, 1, 2]  # 3 x 100 estimated; a 4th would pass 350
    fetcher.answer(1)  # arrives at 160 bytes: 100 + 160 + 100 = 360 held > estimate
    assert streamer.held_bytes == 360
    assert fetcher.requested == [0, 1, 2]
    while fetcher.pending:
        fetcher.answer(min(fetcher.pending))
        assert streamer.held_bytes <= 350 + 60 * 3
    assert consumer.value() == data


def test_segment_larger_than_bound_still_streams():
    """One segment is always allowed, even when it alone exceeds max_buffer."""
    record, data, decoded = make_file([500, 500], [0, 0], [0, 0])
    fetcher = FakeFetcher(decoded)
    streamer, consumer, outcome = stream(record, fetcher, 0, 1000, max_buffer=100)
    assert fetcher.requested == [0]
    fetcher.answer(0)
    fetcher.answer(1)
    assert consumer.value() == data and outcome == [1000]


def test_pause_stops_writes_and_new_fetches():
    """While paused nothing is written or requested; resume writes and refills."""
    record, data, decoded = UNIFORM
    fetcher = FakeFetcher(decoded)
    streamer, consumer, _ = stream(record, fetcher, 0, len(data), read_ahead=250)
    streamer.pauseProducing()
    for index in (0, 1, 2):
        fetcher.answer(index)
    assert consumer.value() == b""
    assert fetcher.requested == [0, 1, 2]
    streamer.resumeProducing()
    assert consumer.value() == data[:300]
    assert fetcher.requested == [0, 1, 2, 3, 4, 5]


def test_a_pause_after_writes_still_refills_the_window():
    """Slots freed by writes before a pause are refetched during it; the window stays the bound."""
    record, data, decoded = UNIFORM
    fetcher = FakeFetcher(decoded)
    consumer = RecordingConsumer()
    streamer, consumer, _ = stream(record, fetcher, 0, len(data), read_ahead=250)
    assert fetcher.requested == [0, 1, 2]
    consumer.pause_on_write = True
    fetcher.answer(0)
    assert consumer.value() == data[:100]
    assert fetcher.requested == [0, 1, 2, 3]
    fetcher.answer(1)
    fetcher.answer(2)
    fetcher.answer(3)
    assert consumer.value() == data[:100] and fetcher.requested == [0, 1, 2, 3]
    streamer.resumeProducing()
    assert consumer.value() == data[:200]


def test_consumer_pausing_on_each_write():
    """A transport that pauses on every write gets one segment per resume, all bytes in order."""
    record, data, decoded = UNIFORM
    fetcher = FakeFetcher(decoded, instant=True)
    consumer = RecordingConsumer(pause_on_write=True)
    streamer, consumer, outcome = stream(record, fetcher, 0, len(data), consumer=consumer)
    assert consumer.value() == data[:100]
    resumes = 0
    while not outcome:
        streamer.resumeProducing()
        resumes += 1
    assert resumes == 9 and consumer.value() == data and outcome == [len(data)]


def test_stop_cancels_every_pending_fetch():
    """stopProducing cancels all fetches in flight and fails the Deferred with CancelledError."""
    record, data, decoded = UNIFORM
    fetcher = FakeFetcher(decoded)
    streamer, consumer, outcome = stream(record, fetcher, 0, len(data), read_ahead=350)
    fetcher.answer(0)
    streamer.stopProducing()
    assert sorted(fetcher.cancelled) == [1, 2, 3, 4]
    assert outcome[0].check(CancelledError)
    assert streamer.stopped and streamer.in_flight == 0 and streamer.held_bytes == 0
    streamer.resumeProducing()
    assert consumer.value() == data[:100]
    assert fetcher.requested == [0, 1, 2, 3, 4]


def test_fetch_error_logs_and_fails(caplog):
    """A failed segment logs file, index, message-id and error, cancels later ones, and fails."""
    record, data, decoded = UNIFORM
    fetcher = FakeFetcher(decoded)
    streamer, consumer, outcome = stream(record, fetcher, 0, len(data), read_ahead=250)
    fetcher.answer(0)
    with caplog.at_level(logging.ERROR, logger="altmount.stream.streamer"):
        fetcher.fail(2, ArticleNotFound("seg2@test"))
        assert sorted(fetcher.cancelled) == [3]
        assert outcome == []
        fetcher.answer(1)
    assert outcome[0].check(ArticleNotFound)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "/dir/file.mkv" in line and "segment 2" in line and "<seg2@test>" in line
    assert "not found" in line
    assert not streamer.stopped


def test_bytes_before_a_failed_segment_are_written():
    """Segments before the hole still reach the client; nothing after it is fetched."""
    record, data, decoded = UNIFORM
    fetcher = FakeFetcher(decoded)
    streamer, consumer, outcome = stream(record, fetcher, 0, len(data), read_ahead=250)
    fetcher.fail(2, ArticleNotFound("seg2@test"))
    fetcher.answer(1)
    assert consumer.value() == b"" and outcome == []
    fetcher.answer(0)
    assert consumer.value() == data[:200]
    assert outcome[0].check(ArticleNotFound)
    assert fetcher.requested == [0, 1, 2]
    assert streamer.in_flight == 0 and streamer.held_bytes == 0


def test_empty_contributions_and_skips():
    """Empty segments are skipped, not fetched; skipped prefixes are sliced off."""
    record, data, decoded = make_file([0, 30, 0, 70, 5], [3, 7, 0, 11, 2], [4, 0, 9, 1, 0])
    fetcher = FakeFetcher(decoded, instant=True)
    _, consumer, outcome = stream(record, fetcher, 0, 105)
    assert consumer.value() == data and outcome == [105]
    assert fetcher.requested == [1, 3, 4]  # empty segments are never fetched


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 300), st.integers(0, 50), st.integers(0, 50)),
        min_size=1,
        max_size=12,
    ),
    st.data(),
)
def test_random_ranges_exact_bytes(segments, draw):
    """For random tables, ranges, windows and arrival orders, the bytes are exactly the file's."""
    contributions = [c for c, _, _ in segments]
    size = sum(contributions)
    if size == 0:
        return
    record, data, decoded = make_file(
        contributions, [s for _, s, _ in segments], [t for _, _, t in segments]
    )
    start = draw.draw(st.integers(0, size - 1))
    end = draw.draw(st.integers(start + 1, size))
    max_buffer = draw.draw(st.integers(1, 2000))
    read_ahead = draw.draw(st.integers(1, 1000))
    seed = draw.draw(st.integers(0, 2**16))
    fetcher = FakeFetcher(decoded)
    streamer, consumer, outcome = stream(
        record, fetcher, start, end, read_ahead=read_ahead, max_buffer=max_buffer
    )
    rng = random.Random(seed)
    slack = max(len(d) for d in decoded) + sum(t for _, _, t in segments)
    while not outcome:
        if not fetcher.pending or rng.random() < 0.3:
            streamer.resumeProducing()
        elif rng.random() < 0.3:
            streamer.pauseProducing()
        if fetcher.pending:
            fetcher.answer(rng.choice(sorted(fetcher.pending)))
        assert streamer.held_bytes <= max_buffer + slack
    assert consumer.value() == data[start:end]
    assert outcome == [end - start]


@pytest.mark.parametrize("seed", range(20))
def test_random_ranges_with_instant_fetches(seed):
    """Many random ranges of a realistic table come out exactly, fetched synchronously."""
    rng = random.Random(seed)
    count = rng.randint(1, 30)
    record, data, decoded = make_file(
        [rng.randint(1, 4000) for _ in range(count)],
        [rng.choice([0, 0, rng.randint(1, 300)]) for _ in range(count)],
        [rng.randint(0, 50) for _ in range(count)],
        seed=seed,
    )
    for _ in range(20):
        start = rng.randrange(record.size)
        end = rng.randint(start + 1, record.size)
        _, consumer, outcome = stream(
            record,
            FakeFetcher(decoded, instant=True),
            start,
            end,
            read_ahead=rng.randint(1, 20_000),
        )
        assert consumer.value() == data[start:end]
        assert outcome == [end - start]


def test_budget_bounds_every_stream_together():
    """Two streams sharing a budget together hold at most the budget (plus one segment each)."""
    from altmount.stream.memory import MemoryBudget

    record, data, decoded = UNIFORM
    budget = MemoryBudget(300)
    fetchers = [FakeFetcher(decoded), FakeFetcher(decoded)]
    streamers = []
    for fetcher in fetchers:
        streamer = RangeStreamer(
            fetcher,
            record,
            0,
            len(data),
            RecordingConsumer(),
            read_ahead=10_000,
            max_buffer=10_000,
            budget=budget,
        )
        streamer.start()
        streamers.append(streamer)
    assert budget.streams == sum(s.held_bytes for s in streamers) <= 300 + 100
    while any(f.pending for f in fetchers):
        for fetcher in fetchers:
            if fetcher.pending:
                fetcher.answer(min(fetcher.pending))
        assert budget.streams <= 300 + 2 * 100
    assert budget.streams == 0
    assert all(s.bytes_written == len(data) for s in streamers)


def test_long_pause_gives_the_window_back():
    """A client paused past paused_timeout has its fetches cancelled and its bytes freed;
    on resume the rest of the range is fetched again and written exactly."""
    from twisted.internet.task import Clock

    from altmount.stream.memory import MemoryBudget

    record, data, decoded = UNIFORM
    clock, budget = Clock(), MemoryBudget(10_000)
    fetcher = FakeFetcher(decoded)
    consumer = RecordingConsumer()
    streamer = RangeStreamer(
        fetcher,
        record,
        0,
        len(data),
        consumer,
        read_ahead=400,
        max_buffer=10_000,
        budget=budget,
        clock=clock,
        paused_timeout=30,
    )
    done = streamer.start()
    fetcher.answer(0)
    streamer.pauseProducing()
    fetcher.answer(1)
    assert budget.streams > 0
    clock.advance(30)
    assert streamer.windows_released == 1
    assert budget.streams == 0 and streamer.held_bytes == 0
    assert set(fetcher.cancelled) == set(fetcher.pending)
    fetcher.pending.clear()
    streamer.resumeProducing()
    while fetcher.pending:
        fetcher.answer(min(fetcher.pending))
    assert consumer.value() == data
    assert done.called and budget.streams == 0


def test_short_pause_keeps_the_window():
    """A pause shorter than paused_timeout keeps what was fetched."""
    from twisted.internet.task import Clock

    record, data, decoded = UNIFORM
    clock = Clock()
    fetcher = FakeFetcher(decoded)
    streamer = RangeStreamer(
        fetcher,
        record,
        0,
        len(data),
        RecordingConsumer(),
        read_ahead=400,
        max_buffer=10_000,
        clock=clock,
        paused_timeout=30,
    )
    streamer.start()
    streamer.pauseProducing()
    clock.advance(29)
    streamer.resumeProducing()
    clock.advance(60)
    assert streamer.windows_released == 0 and fetcher.cancelled == []
