"""Shared assembly for the reliability tests: fake providers, the real Server, HTTP calls.

`Rig` is a `twisted.trial` TestCase base (no tests of its own): it starts fake NNTP
servers on 127.0.0.1, the real `altmount.server.Server` (engine, queue, ops API,
WebDAV) on an ephemeral port with its files in a temporary folder, imports
releases, and reads files and API answers back with twisted.web's Agent. Every
log record of the `altmount` loggers is kept in `self.records`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from urllib.parse import quote

import numpy as np
import yaml
from twisted.internet import defer, reactor, task
from twisted.internet.protocol import Protocol
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from altmount.config import parse_config
from altmount.server import Server
from altmount.testing.articles import Release
from altmount.testing.nntpserver import Faults, NNTPServerFactory, listen

AUTH = b"Basic " + base64.b64encode(b"usenet:usenet")


def generate(size: int, seed: int) -> bytes:
    """Incompressible deterministic bytes (what a video looks like to yEnc)."""
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


class Body(Protocol):
    """Collects a response body; `done` fires with (bytes, reason) however it ends.

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


def pause(seconds: float) -> defer.Deferred:
    """A Deferred firing after `seconds` on the real reactor (integration tests only)."""
    return task.deferLater(reactor, seconds, lambda: None)


class Rig(unittest.TestCase):
    """Fake providers + Server + HTTP client, all torn down after each test."""

    timeout = 60

    def setUp(self) -> None:
        self.http = HTTPConnectionPool(reactor, persistent=False)
        self.http.maxPersistentPerHost = 64
        self.agent = Agent(reactor, pool=self.http)
        self.nntp: list[NNTPServerFactory] = []
        self.server: Server | None = None
        self.records: list[logging.LogRecord] = []
        handler = logging.Handler(logging.INFO)
        handler.emit = self.records.append  # type: ignore[method-assign]
        logger = logging.getLogger("altmount")
        self._level = logger.level
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        self.addCleanup(logger.removeHandler, handler)
        self.addCleanup(logger.setLevel, self._level)

    @defer.inlineCallbacks
    def tearDown(self):
        if self.server is not None:
            yield self.server.stop()
        yield self.http.closeCachedConnections()
        for factory in self.nntp:
            yield factory.when_idle()

    def provider(
        self,
        name: str,
        articles: Mapping[str, bytes],
        faults: Faults | None = None,
        *,
        max_connections: int = 4,
        backup: bool = False,
        seed: int = 7,
    ) -> tuple[dict, NNTPServerFactory]:
        """Start a fake NNTP server; return its provider config entry and its factory."""
        port, factory = listen(reactor, articles, faults or Faults(), seed=seed)
        self.addCleanup(port.stopListening)
        self.nntp.append(factory)
        entry = {
            "name": name,
            "host": "127.0.0.1",
            "port": port.getHost().port,
            "tls": False,
            "max_connections": max_connections,
            "is_backup_provider": backup,
        }
        return entry, factory

    @defer.inlineCallbacks
    def start(self, providers: list[dict], **sections):
        """Start the server over `providers`; `sections` override config sections.

        Fires once the start-up probes are done.
        """
        folder = tempfile.mkdtemp(prefix="altmount-rel-")
        self.addCleanup(shutil.rmtree, folder, True)
        self.folder = folder
        metadata = os.path.join(folder, "metadata")
        raw = {
            "webdav": {"port": 8080, "bind_address": "127.0.0.1"},
            "metadata": {"root_path": metadata, "map_size_mb": 64},
            "database": {"path": metadata + ".db"},
            "nntp": {
                "connect_timeout_seconds": 2,
                "request_timeout_seconds": 5,
                "max_retries": 3,
            },
            "streaming": {
                "max_range_size": 4 * 1024 * 1024,
                "streaming_chunk_size": 1024 * 1024,
                "max_download_workers": 8,
            },
            "import": {"queue_processing_interval_seconds": 0.1},
            "engine": {"decode_workers": 2},
            "providers": providers,
        }
        for section, values in sections.items():
            raw[section] = {**raw.get(section, {}), **values}
        config, warnings = parse_config(yaml.safe_dump(raw), base_dir=".")
        self.assertEqual(warnings, [])
        config = dataclasses.replace(config, webdav=dataclasses.replace(config.webdav, port=0))
        self.server = Server(reactor, config)
        port = yield self.server.start()
        self.base = f"http://127.0.0.1:{port.getHost().port}"
        yield self.server.probed

    @defer.inlineCallbacks
    def import_release(self, release: Release, name: str):
        """Import `release` directly (as `altmount import` does); fires with its first record."""
        result = yield self.server.engine.importer.import_nzb(release.nzb, name)
        return result.files[0]

    def url(self, record) -> bytes:
        """The WebDAV URL of a metadata record."""
        return (self.base + quote(record.path)).encode()

    @defer.inlineCallbacks
    def get(self, url: bytes, range_: str | None = None, stop_after: int | None = None):
        """GET `url`; fires with (response, body bytes, reason the body ended)."""
        headers = Headers({b"Authorization": [AUTH]})
        if range_ is not None:
            headers.addRawHeader(b"Range", range_.encode())
        response = yield self.agent.request(b"GET", url, headers)
        body = Body(stop_after)
        response.deliverBody(body)
        data, reason = yield body.done
        return response, data, reason

    @defer.inlineCallbacks
    def api(self, path: str, method: bytes = b"GET"):
        """Call the REST API; fires with (status, parsed JSON)."""
        headers = Headers({b"Authorization": [AUTH]})
        response = yield self.agent.request(method, (self.base + path).encode(), headers)
        body = Body()
        response.deliverBody(body)
        data, _ = yield body.done
        return response.code, json.loads(data)

    def messages(self, level: int = logging.INFO) -> list[str]:
        """Log messages at `level` or above recorded so far."""
        return [r.getMessage() for r in self.records if r.levelno >= level]
