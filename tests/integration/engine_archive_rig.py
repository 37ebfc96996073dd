"""The harness of the import tests over the fake NNTP server: an Engine over one fake
provider on 127.0.0.1, a release posted to it, imported and read back as WebDAV does;
and the HTTP client the engine-and-site tests read it with (`WebClient`, `Body`)."""

from __future__ import annotations

import os
import random
import shutil
import tempfile

import yaml
from twisted.internet import defer, reactor
from twisted.internet.protocol import Protocol
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from altmount import _core
from altmount.config import parse_config
from altmount.engine import Engine
from altmount.errors import ImportFailed
from altmount.stream.cbc import cipher_span, decrypt_range
from altmount.testing.articles import post_release
from altmount.testing.nntpserver import Faults, listen

MKV = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska"


def media(seed: int, size: int) -> bytes:
    """Matroska-looking random bytes."""
    return MKV + random.Random(seed).randbytes(size)


def need(tool: str, install: str = "") -> None:
    """Skip without `tool`, except under CI where it is required."""
    if shutil.which(tool) is None:
        if os.environ.get("CI") == "true":
            raise AssertionError(f"{tool} is required under CI (scripts/inn2-setup.sh installs it)")
        raise unittest.SkipTest(f"{tool} is not installed{f' ({install})' if install else ''}")


class Body(Protocol):
    """A response body collected whole; `done` fires with its bytes when the connection ends."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.done: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason) -> None:
        self.done.callback(b"".join(self.chunks))


class WebClient:
    """An HTTP client over new connections (none kept), for tests of a site on 127.0.0.1."""

    def __init__(self) -> None:
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, pool=self.pool)

    @defer.inlineCallbacks
    def request(self, method: bytes, url: bytes, headers: dict | None = None):
        """Fire with (response, body bytes)."""
        response = yield self.agent.request(method, url, Headers(headers or {}))
        body = Body()
        response.deliverBody(body)
        data = yield body.done
        return response, data

    def close(self) -> defer.Deferred:
        """Close what connections are left (call in tearDown)."""
        return self.pool.closeCachedConnections()


class EngineCase(unittest.TestCase):
    """An Engine over one fake provider, started by `start`; torn down after each test."""

    timeout = 60
    max_connections = 20

    def setUp(self) -> None:
        self.engine: Engine | None = None
        self.factories = []

    @defer.inlineCallbacks
    def tearDown(self):
        if self.engine is not None:
            yield self.engine.close()
        for factory in self.factories:
            yield factory.when_idle()

    def start(self, articles, faults: Faults | None = None) -> Engine:
        """An engine whose only provider serves `articles` (with `faults`)."""
        port, factory = listen(reactor, articles, faults or Faults())
        self.addCleanup(port.stopListening)
        self.factories.append(factory)
        # Not self.mktemp(): that would leave the store in the working directory.
        folder = tempfile.mkdtemp(prefix="altmount-test-")
        self.addCleanup(shutil.rmtree, folder, True)
        root = folder + "/metadata"
        text = yaml.safe_dump(
            {
                "metadata": {"root_path": root, "map_size_mb": 64},
                "database": {"path": root + ".db"},
                "import": {"segment_sample_percentage": 10},
                "providers": [
                    {
                        "name": "fake",
                        "host": "127.0.0.1",
                        "tls": False,
                        "port": port.getHost().port,
                        "max_connections": self.max_connections,
                    }
                ],
            }
        )
        config, _ = parse_config(text, base_dir=".")
        self.engine = Engine(reactor, config)
        return self.engine


class ReleaseCase(EngineCase):
    """Each test posts a release in articles of `article` bytes, imports it under
    `nzb_name` into `category` and reads it back, byte for byte."""

    article = 40_000
    nzb_name = "Show.S01.nzb"
    category = "tv"
    #: Random ranges `check` reads from every file, besides the whole and the middle.
    random_ranges = 6

    @defer.inlineCallbacks
    def imported(
        self,
        volumes: dict[str, bytes],
        nzb_name: str | None = None,
        *,
        password: str | None = None,
        faults: Faults | None = None,
    ):
        """Post the volumes (`password` in the NZB meta), import them; fires with
        (ImportResult, engine)."""
        meta = {"password": password} if password is not None else None
        release = post_release(volumes, article_size=self.article, meta=meta)
        engine = self.start(release.articles, faults)
        result = yield engine.importer.import_nzb(
            release.nzb, nzb_name or self.nzb_name, self.category
        )
        return result, engine

    @defer.inlineCallbacks
    def read(self, engine: Engine, record, start: int = 0, end: int | None = None):
        """Bytes [start, end) of a record; an encrypted one's ciphertext is decrypted with
        the CBC decryption the WebDAV server uses."""
        end = record.size if end is None else end
        if record.cipher is None:
            return (yield self.read_segments(engine, record, start, end))
        span = cipher_span(record.cipher, start, end)
        ciphertext = yield self.read_segments(engine, record, span.start, span.end)
        return decrypt_range(record.cipher, start, end, ciphertext)

    @defer.inlineCallbacks
    def read_segments(self, engine: Engine, record, start: int, end: int):
        """Bytes [start, end) of a record's segments, through plan_range, the provider and
        assemble_range."""
        table = record.segments
        plan = _core.plan_range(table.offsets, table.skips, start, end)
        pieces = []
        for index in range(plan.first, plan.last):
            article = yield engine.fetch_article(table.message_ids[index])
            self.assertEqual(article.begin, int(table.part_begins[index]))
            pieces.append(article.data)
        out = bytearray(end - start)
        _core.assemble_range(out, pieces, plan)
        return bytes(out)

    @defer.inlineCallbacks
    def check(
        self,
        volumes: dict[str, bytes],
        expected: dict[str, bytes],
        nzb_name: str | None = None,
        password: str | None = None,
    ):
        """Import the volumes; the release holds exactly `expected` (relative paths), whole,
        in the middle and at random ranges."""
        result, engine = yield self.imported(volumes, nzb_name, password=password)
        prefix = result.release_dir + "/"
        by_path = {r.path.removeprefix(prefix): r for r in result.files}
        self.assertEqual(sorted(by_path), sorted(expected))
        rng = random.Random(len(volumes))
        for path, data in expected.items():
            record = by_path[path]
            self.assertEqual(record.size, len(data))
            self.assertEqual((yield self.read(engine, record)), data)
            middle = len(data) // 3
            self.assertEqual(
                (yield self.read(engine, record, middle, min(len(data), middle + 77_777))),
                data[middle : middle + 77_777],
            )
            for _ in range(self.random_ranges):
                start = rng.randrange(len(data))
                end = min(len(data), start + rng.randrange(1, 90_000))
                got = yield self.read(engine, record, start, end)
                self.assertEqual(got, data[start:end], f"{path} [{start}, {end})")
        return result

    @defer.inlineCallbacks
    def refused(self, volumes: dict[str, bytes], *phrases: str, password: str | None = None):
        """The import fails with every phrase in its reason; fires with the reason."""
        with self.assertRaises(ImportFailed) as raised:
            yield self.imported(volumes, password=password)
        for phrase in phrases:
            self.assertIn(phrase, str(raised.exception))
        return str(raised.exception)
