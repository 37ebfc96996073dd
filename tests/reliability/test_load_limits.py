"""Load against provider limits and clients that leave: counted by the servers and the API.

The fake providers count connections themselves (`peak_connections`), so these
figures are what a real provider would see; freed workers are read from
`/api/health/streaming` as an operator would.
"""

from __future__ import annotations

import random
import time
from urllib.parse import quote

from reliability_harness import Rig, generate, pause
from twisted.internet import defer

from altmount.queue import State
from altmount.testing.articles import post_release
from altmount.testing.nntpserver import Faults

ARTICLE = 256 * 1024
SIZE = 16 * 1024 * 1024 + 5
DATA = generate(SIZE, 97)
RELEASE = post_release({"load.mkv": DATA}, article_size=ARTICLE, salt="rel-load")
EXTRA = [
    post_release(
        {f"extra{n}.mkv": generate(1024 * 1024, n)}, article_size=ARTICLE, salt=f"rel-extra{n}"
    )
    for n in range(4)
]
ARTICLES = {k: v for r in (RELEASE, *EXTRA) for k, v in r.articles.items()}
MAX_A, MAX_B = 4, 2


class LoadLimits(Rig):
    """20 streams + queue imports + health checks + provider tests within max_connections."""

    timeout = 120

    @defer.inlineCallbacks
    def test_connections_never_exceed_max(self):
        """Neither provider ever counts more than its max_connections at once."""
        a, fa = self.provider("A", ARTICLES, Faults(latency=0.01), max_connections=MAX_A)
        b, fb = self.provider(
            "B", ARTICLES, Faults(latency=0.01), max_connections=MAX_B, backup=True
        )
        fa.faults.missing_rate = 0.05  # some traffic on the backup too
        yield self.start([a, b])
        record = yield self.import_release(RELEASE, "Load.nzb")
        url = self.url(record)
        rng = random.Random(3)

        @defer.inlineCallbacks
        def stream():
            start = rng.randrange(SIZE - 1)
            end = min(SIZE - 1, start + rng.choice([1, 300_000, 3 * 1024 * 1024]))
            response, data, _ = yield self.get(url, range_=f"bytes={start}-{end}")
            self.assertEqual(response.code, 206)
            self.assertTrue(data == DATA[start : end + 1], (start, end))

        @defer.inlineCallbacks
        def imports():
            items = []
            for n, release in enumerate(EXTRA):
                item = yield self.server.queue.add(release.nzb, f"Extra{n}.nzb")
                items.append(item)
            done = yield defer.gatherResults([self.server.queue.wait_for(i.id) for i in items])
            self.assertEqual({i.state for i in done}, {State.COMPLETED})

        @defer.inlineCallbacks
        def checks():
            for _ in range(3):
                status, _ = yield self.api(f"/api/health/files/{quote(record.path)}/check", b"POST")
                self.assertEqual(status, 200)

        # The provider tests start first, while the pools are below their limits.
        tests = [
            self.api("/api/providers/A/test", b"POST"),
            self.api("/api/providers/B/test", b"POST"),
        ]
        yield pause(0.05)
        work = [stream() for _ in range(20)] + [imports(), checks()]
        yield defer.gatherResults(work + tests, consumeErrors=True)
        for answer in (yield defer.gatherResults(tests)):
            self.assertEqual(answer[0], 200)
        self.assertLessEqual(fa.peak_connections, MAX_A)
        self.assertLessEqual(fb.peak_connections, MAX_B)
        self.assertEqual(fa.connections_rejected + fb.connections_rejected, 0)

    @defer.inlineCallbacks
    def test_client_gone_frees_workers_within_1s(self):
        """A client that hangs up mid-stream leaves no active stream, fetch or queued fetch
        in /api/health/streaming within 1 s, and no buffered bytes."""
        a, fa = self.provider("A", ARTICLES, Faults(latency=0.05), max_connections=MAX_A)
        yield self.start([a], streaming={"max_download_workers": 3})
        record = yield self.import_release(RELEASE, "Gone.nzb")
        response, data, _ = yield self.get(self.url(record), stop_after=300_000)
        self.assertLess(len(data), SIZE)
        gone = time.monotonic()
        while True:
            status, body = yield self.api("/api/health/streaming")
            idle = (body["workers"]["active"], body["workers"]["queued"], body["active_streams"])
            if idle == (0, 0, 0) or time.monotonic() - gone > 1:
                break
            yield pause(0.02)
        self.assertEqual(idle, (0, 0, 0), body)
        self.assertLess(time.monotonic() - gone, 1.0)
        self.assertEqual(body["totals"]["outcomes"].get("client_gone"), 1, body["totals"])
