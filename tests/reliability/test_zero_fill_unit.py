"""The zero-fill policy of RangeStreamer, without sockets: which files, which bytes, which calls."""

from __future__ import annotations

import random

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.testing import StringTransport

from altmount.errors import ArticleNotFound, NNTPTimeout
from altmount.metadata import FileRecord, SegmentTable
from altmount.stream.streamer import RangeStreamer, zero_fill_applies

SEGMENTS, LENGTH, SKIP = 6, 100, 7


def record(path: str = "/d/film.mkv"):
    """A file of SEGMENTS segments of LENGTH bytes, each decoded with SKIP leading bytes."""
    data = random.Random(1).randbytes(SEGMENTS * LENGTH)
    offsets = [i * LENGTH for i in range(SEGMENTS + 1)]
    ids = tuple(f"s{i}@t" for i in range(SEGMENTS))
    table = SegmentTable(ids, offsets, [SKIP] * SEGMENTS, [0] * SEGMENTS)
    decoded = [b"\xee" * SKIP + data[i * LENGTH : (i + 1) * LENGTH] for i in range(SEGMENTS)]
    return FileRecord(path, len(data), 1.0, "ok", table, "r"), data, decoded


class Fetcher:
    """Segments from memory; the indices in `missing` fail with `error`."""

    def __init__(self, decoded, missing, error=ArticleNotFound):
        self.decoded, self.missing, self.error = decoded, missing, error

    def fetch(self, table, index, priority=0, *, path="") -> Deferred:
        if index in self.missing:
            return fail(self.error(table.message_ids[index]))
        return succeed(self.decoded[index])


def run(rec, fetcher, start, end, **options):
    consumer = StringTransport()
    streamer = RangeStreamer(
        fetcher, rec, start, end, consumer, read_ahead=250, max_buffer=10_000, **options
    )
    results: list = []
    streamer.start().addBoth(results.append)
    return consumer.value(), results[0]


def test_policy_applies_to_media_containers_only():
    """zero_fill_media covers mkv/mp4/m4v/webm/mov in any case, nothing else; fail covers none."""
    for path in ("/a/b.mkv", "/a/b.MP4", "/a/b.m4v", "/a/b.webm", "/a/b.mov"):
        assert zero_fill_applies("zero_fill_media", path)
        assert not zero_fill_applies("fail", path)
    for path in ("/a/b.iso", "/a/b.srt", "/a/b.rar", "/a/mkv", "/a/b.mkv.par2"):
        assert not zero_fill_applies("zero_fill_media", path)


def test_missing_segment_becomes_zeros_and_is_reported():
    """Every range over a missing segment gets zeros exactly where its bytes were."""
    rec, data, decoded = record()
    for start, end in [(0, SEGMENTS * LENGTH), (250, 260), (199, 301), (205, 295)]:
        holes: list = []
        written, result = run(
            rec,
            Fetcher(decoded, {2}),
            start,
            end,
            zero_fill=True,
            on_hole=lambda i, m, n, holes=holes: holes.append((i, m, n)),
        )
        expected = bytearray(data)
        expected[200:300] = bytes(100)
        assert written == bytes(expected[start:end])
        assert result == end - start
        assert holes == [(2, "s2@t", min(end, 300) - max(start, 200))]


def test_without_zero_fill_the_stream_stops_at_the_hole():
    """By default the bytes before the hole are written and the stream fails."""
    rec, data, decoded = record()
    written, result = run(rec, Fetcher(decoded, {3}), 0, SEGMENTS * LENGTH)
    assert written == data[:300]
    assert result.check(ArticleNotFound)


def test_zero_fill_only_for_missing_articles():
    """Other errors (a timeout) still end the stream under zero_fill."""
    rec, data, decoded = record()
    holes: list = []
    written, result = run(
        rec,
        Fetcher(decoded, {1}, NNTPTimeout),
        0,
        600,
        zero_fill=True,
        on_hole=lambda *a: holes.append(a),
    )
    assert written == data[:100]
    assert result.check(NNTPTimeout)
    assert holes == []
