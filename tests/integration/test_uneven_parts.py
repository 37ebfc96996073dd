"""Issue 14 point 1 counted at the provider: posts cut into uneven parts, fake NNTP server
→ engine → WebDAV, built as `altmount serve` builds them.

The fake server counts every BODY/ARTICLE it answers. Import reads only the first
and last article of a file; offsets in between are learned when the file is read.
"""

from __future__ import annotations

import base64
import math
import os
import random
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from urllib.parse import quote

import numpy as np
from twisted.internet import defer, reactor
from twisted.internet.protocol import Protocol
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from altmount.config import load_config
from altmount.engine import Engine
from altmount.testing.articles import PostedFile, build_nzb, post_release, yenc_article
from altmount.testing.nntpserver import listen
from altmount.web.site import build_site

AUTH = b"Basic " + base64.b64encode(b"usenet:usenet")
#: 40 parts of 400-800 KB, as the issue's release (about 24 MB).
_SIZE_RNG = random.Random(14)
SIZES = [_SIZE_RNG.randint(400_000, 800_000) for _ in range(40)]
DATA = random.Random(41).randbytes(sum(SIZES))
RELEASE = post_release({"movie.mkv": DATA}, part_sizes={"movie.mkv": SIZES}, salt="uneven")
SEEK_BAR = math.log2(len(SIZES)) + 2


class GeneratedArticles(Mapping[str, bytes]):
    """The articles of a huge uneven post, made when asked (nothing is kept)."""

    def __init__(self, name: str, sizes: np.ndarray) -> None:
        self.name = name
        self.sizes = sizes
        self.begins = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        self.total = int(sizes.sum())

    def ids(self) -> list[str]:
        return [f"big.{i}@altmount.test" for i in range(len(self.sizes))]

    def part_data(self, index: int) -> bytes:
        return bytes([index % 251]) * int(self.sizes[index])

    def __getitem__(self, message_id: str) -> bytes:
        head, _, rest = message_id.partition(".")
        number, _, domain = rest.partition("@")
        if head != "big" or domain != "altmount.test" or not number.isdecimal():
            raise KeyError(message_id)
        index = int(number)
        if index >= len(self.sizes):
            raise KeyError(message_id)
        return yenc_article(
            self.part_data(index),
            name=self.name,
            part=index + 1,
            total_parts=len(self.sizes),
            begin=int(self.begins[index]),
            file_size=self.total,
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids())

    def __len__(self) -> int:
        return len(self.sizes)


class _Body(Protocol):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.done: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason) -> None:
        self.done.callback(b"".join(self.chunks))


class UnevenRig(unittest.TestCase):
    """An engine and site over a fake provider holding `articles`."""

    timeout = 120
    articles: Mapping[str, bytes] = RELEASE.articles
    cache_lines = ""

    def setUp(self):
        self.http = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, pool=self.http)
        self.nntp_port, self.nntp = listen(reactor, self.articles)
        folder = tempfile.mkdtemp(prefix="altmount-uneven-")
        self.addCleanup(shutil.rmtree, folder, True)
        path = os.path.join(folder, "config.yaml")
        with open(path, "w") as handle:
            handle.write(
                f"metadata: {{root_path: {folder}/metadata, map_size_mb: 256}}\n"
                "health: {enabled: false}\n"
                f"{self.cache_lines}"
                "providers:\n"
                f"  - {{name: A, host: 127.0.0.1, port: {self.nntp_port.getHost().port},"
                " tls: false, max_connections: 8}\n"
            )
        self.config, _ = load_config(path)
        self.engine = None
        self.port = None

    @defer.inlineCallbacks
    def start_engine(self):
        """A new engine and site over the same metadata (a restart)."""
        yield self.stop_engine()
        self.engine = Engine(reactor, self.config)
        site = build_site(self.config, self.engine.store, self.engine.cache)
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")

    @defer.inlineCallbacks
    def stop_engine(self):
        if self.port is not None:
            yield self.port.stopListening()
            yield self.engine.close()
            self.port = None

    @defer.inlineCallbacks
    def tearDown(self):
        yield self.stop_engine()
        yield self.http.closeCachedConnections()
        yield self.nntp_port.stopListening()
        yield self.nntp.when_idle()

    @defer.inlineCallbacks
    def get(self, path: str, byte_range: str | None = None):
        """GET `path` (optionally a Range); fires with the body."""
        headers = {b"Authorization": [AUTH]}
        if byte_range:
            headers[b"Range"] = [byte_range.encode()]
        url = f"http://127.0.0.1:{self.port.getHost().port}{quote(path)}".encode()
        response = yield self.agent.request(b"GET", url, Headers(headers))
        body = _Body()
        response.deliverBody(body)
        data = yield body.done
        return data

    def reads(self) -> int:
        """BODY and ARTICLE requests the provider answered so far."""
        return self.nntp.commands["BODY"] + self.nntp.commands["ARTICLE"]

    @defer.inlineCallbacks
    def imported(self, nzb: bytes = RELEASE.nzb):
        yield self.start_engine()
        result = yield self.engine.importer.import_nzb(nzb, "Uneven.Movie.nzb")
        return result.files[0].path


