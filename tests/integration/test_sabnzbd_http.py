"""The SABnzbd API and upload route over real sockets: fake NNTP → Server → HTTP client.

Each test starts a fake NNTP provider and the real `Server` (queue, processor,
importer, site) on 127.0.0.1, adds NZBs the way Sonarr does (multipart addfile,
query-string key), polls `mode=history` and reads the imported file back over
WebDAV. addurl is checked against a small local HTTP server.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import logging
import os
import random
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import yaml
from twisted.internet import defer, reactor, task
from twisted.internet.protocol import Protocol
from twisted.trial import unittest
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from altmount.config import parse_config
from altmount.server import Server
from altmount.testing.articles import post_release
from altmount.testing.nntpserver import NNTPServerFactory, listen
from altmount.web.addurl import NZBDownloader, forbidden_reason

KEY = "abcdefabcdefabcdefabcdefabcdef12"
DATA = random.Random(5).randbytes(3 * 256 * 1024 + 999)
RELEASE = post_release({"Show.S01E01.720p.mkv": DATA}, article_size=256 * 1024, salt="sab")
AUTH = b"Basic " + base64.b64encode(b"usenet:usenet")
BOUNDARY = b"sabIntegrationBoundary"


class _Body(Protocol):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.done: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Any) -> None:
        self.done.callback(b"".join(self.chunks))


def _multipart(field: str, filename: str, data: bytes) -> bytes:
    return (
        b"--"
        + BOUNDARY
        + b'\r\nContent-Disposition: form-data; name="'
        + field.encode()
        + b'"; filename="'
        + filename.encode()
        + b'"\r\n'
        b"Content-Type: application/x-nzb\r\n\r\n" + data + b"\r\n--" + BOUNDARY + b"--\r\n"
    )


def _rar(files: dict[str, bytes], *switches: str) -> dict[str, bytes]:
    """One RAR archive of `files` made by the `rar` tool, as {volume name: bytes}."""
    with tempfile.TemporaryDirectory() as folder:
        for name, data in files.items():
            (Path(folder) / name).write_bytes(data)
        subprocess.run(["rar", "a", "-idq", *switches, "set.rar", *files], cwd=folder, check=True)
        return {"set.rar": (Path(folder) / "set.rar").read_bytes()}


class SABnzbdOverHTTP(unittest.TestCase):
    """Server + fake provider + HTTP client, all torn down after each test."""

    timeout = 30

    def setUp(self) -> None:
        self.http = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, pool=self.http)
        self.nntp: list[NNTPServerFactory] = []
        self.server: Server | None = None

    @defer.inlineCallbacks
    def tearDown(self):
        if self.server is not None:
            yield self.server.stop()
        yield self.http.closeCachedConnections()
        for factory in self.nntp:
            yield factory.when_idle()

    @defer.inlineCallbacks
    def start(self, articles: dict[str, bytes] | None = None, **sabnzbd: Any):
        port, factory = listen(reactor, {**RELEASE.articles, **(articles or {})}, seed=3)
        self.addCleanup(port.stopListening)
        self.nntp.append(factory)
        folder = tempfile.mkdtemp(prefix="altmount-sab-")
        self.addCleanup(shutil.rmtree, folder, True)
        text = yaml.safe_dump(
            {
                "webdav": {"port": 8080, "bind_address": "127.0.0.1"},
                "metadata": {"root_path": os.path.join(folder, "metadata"), "map_size_mb": 64},
                "database": {"path": os.path.join(folder, "altmount.db")},
                "api": {"key_override": KEY},
                "import": {"queue_processing_interval_seconds": 0.2},
                "nntp": {"connect_timeout_seconds": 2, "request_timeout_seconds": 5},
                "sabnzbd": {"enabled": True, **sabnzbd},
                "providers": [
                    {
                        "name": "fake",
                        "host": "127.0.0.1",
                        "port": port.getHost().port,
                        "tls": False,
                        "max_connections": 4,
                    }
                ],
            }
        )
        config, _ = parse_config(text, base_dir=".")
        config = dataclasses.replace(config, webdav=dataclasses.replace(config.webdav, port=0))
        self.server = Server(reactor, config)
        listening = yield self.server.start()
        self.base = f"http://127.0.0.1:{listening.getHost().port}"
        yield self.server.probed

    @defer.inlineCallbacks
    def call(
        self,
        path: str,
        params: dict[str, str],
        body: bytes | None = None,
        headers: dict[bytes, bytes] | None = None,
    ):
        """Fire with (status, body) of one request."""
        url = f"{self.base}{path}" + (f"?{urlencode(params)}" if params else "")
        all_headers = Headers({name: [value] for name, value in (headers or {}).items()})
        producer = None
        if body is not None:
            if not all_headers.hasHeader(b"content-type"):
                all_headers.setRawHeaders(
                    b"content-type", [b"multipart/form-data; boundary=" + BOUNDARY]
                )
            producer = FileBodyProducer(io.BytesIO(body))
        response = yield self.agent.request(
            b"POST" if body is not None else b"GET", url.encode(), all_headers, producer
        )
        collector = _Body()
        response.deliverBody(collector)
        data = yield collector.done
        return response.code, data

    @defer.inlineCallbacks
    def sab(self, params: dict[str, str], body: bytes | None = None, path: str = "/sabnzbd/api"):
        code, data = yield self.call(path, {**params, "apikey": KEY, "output": "json"}, body)
        self.assertEqual(code, 200, data)
        return json.loads(data)

    @defer.inlineCallbacks
    def history_slot(self, nzo_id: str):
        """Poll mode=history until the item is Completed or Failed."""
        for _ in range(100):
            answer = yield self.sab({"mode": "history", "nzo_ids": nzo_id})
            slots = answer["history"]["slots"]
            if slots and slots[0]["status"] in ("Completed", "Failed"):
                return slots[0]
            yield task.deferLater(reactor, 0.1, lambda: None)
        self.fail(f"{nzo_id} never left the queue")

    @defer.inlineCallbacks
    def test_addfile_imports_and_history_points_at_file(self):
        """addfile → history Completed with storage → WebDAV GET returns the posted bytes."""
        yield self.start()
        version = yield self.sab({"mode": "version"})
        self.assertEqual(version, {"version": "4.3.0"})
        added = yield self.sab(
            {"mode": "addfile", "cat": "tv", "priority": "0"},
            _multipart("name", "Show.S01E01.720p.nzb", RELEASE.nzb),
        )
        self.assertTrue(added["status"])
        (nzo_id,) = added["nzo_ids"]
        slot = yield self.history_slot(nzo_id)
        self.assertEqual(slot["status"], "Completed", slot["fail_message"])
        self.assertEqual(slot["category"], "tv")
        self.assertEqual(slot["storage"], "/complete/tv/Show.S01E01.720p")
        self.assertEqual(slot["bytes"], len(DATA))
        url = slot["storage"] + "/Show.S01E01.720p.mkv"
        code, data = yield self.call(quote(url), {}, headers={b"authorization": AUTH})
        self.assertEqual((code, data == DATA), (200, True))
        queue = yield self.sab({"mode": "queue"}, path="/api")
        self.assertEqual(queue["queue"]["slots"], [])

    @defer.inlineCallbacks
    def test_sonarr_addfile_bytes_with_utf8_title(self):
        """Sonarr's exact addfile (query-string key, priority=-100, one part name="name" with a
        raw UTF-8 filename, unquoted 29-dash boundary) over HTTP: the category folder exists
        before any import, and the title (not the NZB's meta name) names history and folder."""
        named = post_release(
            {"e01.mkv": DATA},
            article_size=256 * 1024,
            salt="sonarr",
            meta={"name": "Indexer.Meta.Name"},
        )
        yield self.start(named.articles)
        code, _ = yield self.call("/complete/tv", {}, headers={b"authorization": AUTH})
        self.assertEqual(code, 200)  # Sonarr's remote path check, before anything is imported
        title = "Shōgun.2024.S01E01.1080p.WEB.h264-EDITH"
        boundary = "-" * 29 + "8dc5f2a1b3c4d5e"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="name"; '
                f'filename="{title}.nzb"\r\nContent-Type: application/x-nzb\r\n\r\n'
            ).encode()
            + named.nzb
            + f"\r\n--{boundary}--\r\n".encode()
        )
        query = {"mode": "addfile", "cat": "tv", "priority": "-100", "apikey": KEY}
        code, data = yield self.call(
            "/api",
            {**query, "output": "json"},
            body,
            headers={
                b"content-type": f"multipart/form-data; boundary={boundary}".encode(),
                b"accept": b"application/json",
            },
        )
        self.assertEqual(code, 200, data)
        (nzo_id,) = json.loads(data)["nzo_ids"]
        slot = yield self.history_slot(nzo_id)
        self.assertEqual((slot["status"], slot["name"]), ("Completed", title), slot)
        self.assertEqual(slot["storage"], f"/complete/tv/{title}")
        url = quote(slot["storage"] + "/e01.mkv")
        code, data = yield self.call(url, {}, headers={b"authorization": AUTH})
        self.assertEqual((code, data == DATA), (200, True))

    @defer.inlineCallbacks
    def test_bad_nzb_fails_with_reason(self):
        """An upload that is not XML ends in history as Failed with a reason; others proceed."""
        yield self.start()
        bad = yield self.sab({"mode": "addfile"}, _multipart("nzbfile", "junk.nzb", b"\x00junk"))
        good = yield self.sab(
            {"mode": "addfile", "cat": "movies"}, _multipart("name", "Good.nzb", RELEASE.nzb)
        )
        failed = yield self.history_slot(bad["nzo_ids"][0])
        self.assertEqual(failed["status"], "Failed")
        self.assertTrue(failed["fail_message"])
        completed = yield self.history_slot(good["nzo_ids"][0])
        self.assertEqual(completed["status"], "Completed", completed["fail_message"])

    @defer.inlineCallbacks
    def test_archive_refusals_reach_history_and_log(self):
        """Archives that cannot be streamed fail with the reason in the SABnzbd history's
        fail_message and in the log; the same encrypted set with the right password from
        the `password` parameter streams decrypted."""
        if shutil.which("rar") is None:
            if os.environ.get("CI") == "true":
                raise AssertionError("the rar tool is required under CI")
            raise unittest.SkipTest("the rar tool is not installed")
        movie = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01" + random.Random(9).randbytes(300_000)
        packed = _rar({"Packed.mkv": b"\x1a\x45\xdf\xa3" + b"compressible " * 30_000}, "-m5")
        locked = _rar({"Locked.mkv": movie}, "-m0", "-pright horse")
        packed_release = post_release(packed, article_size=64 * 1024, salt="sab-packed")
        locked_release = post_release(locked, article_size=64 * 1024, salt="sab-locked")
        yield self.start({**packed_release.articles, **locked_release.articles})
        with self.assertLogs("altmount", logging.INFO) as logs:
            packed_id = yield self.sab(
                {"mode": "addfile"}, _multipart("name", "Packed.nzb", packed_release.nzb)
            )
            wrong_id = yield self.sab(
                {"mode": "addfile"},
                _multipart("name", "Locked.Wrong{{battery staple}}.nzb", locked_release.nzb),
            )
            packed_slot = yield self.history_slot(packed_id["nzo_ids"][0])
            wrong_slot = yield self.history_slot(wrong_id["nzo_ids"][0])
        expected = {
            "Packed": "compressed archive: Packed.mkv uses method m5, not streamable",
            "Locked.Wrong": "encrypted archive, no/wrong password",
        }
        for slot in (packed_slot, wrong_slot):
            reason = expected[slot["name"]]
            self.assertEqual(slot["status"], "Failed")
            self.assertIn(reason, slot["fail_message"])
            self.assertTrue(any(reason in line for line in logs.output), logs.output)
        right_id = yield self.sab(
            {"mode": "addfile", "password": "right horse"},
            _multipart("name", "Locked.Right.nzb", locked_release.nzb),
        )
        slot = yield self.history_slot(right_id["nzo_ids"][0])
        self.assertEqual(slot["status"], "Completed", slot["fail_message"])
        code, data = yield self.call(
            quote(slot["storage"] + "/Locked.mkv"), {}, headers={b"authorization": AUTH}
        )
        self.assertEqual((code, data == movie), (200, True))

    @defer.inlineCallbacks
    def test_wrong_key_and_rest_upload(self):
        """A wrong key gets SABnzbd's error; the REST upload with Basic auth answers 201."""
        yield self.start()
        code, data = yield self.call("/api", {"mode": "queue", "apikey": "wrong"})
        self.assertEqual((code, json.loads(data)["error"]), (200, "API Key Incorrect"))
        code, data = yield self.call(
            "/api/queue/upload",
            {},
            _multipart("file", "Rest.nzb", RELEASE.nzb),
            headers={b"authorization": AUTH},
        )
        self.assertEqual(code, 201, data)
        item = json.loads(data)
        slot = yield self.history_slot(item["nzo_id"])
        self.assertEqual(slot["status"], "Completed", slot["fail_message"])

    @defer.inlineCallbacks
    def test_addurl_refuses_loopback_by_default(self):
        """addurl to a loopback address is refused unless addurl_allow_private is set."""
        yield self.start()
        answer = yield self.sab({"mode": "addurl", "name": "http://127.0.0.1:9/x.nzb"})
        self.assertFalse(answer["status"])
        self.assertIn("loopback", answer["error"])


