"""The assembled server over real sockets: fake NNTP providers → import → WebDAV over HTTP.

Each test starts two fake NNTP servers on 127.0.0.1 (A primary, B backup), the real
`Server` (engine, pools, router, fetcher, decode pool, site) on an ephemeral port,
imports a posted release through the engine's importer as `altmount import` does, and
reads the file back with twisted.web's Agent. These are `twisted.trial` test cases
(see tests/conftest.py): trial fails a test that leaves connections or timers behind.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import random
import shutil
import tempfile
import time
from urllib.parse import quote

import yaml
from twisted.internet import defer, reactor, task
from twisted.internet.protocol import Protocol
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from altmount.config import parse_config
from altmount.errors import ImportFailed
from altmount.server import Server
from altmount.testing.articles import post_release
from altmount.testing.nntpserver import Faults, NNTPServerFactory, listen

ARTICLE = 256 * 1024
SIZE = 6 * 1024 * 1024 + 4321  # 25 articles, the last one short
DATA = random.Random(11).randbytes(SIZE)
RELEASE = post_release({"movie.mkv": DATA}, article_size=ARTICLE, salt="e2e")
IDS = RELEASE.files[0].message_ids
#: ~10% of the articles, never the first or last (those the import reads).
MISSING_ON_A = {IDS[3], IDS[9], IDS[17]}
AUTH = b"Basic " + base64.b64encode(b"usenet:usenet")
MAX_A, MAX_B = 4, 2
STALL_SEED, STALL_RATE = 22, 0.03


class _Body(Protocol):
    """Collects a response body; fires `done` with (bytes, reason) however it ends.

    With `stop_after` set, it drops the connection once that many bytes arrived.
    """

    def __init__(self, stop_after: int | None = None) -> None:
        self.chunks: list[bytes] = []
        self.received = 0
        self.stop_after = stop_after
        self.done: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)
        self.received += len(data)
        if self.stop_after is not None and self.received >= self.stop_after:
            self.stop_after = None
            self.transport.stopProducing()

    def connectionLost(self, reason) -> None:
        self.done.callback((b"".join(self.chunks), reason))


class EndToEnd(unittest.TestCase):
    """Server + two fake providers + HTTP client, torn down completely after each test."""

    timeout = 30

    def setUp(self) -> None:
        self.http = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, pool=self.http)
        self.nntp: list[NNTPServerFactory] = []
        self.server: Server | None = None
        self.records: list[logging.LogRecord] = []
        handler = logging.Handler(logging.INFO)
        handler.emit = self.records.append  # type: ignore[method-assign]
        logger = logging.getLogger("altmount")
        logger.addHandler(handler)
        self.addCleanup(logger.removeHandler, handler)

    @defer.inlineCallbacks
    def tearDown(self):
        if self.server is not None:
            yield self.server.stop()
        yield self.http.closeCachedConnections()
        for factory in self.nntp:
            yield factory.when_idle()

    # -- assembly ------------------------------------------------------------------

    def provider(
        self, name: str, faults: Faults | None = None, **options
    ) -> tuple[dict, NNTPServerFactory]:
        """Start a fake NNTP server; return its provider config entry and its factory."""
        port, factory = listen(reactor, RELEASE.articles, faults or Faults(), seed=7, **options)
        self.addCleanup(port.stopListening)
        self.nntp.append(factory)
        entry = {"name": name, "host": "127.0.0.1", "port": port.getHost().port, "tls": False}
        return entry, factory

    @defer.inlineCallbacks
    def start(
        self,
        providers: list[dict],
        *,
        request_timeout: float = 5,
        workers: int = 8,
        missing_article_policy: str = "zero_fill_media",
    ):
        """Start the server over `providers`; fires once the startup probes are done."""
        # Not self.mktemp(): under pytest that would write into the current directory.
        folder = tempfile.mkdtemp(prefix="altmount-e2e-")
        self.addCleanup(shutil.rmtree, folder, True)
        metadata = os.path.join(folder, "metadata")
        text = yaml.safe_dump(
            {
                "webdav": {"port": 8080, "bind_address": "127.0.0.1"},
                "metadata": {"root_path": metadata, "map_size_mb": 64},
                "database": {"path": metadata + ".db"},
                "nntp": {
                    "connect_timeout_seconds": 2,
                    "request_timeout_seconds": request_timeout,
                    "max_retries": 3,
                },
                "streaming": {
                    "max_range_size": 2 * 1024 * 1024,
                    "streaming_chunk_size": 1024 * 1024,
                    "max_download_workers": workers,
                    "missing_article_policy": missing_article_policy,
                },
                "engine": {"decode_workers": 2},
                "providers": providers,
            }
        )
        config, warnings = parse_config(text, base_dir=".")
        self.assertEqual(warnings, [])
        # The schema asks for a real port (1..65535); tests take any free one.
        config = dataclasses.replace(config, webdav=dataclasses.replace(config.webdav, port=0))
        self.server = Server(reactor, config)
        port = yield self.server.start()
        self.base = f"http://127.0.0.1:{port.getHost().port}"
        yield self.server.probed

    @defer.inlineCallbacks
    def standard(self, **start_options):
        """A lacking MISSING_ON_A (max 4 connections), B complete backup (max 2); imported."""
        a, self.a = self.provider("A", Faults(missing=set(MISSING_ON_A)))
        b, self.b = self.provider("B")
        a["max_connections"], b["max_connections"] = MAX_A, MAX_B
        b["is_backup_provider"] = True
        yield self.start([a, b], **start_options)
        result = yield self.server.engine.importer.import_nzb(RELEASE.nzb, "Some.Movie.nzb")
        self.assertEqual(len(result.files), 1)
        self.record = result.files[0]
        self.assertEqual(self.record.size, SIZE)
        self.url = self.base + quote(self.record.path)

    # -- HTTP ------------------------------------------------------------------------

    @defer.inlineCallbacks
    def request(self, method: bytes = b"GET", range_: str | None = None, stop_after=None):
        """Fire with (response, body bytes, reason the body ended)."""
        headers = Headers({b"Authorization": [AUTH]})
        if range_ is not None:
            headers.addRawHeader(b"Range", range_.encode())
        response = yield self.agent.request(method, self.url.encode(), headers)
        body = _Body(stop_after)
        response.deliverBody(body)
        data, reason = yield body.done
        return response, data, reason

    @defer.inlineCallbacks
    def check_range(self, start: int, end: int):
        """GET bytes=start-end (inclusive) and check status, Content-Range and every byte."""
        response, data, _ = yield self.request(range_=f"bytes={start}-{end}")
        self.assertEqual(response.code, 206, (start, end))
        self.assertEqual(
            _header(response, b"content-range"), f"bytes {start}-{end}/{SIZE}".encode()
        )
        self.assertEqual(data, DATA[start : end + 1], (start, end))

    def assert_connection_limits(self) -> None:
        """No fake server ever saw more connections than the provider's max_connections."""
        self.assertLessEqual(self.a.peak_connections, MAX_A)
        self.assertLessEqual(self.b.peak_connections, MAX_B)

    # -- tests -----------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_full_get_byte_exact_with_backup_filling_gaps(self):
        """A full GET is byte-exact and the articles A lacks come from the backup B."""
        yield self.standard()
        before = self.b.commands["BODY"]
        response, data, _ = yield self.request()
        self.assertEqual(response.code, 200)
        self.assertEqual(len(data), SIZE)
        self.assertEqual(data, DATA)
        self.assertEqual(self.b.commands["BODY"] - before, len(MISSING_ON_A))
        # The import read the first and last articles; the stream took them from the cache.
        self.assertEqual(self.a.commands["BODY"], len(IDS))
        self.assert_connection_limits()

    @defer.inlineCallbacks
    def test_random_ranges_byte_exact(self):
        """Twenty ranges at once (edges, suffix, inside one segment, across many) are exact."""
        yield self.standard()
        rng = random.Random(5)
        spans = [(0, 0), (SIZE - 1, SIZE - 1), (0, SIZE - 1), (ARTICLE - 1, ARTICLE)]
        spans += [(ARTICLE * 5 + 10, ARTICLE * 5 + 9000), (ARTICLE * 24, SIZE - 1)]
        while len(spans) < 19:
            start = rng.randrange(SIZE)
            spans.append((start, min(SIZE - 1, start + rng.choice([1, 5000, ARTICLE * 7]))))
        yield defer.gatherResults([self.check_range(s, e) for s, e in spans])
        response, data, _ = yield self.request(range_="bytes=-1000")
        self.assertEqual(response.code, 206)
        self.assertEqual(data, DATA[-1000:])
        self.assert_connection_limits()

    @defer.inlineCallbacks
    def test_unsatisfiable_range_and_head(self):
        """A start beyond the size answers 416; HEAD has the file's headers and no body."""
        yield self.standard()
        response, data, _ = yield self.request(range_=f"bytes={SIZE}-")
        self.assertEqual(response.code, 416)
        self.assertEqual(_header(response, b"content-range"), f"bytes */{SIZE}".encode())
        response, data, _ = yield self.request(b"HEAD")
        self.assertEqual(response.code, 200)
        self.assertEqual(data, b"")
        self.assertEqual(_header(response, b"content-length"), str(SIZE).encode())
        self.assertEqual(_header(response, b"accept-ranges"), b"bytes")
        self.assertEqual(_header(response, b"content-type"), b"video/x-matroska")
        self.assertIsNotNone(_header(response, b"etag"))
        self.assertIsNotNone(_header(response, b"last-modified"))
        self.assertEqual(self.a.commands["BODY"], 2)  # HEAD fetched nothing

    @defer.inlineCallbacks
    def test_disconnects_on_primary(self):
        """With A dropping 10% of bodies mid-transfer, a full GET is still byte-exact."""
        yield self.standard()
        self.a.faults.disconnect_rate = 0.1
        response, data, _ = yield self.request()
        self.assertEqual(data, DATA)
        pool = self.server.engine.router.providers[0]
        self.assertGreater(pool.stats.errors["connection_lost"], 0)
        self.assert_connection_limits()

    @defer.inlineCallbacks
    def test_stalled_article_reissued(self):
        """A request A never answers times out after 1 s, is reissued, and the GET is exact."""
        yield self.standard(request_timeout=1)
        # With this seed and rate the 3rd article request stalls and none of the next 57 does.
        self.a.random.seed(STALL_SEED)
        self.a.faults.stall_rate = STALL_RATE
        started = time.monotonic()
        response, data, _ = yield self.request()
        elapsed = time.monotonic() - started
        self.assertEqual(data, DATA)
        pool = self.server.engine.router.providers[0]
        self.assertGreaterEqual(pool.stats.errors["timeout"], 1)
        self.assertGreater(elapsed, 0.9)
        self.assertLess(elapsed, 6)
        self.assert_connection_limits()

    @defer.inlineCallbacks
    def test_article_missing_everywhere(self):
        """With the `fail` policy a range over an article no provider has fails fast and is
        logged; others still work."""
        yield self.standard(missing_article_policy="fail")
        lost = 12
        self.b.faults.missing.add(IDS[lost])
        self.a.faults.missing.add(IDS[lost])
        started = time.monotonic()
        response, data, _ = yield self.request(range_=f"bytes={lost * ARTICLE + 5}-")
        self.assertEqual(response.code, 502)
        self.assertIn(IDS[lost].encode(), data)
        # Starting two segments earlier: 502, or the bytes before the gap and a cut.
        early = (lost - 2) * ARTICLE
        response, data, _ = yield self.request(range_=f"bytes={early}-")
        if response.code == 206:
            self.assertLess(len(data), 3 * ARTICLE)
            self.assertEqual(data, DATA[early : early + len(data)])
        else:
            self.assertEqual(response.code, 502)
        self.assertLess(time.monotonic() - started, 5)
        logged = [r.getMessage() for r in self.records if r.levelno >= logging.ERROR]
        self.assertTrue(
            any(self.record.path in m and f"segment {lost} " in m for m in logged), logged
        )
        yield self.check_range(0, 3 * ARTICLE)
        self.assert_connection_limits()

    @defer.inlineCallbacks
    def test_client_gone_mid_stream_frees_fetcher(self):
        """A client that hangs up mid-stream leaves no fetch active or queued within 1 s."""
        yield self.standard(workers=3)
        self.a.faults.latency = self.b.faults.latency = 0.05
        fetcher = self.server.engine.fetcher
        response, data, reason = yield self.request(stop_after=100_000)
        self.assertLess(len(data), SIZE)
        self.assertTrue(fetcher.active or fetcher.queued)
        deadline = time.monotonic() + 1
        while (fetcher.active or fetcher.queued) and time.monotonic() < deadline:
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.assertEqual((fetcher.active, fetcher.queued), (0, 0))

    @defer.inlineCallbacks
    def test_import_with_every_article_missing(self):
        """Importing a release no provider has fails naming an article; nothing is stored."""
        a, self.a = self.provider("A", Faults(missing=set(IDS)))
        b, self.b = self.provider("B", Faults(missing=set(IDS)))
        b["is_backup_provider"] = True
        yield self.start([a, b])
        with self.assertRaises(ImportFailed) as raised:
            yield self.server.engine.importer.import_nzb(RELEASE.nzb, "Some.Movie.nzb")
        message = str(raised.exception)
        self.assertIn("missing on every provider", message)
        self.assertTrue(IDS[0] in message or IDS[-1] in message, message)
        self.assertEqual(self.server.engine.store.listdir("/"), [])

    @defer.inlineCallbacks
    def test_wrong_credentials_fall_back_to_backup(self):
        """A primary refusing the login is disabled with a reason; the backup serves it all."""
        a, self.a = self.provider("A", username="user", password="right")
        a.update(username="user", password="wrong")
        b, self.b = self.provider("B")
        b["is_backup_provider"] = True
        yield self.start([a, b])
        result = yield self.server.engine.importer.import_nzb(RELEASE.nzb, "Some.Movie.nzb")
        self.url = self.base + quote(result.files[0].path)
        response, data, _ = yield self.request()
        self.assertEqual(data, DATA)
        pool = self.server.engine.router.providers[0]
        self.assertFalse(pool.enabled)
        self.assertIn("481", pool.disabled_reason)
        self.assertEqual(self.a.commands["BODY"], 0)


def _header(response, name: bytes) -> bytes | None:
    values = response.headers.getRawHeaders(name)
    return values[0] if values else None
