"""Issue 17's bars counted at the provider: fake NNTP server (30 ms latency) → engine → WebDAV.

The fake server counts every BODY it answers; the engine and site are built as
`altmount serve` builds them, with the default segment cache (RAM and disk tiers).
"""

from __future__ import annotations

import base64
import os
import random
import shutil
import socket
import tempfile
from urllib.parse import quote

from engine_archive_rig import WebClient
from twisted.internet import defer, reactor, task, threads
from twisted.trial import unittest

from altmount.config import load_config
from altmount.engine import Engine
from altmount.testing.articles import post_release
from altmount.testing.nntpserver import Faults, listen
from altmount.web.site import build_site

ARTICLE = 128 * 1024
SIZE = 40 * ARTICLE + 999
DATA = random.Random(17).randbytes(SIZE)
RELEASE = post_release({"movie.mkv": DATA}, article_size=ARTICLE, salt="bars")
SEGMENTS = 41
AUTH = b"Basic " + base64.b64encode(b"usenet:usenet")


class _CacheRig(unittest.TestCase):
    """One release on a fake provider with 30 ms latency, engines built and rebuilt over it."""

    timeout = 60
    CONFIG = ""  #: more config lines

    def setUp(self):
        self.web = WebClient()
        self.nntp_port, self.nntp = listen(reactor, RELEASE.articles, Faults(latency=0.03))
        folder = tempfile.mkdtemp(prefix="altmount-bars-")
        self.addCleanup(shutil.rmtree, folder, True)
        path = os.path.join(folder, "config.yaml")
        with open(path, "w") as handle:
            handle.write(
                f"metadata: {{root_path: {folder}/metadata, map_size_mb: 64}}\n"
                "health: {enabled: false}\n" + self.CONFIG + "providers:\n"
                f"  - {{name: A, host: 127.0.0.1, port: {self.nntp_port.getHost().port},"
                " tls: false, max_connections: 8}\n"
            )
        self.config, _ = load_config(path)
        self.engine = None
        self.port = None

    @defer.inlineCallbacks
    def start_engine(self):
        """A new engine and site over the same metadata and cache folders (a restart)."""
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
        yield self.web.close()
        yield self.nntp_port.stopListening()
        yield self.nntp.when_idle()

    @defer.inlineCallbacks
    def get(self, path: str, byte_range: str | None = None):
        """GET `path` (optionally a Range); fires with the body."""
        headers = {b"Authorization": [AUTH]}
        if byte_range:
            headers[b"Range"] = [byte_range.encode()]
        url = f"http://127.0.0.1:{self.port.getHost().port}{quote(path)}".encode()
        _, data = yield self.web.request(b"GET", url, headers)
        return data

    @defer.inlineCallbacks
    def imported(self):
        yield self.start_engine()
        result = yield self.engine.importer.import_nzb(RELEASE.nzb, "Some.Movie.nzb")
        return result.files[0].path

    def bodies(self) -> int:
        return self.nntp.commands["BODY"]

    @defer.inlineCallbacks
    def probe(self, path: str):
        """A media server's probe: head, tail and three seeks."""
        for byte_range in (
            "bytes=0-1048575",
            f"bytes={SIZE - 65536}-",
            "bytes=2000000-2100000",
            "bytes=3000000-3000999",
            "bytes=4500000-4600000",
        ):
            yield self.get(path, byte_range)