class _Redirect(Resource):
    isLeaf = True

    def __init__(self, location: bytes) -> None:
        super().__init__()
        self.location = location

    def render_GET(self, request: Any) -> bytes:
        request.setResponseCode(302)
        request.setHeader(b"location", self.location)
        return b""


class AddURLFetch(unittest.TestCase):
    """NZBDownloader against a local HTTP server: redirects, caps, address checks."""

    timeout = 20

    def setUp(self) -> None:
        root = Resource()
        root.putChild(b"release.nzb", Data(RELEASE.nzb, "application/x-nzb"))
        root.putChild(b"big.nzb", Data(b"x" * (2 * 1024 * 1024), "application/x-nzb"))
        root.putChild(b"loop", _Redirect(b"/loop"))
        self.port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.number = self.port.getHost().port
        root.putChild(
            b"to-private", _Redirect(f"http://private.test:{self.number}/release.nzb".encode())
        )

    def downloader(self, allow_private: bool, max_mb: int = 1) -> NZBDownloader:
        """Names resolve from a table; the test server's 127.0.0.1 counts as public."""
        names = {"public.test": ["127.0.0.1"], "private.test": ["10.1.2.3"]}

        def resolve(host: str, port: int) -> defer.Deferred:
            return defer.succeed(names.get(host, [host]))

        def forbidden(address: str) -> str | None:
            return None if address == "127.0.0.1" else forbidden_reason(address)

        return NZBDownloader(
            reactor,
            max_bytes=max_mb * 1024 * 1024,
            timeout=5,
            allow_private=allow_private,
            resolve=resolve,
            forbidden=forbidden,
        )

    @defer.inlineCallbacks
    def test_fetch_with_filename(self):
        """A plain fetch returns the bytes and the URL's file name."""
        download = yield self.downloader(True).fetch(
            f"http://public.test:{self.number}/release.nzb"
        )
        self.assertEqual((download.data, download.filename), (RELEASE.nzb, "release.nzb"))

    @defer.inlineCallbacks
    def test_redirect_to_private_refused(self):
        """A redirect to a name resolving to a private address is refused after the hop."""
        with self.assertRaises(Exception) as caught:
            yield self.downloader(False).fetch(f"http://public.test:{self.number}/to-private")
        self.assertIn("private address 10.1.2.3", str(caught.exception))

    @defer.inlineCallbacks
    def test_redirect_loop_stops(self):
        """More than three redirects fail with a message saying so."""
        with self.assertRaises(Exception) as caught:
            yield self.downloader(True).fetch(f"http://public.test:{self.number}/loop")
        self.assertIn("more than 3 redirects", str(caught.exception))

    @defer.inlineCallbacks
    def test_size_cap(self):
        """A body over addurl_max_mb is refused."""
        with self.assertRaises(Exception) as caught:
            yield self.downloader(True, max_mb=1).fetch(f"http://public.test:{self.number}/big.nzb")
        self.assertIn("MB addurl limit", str(caught.exception))

    @defer.inlineCallbacks
    def test_scheme_refused(self):
        """Only http and https URLs are fetched."""
        with self.assertRaises(Exception) as caught:
            yield self.downloader(True).fetch("file:///etc/passwd")
        self.assertIn("only http and https", str(caught.exception))
