"""Provider faults during streams: disconnects, 430s, stalls, garbage, bad yEnc, restarts, DNS.

Real sockets on 127.0.0.1: fake NNTP providers with fault injection, the assembled
Server, twisted.web's Agent as the client. Every stream is compared byte for byte
with the posted data; what may not be byte-exact must end as a clean short body.
"""

from __future__ import annotations

import logging
import time

from reliability_harness import Rig, generate, pause
from twisted.internet import defer, reactor

from altmount.testing.articles import post_release

ARTICLE = 256 * 1024
SIZE = 24 * 1024 * 1024 + 777  # 97 articles
DATA = generate(SIZE, 71)
RELEASE = post_release({"faults.mkv": DATA}, article_size=ARTICLE, salt="rel-faults")
IDS = RELEASE.files[0].message_ids
SMALL = DATA[: 4 * 1024 * 1024]
SMALL_RELEASE = post_release({"small.mkv": SMALL}, article_size=ARTICLE, salt="rel-small")
FAULT_LINE = "requests in flight are retried"


class ProviderFaults(Rig):
    """Streams over faulty providers stay byte-exact, bounded and quiet in the log."""

    @defer.inlineCallbacks
    def test_disconnects_and_430s_on_primary_backup_complete(self):
        """5% disconnects and 2% 430s on A, B complete: exact bytes, bounded retries, one log
        line per broken connection."""
        a, fa = self.provider("A", RELEASE.articles, max_connections=4)
        b, fb = self.provider("B", RELEASE.articles, max_connections=2, backup=True)
        yield self.start([a, b])
        record = yield self.import_release(RELEASE, "Faults.nzb")
        fa.faults.disconnect_rate, fa.faults.missing_rate = 0.05, 0.02
        logged_before = len(self.records)
        bodies_before = fa.commands["BODY"] + fb.commands["BODY"]
        response, data, _ = yield self.get(self.url(record))
        self.assertEqual(response.code, 200)
        self.assertEqual(len(data), SIZE)
        self.assertTrue(data == DATA, "bytes differ")
        pool = self.server.engine.router.providers[0]
        lost = pool.stats.errors["connection_lost"]
        self.assertGreater(lost, 0)
        self.assertGreater(pool.stats.articles_missing, 0)
        # Each article is asked for at most 1 + max_retries times per provider; in
        # practice a fault costs one more request, so the total stays close to the count.
        requests = fa.commands["BODY"] + fb.commands["BODY"] - bodies_before
        self.assertLessEqual(requests, len(IDS) + lost + pool.stats.articles_missing)
        lines = [r.getMessage() for r in self.records[logged_before:]]
        fault_lines = [m for m in lines if FAULT_LINE in m]
        # One line per broken connection: at least one, never more than A accepted.
        self.assertGreaterEqual(len(fault_lines), 1)
        self.assertLessEqual(len(fault_lines), fa.connections_total)
        self.assertTrue(all("provider A" in m for m in fault_lines), fault_lines)
        self.assertLess(len(lines), 4 * len(fault_lines) + 10, lines)
        self.assertLessEqual(fa.peak_connections, 4)
        self.assertLessEqual(fb.peak_connections, 2)

    @defer.inlineCallbacks
    def test_several_stalls_detected_and_reissued(self):
        """With 3% of A's answers never coming, each stall times out after 1 s, its
        requests are reissued, and the GET is exact."""
        a, fa = self.provider("A", RELEASE.articles, max_connections=4)
        yield self.start([a], nntp={"request_timeout_seconds": 1})
        record = yield self.import_release(RELEASE, "Stalls.nzb")
        fa.random.seed(5)
        fa.faults.stall_rate = 0.03
        started = time.monotonic()
        response, data, _ = yield self.get(self.url(record))
        elapsed = time.monotonic() - started
        self.assertTrue(data == DATA, "bytes differ")
        pool = self.server.engine.router.providers[0]
        self.assertGreaterEqual(pool.stats.errors["timeout"], 2)
        self.assertLess(elapsed, 30)
        self.assertLessEqual(fa.peak_connections, 4)

    @defer.inlineCallbacks
    def test_garbage_status_lines_and_corrupt_bodies(self):
        """Garbage status lines (retried on a new connection) and CRC-corrupt bodies (fetched
        again) give exact bytes, or at worst an exact prefix and a logged, clean cut."""
        a, fa = self.provider("A", RELEASE.articles, max_connections=4)
        b, fb = self.provider("B", RELEASE.articles, max_connections=2, backup=True)
        yield self.start([a, b])
        record = yield self.import_release(RELEASE, "Garbage.nzb")
        fa.faults.garbage_rate, fa.faults.corrupt_rate = 0.05, 0.03
        response, data, _ = yield self.get(self.url(record))
        self.assertEqual(response.code, 200)
        self.assertTrue(data == DATA[: len(data)], "a wrong byte reached the client")
        if len(data) < SIZE:
            self.assertTrue(any("CRC mismatch" in m for m in self.messages(logging.ERROR)))
        pool = self.server.engine.router.providers[0]
        self.assertGreater(pool.stats.errors["protocol"], 0)
        self.assertGreater(self.server.engine.fetcher.stats().crc_retries, 0)

    @defer.inlineCallbacks
    def test_truncated_yenc_fails_cleanly(self):
        """An article whose yEnc is cut short (no =yend) on every provider ends the stream
        after the bytes before it, with the error logged; other ranges still serve."""
        articles = dict(SMALL_RELEASE.articles)
        ids = SMALL_RELEASE.files[0].message_ids
        broken = ids[5]
        articles[broken] = articles[broken][: len(articles[broken]) // 2]
        a, fa = self.provider("A", articles, max_connections=4)
        yield self.start([a])
        record = yield self.import_release(SMALL_RELEASE, "Truncated.nzb")
        response, data, _ = yield self.get(self.url(record))
        self.assertLess(len(data), len(SMALL))
        self.assertTrue(data == SMALL[: len(data)], "a wrong byte reached the client")
        self.assertTrue(any(broken in m for m in self.messages(logging.ERROR)))
        response, data, _ = yield self.get(self.url(record), range_=f"bytes=0-{ARTICLE * 5 - 1}")
        self.assertEqual(response.code, 206)
        self.assertTrue(data == SMALL[: ARTICLE * 5])

    @defer.inlineCallbacks
    def test_server_restart_during_stream(self):
        """The provider's port closes (connections dropped) mid-stream and reopens 1 s
        later: the stream recovers through reconnect with backoff and is exact."""
        a, fa = self.provider("A", RELEASE.articles, max_connections=4)
        served: list = []
        build = fa.buildProtocol
        fa.buildProtocol = lambda addr: served.append(build(addr)) or served[-1]
        yield self.start([a])
        record = yield self.import_release(RELEASE, "Restart.nzb")
        fa.faults.bandwidth = 6 * 1024 * 1024  # per connection: the GET lasts ~1 s
        listening = [p for p in reactor.getReaders() if getattr(p, "factory", None) is fa]
        self.assertEqual(len(listening), 1)
        port_number = listening[0].getHost().port

        @defer.inlineCallbacks
        def restart():
            yield pause(0.3)
            yield listening[0].stopListening()
            for protocol in served:
                if protocol.transport is not None:
                    protocol.transport.abortConnection()
            yield pause(1.0)
            again = reactor.listenTCP(port_number, fa, interface="127.0.0.1")
            self.addCleanup(again.stopListening)

        restarting = restart()
        response, data, _ = yield self.get(self.url(record))
        yield restarting
        self.assertTrue(data == DATA, "bytes differ")
        pool = self.server.engine.router.providers[0]
        # Under load the drop can find the connections idle between requests: then no
        # request fails with it (the error counter stays 0), but the pool logs the loss.
        self.assertTrue(any("connection lost" in m for m in self.messages(logging.INFO)))
        self.assertGreater(pool.stats.errors["connect"], 0)
        self.assertTrue(any("retrying with backoff" in m for m in self.messages(logging.WARNING)))

    @defer.inlineCallbacks
    def test_unresolvable_primary(self):
        """A primary at nonexistent.invalid: a clear warning and health reason name it,
        the server starts, and files stream from the backup."""
        a = {"name": "A", "host": "nonexistent.invalid", "port": 119, "tls": False}
        a["max_connections"] = 2
        b, fb = self.provider("B", SMALL_RELEASE.articles, max_connections=2, backup=True)
        # Requests queued at A wait connect + request timeout for a connection before
        # the router asks B: short timeouts keep this test short.
        yield self.start([a, b], nntp={"connect_timeout_seconds": 1, "request_timeout_seconds": 1})
        warnings = self.messages(logging.WARNING)
        self.assertTrue(
            any("provider A" in m and "nonexistent.invalid" in m for m in warnings), warnings
        )
        record = yield self.import_release(SMALL_RELEASE, "Dns.nzb")
        started = time.monotonic()
        response, data, _ = yield self.get(self.url(record))
        self.assertTrue(data == SMALL, "bytes differ")
        self.assertLess(time.monotonic() - started, 15)
        status, health = yield self.api("/api/health")
        providers = health["components"]["providers"]["providers"]
        self.assertNotEqual(providers[0]["status"], "healthy", providers)
        self.assertTrue(providers[0]["reason"], providers)
        self.assertEqual(providers[1]["status"], "healthy", providers)
