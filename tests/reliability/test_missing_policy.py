"""streaming.missing_article_policy: an article missing on every provider.

`fail` (the default) ends the read after the bytes before the hole; `zero_fill_media`
serves the segment as zeros in media containers, records the hole in the file's
health record and in /api/health, and logs it once; other files still fail. No
read ever hangs.
"""

from __future__ import annotations

import logging
import time

from reliability_harness import Rig, generate
from twisted.internet import defer

from altmount.testing.articles import post_release
from altmount.testing.nntpserver import Faults

ARTICLE = 256 * 1024
SIZE = 4 * 1024 * 1024 + 99  # 17 articles
DATA = generate(SIZE, 83)
MEDIA = post_release({"hole.mkv": DATA}, article_size=ARTICLE, salt="rel-hole")
OTHER = post_release({"hole.iso": DATA}, article_size=ARTICLE, salt="rel-hole-iso")
LOST = 6


class MissingArticlePolicy(Rig):
    """The two policies over a release whose segment LOST is missing on both providers."""

    @defer.inlineCallbacks
    def serve(self, policy: str | None):
        articles = {**MEDIA.articles, **OTHER.articles}
        lost = {MEDIA.files[0].message_ids[LOST], OTHER.files[0].message_ids[LOST]}
        a, _ = self.provider("A", articles, Faults(missing=set(lost)))
        b, _ = self.provider("B", articles, Faults(missing=set(lost)), backup=True)
        streaming = {} if policy is None else {"missing_article_policy": policy}
        yield self.start([a, b], streaming=streaming)
        self.media = yield self.import_release(MEDIA, "Hole.nzb")
        self.other = yield self.import_release(OTHER, "HoleIso.nzb")

    @defer.inlineCallbacks
    def test_default_fails_the_read(self):
        """By default a GET stops at the hole with every byte before it exact, fast."""
        yield self.serve(None)
        started = time.monotonic()
        response, data, _ = yield self.get(self.url(self.media))
        self.assertLess(len(data), SIZE)
        self.assertLessEqual(len(data), LOST * ARTICLE)
        self.assertTrue(data == DATA[: len(data)])
        self.assertLess(time.monotonic() - started, 5)
        status, health = yield self.api("/api/health")
        self.assertEqual(health["components"]["media_holes"]["status"], "healthy")

    @defer.inlineCallbacks
    def test_zero_fill_media(self):
        """With zero_fill_media an mkv is served whole, zeros in the hole; the hole is in the
        health record and /api/health, and logged once over three reads."""
        yield self.serve("zero_fill_media")
        expected = bytearray(DATA)
        expected[LOST * ARTICLE : (LOST + 1) * ARTICLE] = bytes(ARTICLE)
        for _ in range(2):
            response, data, _ = yield self.get(self.url(self.media))
            self.assertEqual(response.code, 200)
            self.assertTrue(data == bytes(expected), "zero-filled file differs")
        start = LOST * ARTICLE - 10
        response, data, _ = yield self.get(
            self.url(self.media), range_=f"bytes={start}-{start + 20}"
        )
        self.assertEqual(data, DATA[start : start + 10] + bytes(11))
        message_id = MEDIA.files[0].message_ids[LOST]
        logged = [m for m in self.messages(logging.WARNING) if message_id in m]
        self.assertEqual(len(logged), 1, logged)
        health = self.server.ops.files.store.get(self.media.path)
        self.assertEqual(health.status, "degraded")
        self.assertEqual(health.missing, (message_id,))
        status, report = yield self.api("/api/health")
        holes = report["components"]["media_holes"]
        self.assertEqual(holes["status"], "degraded")
        self.assertEqual(holes["files"], [{"path": self.media.path, "segments": 1}])

    @defer.inlineCallbacks
    def test_zero_fill_leaves_other_files_failing(self):
        """With zero_fill_media a non-media file (iso) still fails the read at the hole."""
        yield self.serve("zero_fill_media")
        response, data, _ = yield self.get(self.url(self.other))
        self.assertLess(len(data), SIZE)
        self.assertTrue(data == DATA[: len(data)])
