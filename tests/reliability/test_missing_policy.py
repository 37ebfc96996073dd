"""streaming.missing_article_policy: an article missing on every provider.

`zero_fill_media` (the default) serves the segment as zeros in media containers,
records the hole in the file's health record (degraded, wants a repair), in
/api/health and in the zero-filled bytes metric, and logs it once; other files still
fail. `fail` ends the read after the bytes before the hole. No read ever hangs.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from unittest import SkipTest

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
    def test_fail_policy_fails_the_read(self):
        """With `fail` a GET stops at the hole with every byte before it exact, fast."""
        yield self.serve("fail")
        started = time.monotonic()
        response, data, _ = yield self.get(self.url(self.media))
        self.assertLess(len(data), SIZE)
        self.assertLessEqual(len(data), LOST * ARTICLE)
        self.assertTrue(data == DATA[: len(data)])
        self.assertLess(time.monotonic() - started, 5)
        status, health = yield self.api("/api/health")
        self.assertEqual(health["components"]["media_holes"]["status"], "healthy")

    @defer.inlineCallbacks
    def test_zero_fill_media_by_default(self):
        """By default an mkv is served whole, zeros in the hole (also for a range starting
        inside it); the hole is in the health record, /api/health and the metric, logged once."""
        yield self.serve(None)
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
        inside = LOST * ARTICLE + 100
        response, data, _ = yield self.get(
            self.url(self.media), range_=f"bytes={inside}-{inside + ARTICLE}"
        )
        after = DATA[(LOST + 1) * ARTICLE : inside + ARTICLE + 1]
        self.assertEqual(data, bytes(ARTICLE - 100) + after)
        message_id = MEDIA.files[0].message_ids[LOST]
        logged = [m for m in self.messages(logging.WARNING) if message_id in m]
        self.assertEqual(len(logged), 1, logged)
        health = self.server.ops.files.store.get(self.media.path)
        self.assertEqual(health.status, "degraded")
        self.assertEqual(health.missing, (message_id,))
        self.assertTrue(health.wants_repair)
        self.assertIn(message_id, health.damage[0])
        zeros = 2 * ARTICLE + 11 + (ARTICLE - 100)  # two full reads and the two ranges
        _, metrics, _ = yield self.get((self.base + "/metrics").encode())
        self.assertIn(f"altmount_zero_filled_bytes_total {float(zeros)}".encode(), metrics)
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


def stored_rar(name: str, data: bytes) -> dict[str, bytes]:
    """A stored (-m0) RAR 5 set of one file in volumes of 1 MiB, by volume name."""
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, name).write_bytes(data)
        subprocess.run(
            ["rar", "a", "-idq", "-m0", "-v1024k", "set.rar", name], cwd=folder, check=True
        )
        return {p.name: p.read_bytes() for p in sorted(Path(folder).glob("set.*rar"))}


class HolesInArchivesAndMultiFilePosts(Rig):
    """Zero-fill (the default) for a stored RAR member and for each file of a multi-file post."""

    @defer.inlineCallbacks
    def test_hole_in_a_stored_rar_volume(self):
        """A missing article of the first volume becomes zeros at the member's inner offset."""
        if shutil.which("rar") is None:
            raise SkipTest("rar is not installed")
        volumes = stored_rar("inner.mkv", DATA[: 3 * 1024 * 1024])
        release = post_release(volumes, article_size=ARTICLE, salt="rar-hole")
        a, factory = self.provider("A", release.articles)
        yield self.start([a])
        result = yield self.server.engine.importer.import_nzb(release.nzb, "Rar.Hole.nzb")
        (record,) = result.files
        first = release.files[0]
        lost = 2
        factory.faults.missing.add(first.message_ids[lost])
        header = first.data.find(DATA[:4096])
        self.assertGreater(header, 0)
        expected = bytearray(DATA[: 3 * 1024 * 1024])
        expected[lost * ARTICLE - header : (lost + 1) * ARTICLE - header] = bytes(ARTICLE)
        response, data, _ = yield self.get(self.url(record))
        self.assertEqual(response.code, 200)
        self.assertTrue(data == bytes(expected), "zero-filled member differs")
        health = self.server.ops.files.store.get(record.path)
        self.assertEqual((health.status, health.missing), ("degraded", (first.message_ids[lost],)))

    @defer.inlineCallbacks
    def test_holes_in_each_file_of_a_multi_file_post(self):
        """Two mkv files of one post, each with a missing article: both served zero-filled."""
        files = {"one.mkv": DATA[: 2 * 1024 * 1024], "two.mkv": DATA[1024 * 1024 :]}
        release = post_release(files, article_size=ARTICLE, salt="multi-hole")
        a, factory = self.provider("A", release.articles)
        yield self.start([a])
        result = yield self.server.engine.importer.import_nzb(release.nzb, "Multi.Hole.nzb")
        records = {record.path.rsplit("/", 1)[1]: record for record in result.files}
        for posted, lost in zip(release.files, (1, 3), strict=True):
            factory.faults.missing.add(posted.message_ids[lost])
        for posted, lost in zip(release.files, (1, 3), strict=True):
            record = records[posted.name]
            expected = bytearray(posted.data)
            expected[lost * ARTICLE : (lost + 1) * ARTICLE] = bytes(ARTICLE)
            response, data, _ = yield self.get(self.url(record))
            self.assertTrue(data == bytes(expected), f"{posted.name} differs")
            health = self.server.ops.files.store.get(record.path)
            self.assertEqual(health.status, "degraded")
            self.assertTrue(health.wants_repair)
