"""An article whose yEnc CRC fails while streaming: refetched elsewhere, else served as decoded.

Over real sockets to fake providers: a copy corrupted on one provider is replaced by the
good copy of the other (byte-exact, nothing recorded); an article whose `pcrc32` is wrong
everywhere (its data intact) is served as decoded, logged once naming the article, and
the file is marked degraded (wants a repair) in its health record and /api/health.
"""

from __future__ import annotations

import logging
import re

from reliability_harness import Rig, generate
from twisted.internet import defer

from altmount.testing.articles import post_release
from altmount.testing.nntpserver import Faults

ARTICLE = 256 * 1024
SIZE = 3 * 1024 * 1024 + 77  # 13 articles
DATA = generate(SIZE, 29)
BAD = 5


def wrong_pcrc(body: bytes) -> bytes:
    """The same article with its `=yend pcrc32=` replaced by a wrong value."""
    match = re.search(rb"pcrc32=([0-9a-f]{8})", body)
    assert match is not None
    wrong = b"%08x" % (int(match.group(1), 16) ^ 0xFFFFFFFF)
    return body[: match.start(1)] + wrong + body[match.end(1) :]


class CrcMismatchWhileStreaming(Rig):
    """Two providers; segment BAD of the file is damaged on one or on both."""

    @defer.inlineCallbacks
    def test_corrupt_copy_on_one_provider_is_replaced_by_the_good_one(self):
        """Data corrupted on A, intact on B: every read is byte-exact and no damage is noted."""
        release = post_release({"good.mkv": DATA}, article_size=ARTICLE, salt="crc-one")
        bad_id = release.files[0].message_ids[BAD]
        a, factory_a = self.provider("A", release.articles, Faults(corrupt={bad_id}))
        b, factory_b = self.provider("B", release.articles, backup=True)
        yield self.start([a, b])
        record = yield self.import_release(release, "Crc.One.nzb")
        response, data, _ = yield self.get(self.url(record))
        self.assertEqual(response.code, 200)
        self.assertTrue(data == DATA, "full read differs")
        start = BAD * ARTICLE - 1000
        response, data, _ = yield self.get(self.url(record), range_=f"bytes={start}-{start + 5000}")
        self.assertEqual(data, DATA[start : start + 5001])
        stats = self.server.engine.fetcher.stats()
        self.assertGreaterEqual(stats.crc_retries, 1)
        self.assertEqual(stats.crc_served, 0)
        self.assertGreaterEqual(factory_b.commands["BODY"], 1)
        self.assertIsNone(self.server.ops.files.store.get(record.path))
        _, report = yield self.api("/api/health")
        self.assertEqual(report["components"]["crc_failures"]["status"], "healthy")

    @defer.inlineCallbacks
    def test_wrong_pcrc32_everywhere_is_served_and_marked(self):
        """A wrong pcrc32 on both providers: reads are byte-exact, one warning names the
        article, the file is degraded and wants a repair, /api/health and /metrics say so."""
        release = post_release({"crc.iso": DATA}, article_size=ARTICLE, salt="crc-all")
        bad_id = release.files[0].message_ids[BAD]
        articles = dict(release.articles)
        articles[bad_id] = wrong_pcrc(articles[bad_id])
        a, _ = self.provider("A", articles)
        b, _ = self.provider("B", articles, backup=True)
        yield self.start([a, b])
        record = yield self.import_release(release, "Crc.All.nzb")
        for _ in range(2):
            response, data, _ = yield self.get(self.url(record))
            self.assertEqual(response.code, 200)
            self.assertTrue(data == DATA, "full read differs")
        inside = BAD * ARTICLE + 123
        response, data, _ = yield self.get(self.url(record), range_=f"bytes={inside}-{inside + 999}")
        self.assertEqual((response.code, data), (206, DATA[inside : inside + 1000]))
        logged = [m for m in self.messages(logging.WARNING) if bad_id in m]
        self.assertEqual(len(logged), 1, logged)
        self.assertIn(record.path, logged[0])
        health = self.server.ops.files.store.get(record.path)
        self.assertEqual(health.status, "degraded")
        self.assertTrue(health.wants_repair)
        self.assertIn(bad_id, health.damage[0])
        _, report = yield self.api("/api/health")
        crc = report["components"]["crc_failures"]
        self.assertEqual(crc["status"], "degraded")
        self.assertEqual(crc["files"], [{"path": record.path, "segments": 1}])
        self.assertEqual(self.server.engine.fetcher.stats().crc_served, 3)
        _, metrics, _ = yield self.get((self.base + "/metrics").encode())
        self.assertIn(b"altmount_fetcher_crc_served_total 3.0", metrics)