class UnevenRelease(UnevenRig):
    """The issue's release: 40 articles of 400-800 KB with correct yEnc headers and CRCs."""

    @defer.inlineCallbacks
    def test_import_reads_at_most_twelve_articles(self):
        """The uneven release imports with at most 12 BODY/ARTICLE requests in all."""
        path = yield self.imported()
        self.assertLessEqual(self.reads(), 12)
        self.assertEqual(self.reads(), 2)
        record = self.engine.store.get_file(path)
        self.assertEqual(record.size, len(DATA))
        self.assertFalse(record.segments.exact)

    @defer.inlineCallbacks
    def test_full_get_and_twenty_ranges_are_byte_exact(self):
        """A full GET and 20 random ranges of the uneven file are the posted bytes."""
        path = yield self.imported()
        rng = random.Random(20)
        for _ in range(20):
            start = rng.randrange(len(DATA))
            end = min(len(DATA), start + rng.choice((1, 999, 65_536, 1_500_000)))
            data = yield self.get(path, f"bytes={start}-{end - 1}")
            self.assertEqual(data, DATA[start:end], (start, end))
        data = yield self.get(path)
        self.assertEqual(data, DATA)

    @defer.inlineCallbacks
    def test_seek_into_unlearned_region_costs_at_most_log2_plus_two(self):
        """Each seek into an offset not learned yet costs at most log2(segments) + 2 BODYs."""
        path = yield self.imported()
        costs = []
        for start in (12_345_678, 3_000_001, 20_000_000, 7_777_777, 16_500_000, 9_999):
            before = self.reads()
            data = yield self.get(path, f"bytes={start}-{start + 999}")
            self.assertEqual(data, DATA[start : start + 1000])
            costs.append(self.reads() - before)
        self.assertLessEqual(max(costs), SEEK_BAR, costs)

    @defer.inlineCallbacks
    def test_learned_offsets_are_stored_and_not_searched_again(self):
        """After a full read the record is exact, and after a restart a seek reads one article."""
        path = yield self.imported()
        data = yield self.get(path)
        self.assertEqual(data, DATA)
        self.engine.cache.ram.clear()
        yield self.start_engine()
        yield self.engine.cache.clear()
        self.assertTrue(self.engine.store.get_file(path).segments.exact)
        before = self.reads()
        start = sum(SIZES[:17]) + 10
        data = yield self.get(path, f"bytes={start}-{start + 999}")
        self.assertEqual(data, DATA[start : start + 1000])
        self.assertEqual(self.reads() - before, 1)


class UnevenReleaseWithHoles(UnevenRig):
    """The same release with two adjacent articles and one more missing everywhere."""

    def setUp(self):
        super().setUp()
        ids = RELEASE.files[0].message_ids
        self.nntp.faults.missing.update({ids[10], ids[11], ids[25]})

    @defer.inlineCallbacks
    def test_holes_of_unknown_length_are_zeros_of_the_right_length(self):
        """Missing articles of an uneven file are served as zeros where they belong."""
        path = yield self.imported()
        expected = bytearray(DATA)
        for index in (10, 11, 25):
            begin = sum(SIZES[:index])
            expected[begin : begin + SIZES[index]] = bytes(SIZES[index])
        data = yield self.get(path)
        self.assertEqual(len(data), len(DATA))
        self.assertEqual(data, bytes(expected))
        start = sum(SIZES[:11]) + 5
        data = yield self.get(path, f"bytes={start}-{start + 999_999}")
        self.assertEqual(data, bytes(expected[start : start + 1_000_000]))


class UnevenReleaseWithoutCache(UnevenRig):
    """The same release with the segment cache's RAM tier empty and no disk tier."""

    cache_lines = "segment_cache: {enabled: false, memory_mb: 0}\n"

    @defer.inlineCallbacks
    def test_seeks_and_full_read_without_a_cache(self):
        """Without a cache the seek bar and byte-exact reads still hold."""
        path = yield self.imported()
        for start in (12_345_678, 20_000_000):
            before = self.reads()
            data = yield self.get(path, f"bytes={start}-{start + 999}")
            self.assertEqual(data, DATA[start : start + 1000])
            self.assertLessEqual(self.reads() - before, SEEK_BAR)
        data = yield self.get(path)
        self.assertEqual(data, DATA)


BIG = GeneratedArticles("huge.mkv", 400_000 + (np.arange(71_500, dtype=np.int64) * 7919) % 400_001)


def _big_nzb() -> bytes:
    posted = PostedFile(
        "huge.mkv", b"", '"huge.mkv" yEnc (1/71500)', tuple(BIG.ids()), tuple([900_000] * 71_500)
    )
    return build_nzb([posted])


class HugeUnevenPost(UnevenRig):
    """A 43 GB-shaped post of 71,500 uneven parts, its articles made on demand."""

    articles = BIG

    @defer.inlineCallbacks
    def test_import_is_bounded_and_a_seek_is_logarithmic(self):
        """Import costs 2 BODYs (plus the STAT sample); a seek costs at most log2(n) + 2."""
        path = yield self.imported(_big_nzb())
        self.assertEqual(self.reads(), 2)
        self.assertLessEqual(self.nntp.commands["STAT"], 0.02 * len(BIG))
        record = self.engine.store.get_file(path)
        self.assertEqual(record.size, BIG.total)
        start = int(BIG.total * 0.618)
        before = self.reads()
        data = yield self.get(path, f"bytes={start}-{start + 999}")
        index = int(np.searchsorted(BIG.begins, start, side="right")) - 1
        self.assertEqual(data, BIG.part_data(index)[:1][0:1] * len(data))
        self.assertEqual(len(data), 1000)
        self.assertLessEqual(self.reads() - before, math.log2(len(BIG)) + 2)
