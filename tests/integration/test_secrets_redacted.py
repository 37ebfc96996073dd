"""No secret in any log line or API answer of a real run.

The real `Server` runs with request logging at debug level into a log file, a
provider that needs a login (the fake NNTP server), a generated API key, and two
NZBs added with release passwords (SABnzbd's `addfile&password=` and a
`Name{{password}}.nzb` upload). After the imports, every REST, SABnzbd and
metrics answer is read; then the log file and all answers are searched for the
WebDAV password, the provider password, the API key and both release passwords.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import yaml
from engine_archive_rig import Body, WebClient
from twisted.internet import defer, reactor
from twisted.trial import unittest
from twisted.web.client import FileBodyProducer
from twisted.web.http_headers import Headers

from altmount.config import parse_config
from altmount.logsetup import config_secrets, reset_logging, setup_logging
from altmount.server import Server
from altmount.testing.articles import post_release
from altmount.testing.nntpserver import listen

WEBDAV_PASSWORD = "dav-Secret-4711"
PROVIDER_PASSWORD = "prov-Secret-0815"
RELEASE_PASSWORD = "rel-Secret-sab"
NAMED_PASSWORD = "rel-Secret-named"
BOUNDARY = b"-----------------------------0123456789abcdef"


def _multipart(field: str, filename: str, data: bytes) -> bytes:
    return (
        b"--" + BOUNDARY + b"\r\n"
        b'Content-Disposition: form-data; name="' + field.encode() + b'"; filename="'
        + filename.encode() + b'"\r\nContent-Type: application/x-nzb\r\n\r\n'
        + data + b"\r\n--" + BOUNDARY + b"--\r\n"
    )  # fmt: skip


class NoSecretAnywhere(unittest.TestCase):
    """A server with every kind of secret in play, its log and its answers."""

    timeout = 90

    @defer.inlineCallbacks
    def setUp(self):
        self.folder = tempfile.mkdtemp(prefix="altmount-secrets-")
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.release = post_release(
            {"Film.2024.mkv": os.urandom(300_000)}, article_size=100_000, salt="secrets"
        )
        self.nntp, _ = listen(
            reactor, self.release.articles, username="reader", password=PROVIDER_PASSWORD
        )
        self.log_file = os.path.join(self.folder, "altmount.log")
        text = yaml.safe_dump(
            {
                "webdav": {"port": 8080, "password": WEBDAV_PASSWORD, "debug": True},
                "metadata": {"root_path": os.path.join(self.folder, "meta"), "map_size_mb": 16},
                "database": {"path": os.path.join(self.folder, "altmount.db")},
                "sabnzbd": {"enabled": True},
                "import": {"queue_processing_interval_seconds": 0.2},
                "log": {"level": "debug", "file": self.log_file},
                "providers": [
                    {
                        "name": "fake",
                        "host": "127.0.0.1",
                        "port": self.nntp.getHost().port,
                        "username": "reader",
                        "password": PROVIDER_PASSWORD,
                        "max_connections": 2,
                        "tls": False,
                    }
                ],
            }
        )
        config, _ = parse_config(text, base_dir=self.folder)
        config = dataclasses.replace(config, webdav=dataclasses.replace(config.webdav, port=0))
        setup_logging(config.log, secrets=config_secrets(config))
        self.server = Server(reactor, config)
        port = yield self.server.start()
        self.base = f"http://127.0.0.1:{port.getHost().port}".encode()
        self.key = yield self.server.queue.api_key()
        self.web = WebClient()
        self.answers: list[bytes] = []

    @defer.inlineCallbacks
    def tearDown(self):
        yield self.web.close()
        yield self.server.stop()
        yield self.nntp.stopListening()
        reset_logging()

    @defer.inlineCallbacks
    def call(self, method: bytes, path: bytes, body: bytes | None = None, headers=None):
        auth = b"Basic " + base64.b64encode(b"usenet:" + WEBDAV_PASSWORD.encode())
        sent = {b"Authorization": [auth], **(headers or {})}
        producer = FileBodyProducer(io.BytesIO(body)) if body is not None else None
        response = yield self.web.agent.request(method, self.base + path, Headers(sent), producer)
        collector = Body()
        response.deliverBody(collector)
        data = yield collector.done
        self.answers.append(repr(list(response.headers.getAllRawHeaders())).encode() + data)
        return response.code, data

    @defer.inlineCallbacks
    def test_no_secret_in_logs_or_answers(self):
        """Passwords (WebDAV, provider, release) and the API key appear in no log line
        and no API answer after adding, importing and listing password-protected NZBs."""
        form = {b"Content-Type": [b"multipart/form-data; boundary=" + BOUNDARY]}
        key = self.key.encode()
        code, body = yield self.call(
            b"POST",
            b"/sabnzbd/api?mode=addfile&output=json&apikey=" + key
            + b"&password=" + RELEASE_PASSWORD.encode(),
            _multipart("name", "Film.2024.nzb", self.release.nzb),
            form,
        )  # fmt: skip
        self.assertEqual(json.loads(body)["status"], True, body)
        code, body = yield self.call(
            b"POST",
            b"/api/queue/upload",
            _multipart("file", f"Other.2024{{{{{NAMED_PASSWORD}}}}}.nzb", self.release.nzb),
            form,
        )
        self.assertEqual(code, 201, body)
        code, body = yield self.call(
            b"POST",
            b"/api/queue/upload",
            _multipart("file", f"Broken{{{{{NAMED_PASSWORD}}}}}.nzb", b"<nzb>not closed"),
            form,
        )
        for item in (yield self.server.queue.list(None, None, None, 0, 10, "queue", False)):
            settled = yield self.server.queue.wait_for(item.id)
            item_id = settled.id
        reads = [
            b"/api/queue",
            b"/api/queue/%d" % item_id,
            b"/api/queue/stats",
            b"/api/providers",
            b"/api/config",
            b"/api/health",
            b"/api/health/streaming",
            b"/api/health/files",
            b"/api/files/active-streams",
            b"/metrics",
            b"/sabnzbd/api?output=json&mode=queue&apikey=" + key,
            b"/sabnzbd/api?output=json&mode=history&apikey=" + key,
            b"/sabnzbd/api?output=json&mode=get_config&apikey=" + key,
            b"/sabnzbd/api?output=json&mode=fullstatus&apikey=" + key,
            b"/sabnzbd/api?output=xml&mode=history&apikey=" + key,
            b"/api?mode=queue&output=json&apikey=" + key,
        ]
        for path in reads:
            code, body = yield self.call(b"GET", path)
            self.assertEqual(code, 200, (path, body[:200]))
        yield self.call(b"POST", b"/api/providers/fake/test")
        reset_logging()
        log = Path(self.log_file).read_text(encoding="utf-8")
        everything = b"\n".join(self.answers).decode("utf-8", "replace")
        self.assertIn("Film.2024", everything)  # the answers are real
        self.assertIn("Broken.nzb", everything)  # a failed import's error is shown
        self.assertIn("Other.2024", log)  # the log names the items
        self.assertIn("/sabnzbd/api?mode=addfile", log)  # and the requests
        secrets = (WEBDAV_PASSWORD, PROVIDER_PASSWORD, self.key, RELEASE_PASSWORD, NAMED_PASSWORD)
        for secret in secrets:
            self.assertNotIn(secret, log, secret)
            self.assertNotIn(secret, everything, secret)