class CacheBars(_CacheRig):
    """The bars of issue 17 with the default cache."""

    @defer.inlineCallbacks
    def test_first_probe_after_import_uses_the_import_articles(self):
        """The tail of a probe right after import costs no BODY: the import fetched it."""
        path = yield self.imported()
        before = self.bodies()
        data = yield self.get(path, f"bytes={SIZE - 999}-")
        self.assertEqual(data, DATA[-999:])
        data = yield self.get(path, "bytes=0-999")
        self.assertEqual(data, DATA[:1000])
        self.assertEqual(self.bodies(), before)

    @defer.inlineCallbacks
    def test_second_probe_pass_costs_no_body(self):
        """The second pass of the probe pattern is served by the cache: 0 BODY."""
        path = yield self.imported()
        yield self.probe(path)
        before = self.bodies()
        yield self.probe(path)
        self.assertEqual(self.bodies(), before)

    @defer.inlineCallbacks
    def test_after_restart_no_body(self):
        """After a restart the same probe and a full read cost 0 BODY (the disk tier)."""
        path = yield self.imported()
        data = yield self.get(path)
        self.assertEqual(data, DATA)
        yield self.start_engine()
        before = self.bodies()
        yield self.probe(path)
        data = yield self.get(path)
        self.assertEqual(data, DATA)
        self.assertEqual(self.bodies(), before)
        self.assertEqual(self.engine.cache.stats()["disk"].hits, SEGMENTS)

    @defer.inlineCallbacks
    def test_two_concurrent_readers_fetch_the_file_once(self):
        """Two full reads at once fetch at most 1.15 times the file's articles."""
        path = yield self.imported()
        before = self.bodies()
        first, second = yield defer.gatherResults([self.get(path), self.get(path)])
        self.assertEqual(first, DATA)
        self.assertEqual(second, DATA)
        self.assertLessEqual(self.bodies() - before, 1.15 * SEGMENTS)
        self.assertGreater(self.engine.cache.shared, 0)


def _raw_get(port: int, path: str, rcvbuf: int, read: int, stop_after: int | None) -> bytes:
    """GET over a blocking socket with a small receive buffer, `read` bytes per recv;
    hang up after `stop_after` body bytes (None: read to the end). Returns the body read."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.sendall(
        f"GET {quote(path)} HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH.decode()}\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    received = bytearray()
    try:
        while stop_after is None or len(received) < stop_after:
            chunk = sock.recv(read)
            if not chunk:
                break
            received += chunk
    finally:
        sock.close()
    return bytes(received.partition(b"\r\n\r\n")[2])


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class SendfileFromDisk(_CacheRig):
    """RAM tier off: what the disk tier holds is sent from its files with os.sendfile."""

    CONFIG = "segment_cache: {memory_mb: 0}\n"

    @defer.inlineCallbacks
    def warm(self):
        """Import, read the file once and wait until every segment is on disk."""
        path = yield self.imported()
        self.assertEqual((yield self.get(path)), DATA)
        disk = self.engine.cache.disk
        for _ in range(500):
            if len(disk.index) >= SEGMENTS and not disk._writing:
                break
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(len(disk.index), SEGMENTS)
        return path

    @defer.inlineCallbacks
    def test_reads_are_sent_from_the_files_byte_exact(self):
        """A full read and ranges of a file on disk are byte-exact, cost 0 BODY, and every
        segment goes out with sendfile."""
        path = yield self.warm()
        before = self.bodies()
        cache = self.engine.cache
        sent = cache.files  # the import's first and last articles, already on disk
        self.assertEqual((yield self.get(path)), DATA)
        self.assertEqual(cache.files - sent, SEGMENTS)
        for start, end in ((0, 0), (1, 131_072), (131_071, 131_073), (SIZE - 1000, SIZE - 1)):
            data = yield self.get(path, f"bytes={start}-{end}")
            self.assertEqual(data, DATA[start : end + 1], (start, end))
        self.assertEqual(self.bodies(), before)
        self.assertGreater(cache.files - sent, SEGMENTS + 4)
        self.assertEqual(cache.report()["sendfile_segments"], cache.files)

    @defer.inlineCallbacks
    def test_slow_and_vanishing_clients(self):
        """A client slower than the socket gets every byte (the body waits for the socket);
        one that hangs up mid-file leaves no descriptor open and the next read is served."""
        path = yield self.warm()
        port = self.port.getHost().port
        body = yield threads.deferToThread(_raw_get, port, path, 65536, 16384, None)
        self.assertEqual(body, DATA)
        opened = _open_fds()
        yield threads.deferToThread(_raw_get, port, path, 65536, 16384, 200_000)
        for _ in range(500):
            if _open_fds() <= opened:
                break
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.assertLessEqual(_open_fds(), opened)
        self.assertEqual((yield self.get(path, "bytes=5-")), DATA[5:])
