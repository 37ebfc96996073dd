"""The operations API over real sockets: fake NNTP provider → engine → WebDAV + /api + /metrics.

The engine, the Ops object and the site are assembled here as the server does it
(with a small in-memory queue standing in for QueueService), a release is imported,
streamed over HTTP, and the API answers are checked against what really happened.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import tempfile
from urllib.parse import quote

import yaml
from engine_archive_rig import Body, WebClient
from fakearr import MOUNT, FakeArr, Library
from twisted.internet import defer, reactor, task
from twisted.trial import unittest
from twisted.web.http_headers import Headers
from twisted.web.server import Site

from altmount.config import load_config
from altmount.engine import Engine
from altmount.errors import ProviderAuthError
from altmount.ops import Ops
from altmount.testing.articles import post_release
from altmount.testing.fakequeue import FakeQueue
from altmount.testing.nntpserver import Faults, listen
from altmount.web.metrics import MetricsResource
from altmount.web.opsapi import OpsResource, build_ops_routes
from altmount.web.site import build_site

ARTICLE = 128 * 1024
SIZE = 3 * 1024 * 1024 + 777
DATA = random.Random(3).randbytes(SIZE)
RELEASE = post_release({"movie.mkv": DATA}, article_size=ARTICLE, salt="ops")
AUTH = b"Basic " + base64.b64encode(b"usenet:usenet")
API_KEY = "k3y"
#: Every route that needs credentials, with its method.
PROTECTED = [
    (b"GET", "/api/health/streaming"),
    (b"GET", "/api/health/files"),
    (b"POST", "/api/health/files/abc/check"),
    (b"POST", "/api/health/abc/repair"),
    (b"GET", "/api/providers"),
    (b"GET", "/api/providers/A/test"),
    (b"GET", "/api/files/active-streams"),
    (b"GET", "/api/config"),
    (b"POST", "/api/config/reload"),
    (b"GET", "/api/queue/stats"),
    (b"GET", "/api/queue"),
    (b"GET", "/api/queue/1"),
    (b"DELETE", "/api/queue/1"),
    (b"POST", "/api/queue/1/retry"),
    (b"GET", "/metrics"),
    (b"DELETE", "/api/cache"),
]


def _kept(protocol, kept: list):
    kept.append(protocol)
    return protocol


class OpsAPI(unittest.TestCase):
    """Engine + ops + site on 127.0.0.1 over one fake provider."""

    timeout = 30

    @defer.inlineCallbacks
    def setUp(self):
        self.web = WebClient()
        self.agent = self.web.agent
        self.nntp_port, self.nntp = listen(reactor, RELEASE.articles, Faults(), seed=1)
        self.server_protocols: list = []
        build = self.nntp.buildProtocol
        self.nntp.buildProtocol = lambda addr: _kept(build(addr), self.server_protocols)
        # A Sonarr (v3 API shapes, tests/integration/fakearr.py) for the repair test.
        self.sonarr = FakeArr("sonarr", "sonarr-key", Library())
        self.sonarr_port = reactor.listenTCP(0, Site(self.sonarr), interface="127.0.0.1")
        folder = tempfile.mkdtemp(prefix="altmount-ops-")
        self.addCleanup(shutil.rmtree, folder, True)
        self.config_path = os.path.join(folder, "config.yaml")
        self.raw = {
            "webdav": {"port": 8080, "bind_address": "127.0.0.1"},
            "metadata": {"root_path": os.path.join(folder, "metadata"), "map_size_mb": 64},
            "nntp": {"connect_timeout_seconds": 2, "request_timeout_seconds": 5},
            "streaming": {
                "max_range_size": 2 * 1024 * 1024,
                "streaming_chunk_size": 1024 * 1024,
                "max_download_workers": 6,
            },
            "engine": {"decode_workers": 2},
            "health": {"enabled": False},
            "arrs": {
                "enabled": True,
                "mount_path": MOUNT,
                "sonarr_instances": [
                    {
                        "name": "sonarr",
                        "url": f"http://127.0.0.1:{self.sonarr_port.getHost().port}",
                        "api_key": "sonarr-key",
                    }
                ],
            },
            "providers": [
                {
                    "name": "A",
                    "host": "127.0.0.1",
                    "tls": False,
                    "max_connections": 6,
                    "port": self.nntp_port.getHost().port,
                    "password": "sekrit",
                    "username": "u",
                }
            ],
        }
        self.nntp.username, self.nntp.password = "u", "sekrit"
        self.write_config()
        config, _ = load_config(self.config_path)
        self.engine = Engine(reactor, config)
        self.queue = FakeQueue()
        self.ops = Ops(
            reactor,
            config,
            self.engine,
            self.queue,
            config_path=self.config_path,
            probe_interval=0.2,
            import_poll=0.2,
        )
        routes = build_ops_routes(
            config,
            self.engine,
            self.ops,
            self.queue,
            api_key_provider=lambda: defer.succeed(API_KEY),
        )
        site = build_site(
            config,
            self.engine.store,
            self.engine.cache,
            ops=self.ops,
            extra_resources={
                b"api": OpsResource(routes),
                b"metrics": MetricsResource(self.ops, routes),
            },
        )
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.base = f"http://127.0.0.1:{self.port.getHost().port}"
        self.ops.start()
        result = yield self.engine.importer.import_nzb(RELEASE.nzb, "Some.Movie.nzb")
        self.record = result.files[0]

    @defer.inlineCallbacks
    def tearDown(self):
        yield self.port.stopListening()
        yield self.ops.stop()
        yield self.engine.close()
        yield self.web.close()
        yield self.nntp_port.stopListening()
        yield self.nntp.when_idle()
        yield self.sonarr_port.stopListening()

    def write_config(self) -> None:
        with open(self.config_path, "w") as handle:
            yaml.safe_dump(self.raw, handle)

    @defer.inlineCallbacks
    def call(self, path: str, method: bytes = b"GET", headers: dict | None = None):
        """Fire with (status, parsed JSON or raw bytes)."""
        sent = {b"Authorization": [AUTH]} if headers is None else headers
        response, data = yield self.web.request(method, (self.base + path).encode(), sent)
        kind = (response.headers.getRawHeaders(b"content-type") or [b""])[0]
        return response.code, json.loads(data) if kind == b"application/json" else data

    @defer.inlineCallbacks
    def test_each_protected_route_needs_auth(self):
        """Without credentials every route but /api/health answers 401 with a JSON error."""
        for method, path in PROTECTED:
            status, body = yield self.call(path, method, headers={})
            self.assertEqual(status, 401, path)
            if path != "/metrics":
                self.assertEqual(body["error"]["code"], "unauthorized", path)
        status, body = yield self.call("/api/health", headers={})
        self.assertEqual(status, 200)
        self.assertEqual(set(body), {"status"})

    @defer.inlineCallbacks
    def wait_repair(self, file_id: str, state: str):
        """Poll /api/health/files until the file's repair_state is `state`; its record."""
        for _ in range(200):
            _, listing = yield self.call("/api/health/files")
            found = [f for f in listing["files"] if f["id"] == file_id]
            if found and found[0]["repair_state"] == state:
                return found[0]
            yield task.deferLater(reactor, 0.02, lambda: None)
        self.fail(f"repair_state never became {state}: {found}")

    @defer.inlineCallbacks
    def test_corrupted_file_is_repaired_through_sonarr(self):
        """A health check that finds the file corrupted starts a repair by itself: Sonarr
        deletes + blocklists its episode file and searches; /api/health counts it, the
        file's record shows it; POST /api/health/{id}/repair starts another (202)."""
        path = self.record.path
        folder = MOUNT + path.rsplit("/", 1)[0]

        def library() -> Library:
            return Library(
                owners=[{"id": 5, "title": "Some Movie", "path": folder}],
                files=[{"id": 8, "seriesId": 5, "path": MOUNT + path, "relativePath": "x"}],
                episodes=[{"id": 50, "seriesId": 5, "episodeFileId": 8, "hasFile": True}],
                history=[
                    {
                        "id": 77,
                        "episodeId": 50,
                        "seriesId": 5,
                        "eventType": "grabbed",
                        "date": "2024-01-01T00:00:00Z",
                    }
                ],
            )

        self.sonarr.library = library()
        self.nntp.faults.missing = set(self.record.segments.message_ids)
        status, checked = yield self.call(f"/api/health/files/{quote(path)}/check", b"POST")
        self.assertEqual((status, checked["status"]), (200, "corrupted"))
        done = yield self.wait_repair(checked["id"], "requested")
        self.assertIn("sonarr sonarr: file 8 deleted, grab 77 blocklisted", done["repair_detail"])
        self.assertEqual(self.sonarr.calls[-1].body, {"name": "EpisodeSearch", "episodeIds": [50]})
        _, health = yield self.call("/api/health")
        self.assertEqual(health["repairs"]["requested"], 1)
        self.assertTrue(health["repairs"]["enabled"])
        self.sonarr.library = library()
        status, started = yield self.call(f"/api/health/{checked['id']}/repair", b"POST")
        self.assertEqual((status, started["repair_state"]), (202, "running"))
        done = yield self.wait_repair(checked["id"], "requested")
        self.assertEqual(done["repair_attempts"], 2)
        status, missing = yield self.call("/api/health/nosuchid/repair", b"POST")
        self.assertEqual((status, missing["error"]["code"]), (404, "not_found"))

    @defer.inlineCallbacks
    def test_api_key_header_and_query(self):
        """X-Api-Key and ?apikey= both authorize; a wrong key does not."""
        status, _ = yield self.call("/api/providers", headers={b"X-Api-Key": [API_KEY.encode()]})
        self.assertEqual(status, 200)
        status, _ = yield self.call(f"/api/providers?apikey={API_KEY}", headers={})
        self.assertEqual(status, 200)
        status, _ = yield self.call("/api/providers", headers={b"X-Api-Key": [b"nope"]})
        self.assertEqual(status, 401)

    @defer.inlineCallbacks
    def test_stream_counts_exact_bytes_and_utilization(self):
        """bytes_served_total grows by exactly the bytes served; utilization > 0 while streaming."""
        _, before = yield self.call("/api/queue/stats")
        self.nntp.faults.latency = 0.05  # keep the stream running while we look
        url = (self.base + quote(self.record.path)).encode()
        response = yield self.agent.request(
            b"GET", url, Headers({b"Authorization": [AUTH], b"Range": [b"bytes=1000-"]})
        )
        body = Body()
        response.deliverBody(body)
        seen_busy = []
        while not body.done.called:
            _, streaming = yield self.call("/api/health/streaming")
            if streaming["streams"]:
                seen_busy.append(streaming["workers"]["utilization"])
                stream = streaming["streams"][0]
                self.assertEqual(stream["path"], self.record.path)
                self.assertEqual(stream["range"]["start"], 1000)
                self.assertIsInstance(stream["current_speed"], float)
            yield task.deferLater(reactor, 0.02, lambda: None)
        data = yield body.done
        self.assertEqual(data, DATA[1000:])
        self.assertTrue(seen_busy and max(seen_busy) > 0, seen_busy)
        _, after = yield self.call("/api/queue/stats")
        served = after["performance"]["bytes_served_total"]
        self.assertEqual(served - before["performance"]["bytes_served_total"], SIZE - 1000)
        self.assertGreater(after["performance"]["avg_speed"], 0)
        self.assertIsInstance(after["performance"]["avg_speed_human"], str)
        self.assertEqual(after["workers"]["utilization"], 0)
        _, streaming = yield self.call("/api/health/streaming")
        self.assertEqual(
            streaming["workers"], {"active": 0, "max": 6, "utilization": 0.0, "queued": 0}
        )
        self.assertEqual(streaming["streams"], [])
        self.assertEqual(streaming["totals"]["streams_total"], 1)
        _, metrics = yield self.call("/metrics")
        samples = dict(
            line.rsplit(" ", 1) for line in metrics.decode().splitlines() if line[:1] != "#"
        )
        self.assertEqual(float(samples["altmount_bytes_served_total"]), SIZE - 1000)
        self.assertEqual(float(samples["altmount_time_to_first_byte_seconds_count"]), 1)
        self.assertIn(b'altmount_provider_bytes_total{provider="A"}', metrics)

    @defer.inlineCallbacks
    def read_file(self):
        """GET the whole imported file; fires with its bytes."""
        url = (self.base + quote(self.record.path)).encode()
        _, data = yield self.web.request(b"GET", url, {b"Authorization": [AUTH]})
        return data

    @defer.inlineCallbacks
    def test_cache_figures_and_delete(self):
        """A re-read costs no BODY; /api/health/streaming and /metrics show the cache's hits,
        bytes and size per tier; DELETE /api/cache empties both tiers."""
        segments = len(self.record.segments.message_ids)
        self.assertEqual((yield self.read_file()), DATA)
        before = self.nntp.commands["BODY"]
        self.assertEqual((yield self.read_file()), DATA)
        self.assertEqual(self.nntp.commands["BODY"], before)
        # Disk-tier writes run in the background: wait (5 s at most) until they landed.
        for _ in range(100):
            _, streaming = yield self.call("/api/health/streaming")
            if streaming["cache"]["disk"]["entries"] >= segments:
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        ram, disk = streaming["cache"]["ram"], streaming["cache"]["disk"]
        # The first read already took the two articles the import fetched from the cache.
        self.assertEqual(ram["hits"], segments + 2)
        self.assertEqual(ram["bytes_served"], SIZE + ARTICLE + SIZE % ARTICLE)
        self.assertEqual((ram["size"], ram["entries"]), (SIZE, segments))
        self.assertTrue(disk["enabled"])
        self.assertEqual(disk["entries"], segments)
        self.assertEqual(streaming["memory"]["cache"], SIZE)
        _, metrics = yield self.call("/metrics")
        samples = dict(
            line.rsplit(" ", 1) for line in metrics.decode().splitlines() if line[:1] != "#"
        )
        self.assertEqual(float(samples['altmount_cache_hits_total{tier="ram"}']), segments + 2)
        self.assertEqual(float(samples['altmount_cache_size_bytes{tier="ram"}']), SIZE)
        self.assertEqual(float(samples['altmount_cache_entries{tier="disk"}']), segments)
        status, cleared = yield self.call("/api/cache", b"DELETE")
        self.assertEqual(status, 200)
        self.assertEqual(cleared["freed"]["ram"], SIZE)
        self.assertGreater(cleared["freed"]["disk"], SIZE)
        _, streaming = yield self.call("/api/health/streaming")
        self.assertEqual(streaming["cache"]["ram"]["entries"], 0)
        self.assertEqual(streaming["cache"]["disk"]["entries"], 0)
        self.assertEqual((yield self.read_file()), DATA)
        self.assertEqual(self.nntp.commands["BODY"], before + segments)

    @defer.inlineCallbacks
    def test_disk_tier_files_are_sent_and_counted(self):
        """With the RAM tier emptied, a re-read goes out from the disk tier's files
        (sendfile) byte-exact, costs no BODY, and its bytes are counted as served."""
        self.assertEqual((yield self.read_file()), DATA)
        segments = len(self.record.segments.message_ids)
        disk = self.engine.cache.disk
        for _ in range(500):
            if len(disk.index) >= segments and not disk._writing:
                break
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.engine.cache.ram.clear()
        _, before = yield self.call("/api/queue/stats")
        bodies = self.nntp.commands["BODY"]
        self.assertEqual((yield self.read_file()), DATA)
        self.assertEqual(self.nntp.commands["BODY"], bodies)
        _, streaming = yield self.call("/api/health/streaming")
        self.assertEqual(streaming["cache"]["sendfile_segments"], segments)
        _, metrics = yield self.call("/metrics")
        self.assertIn(f"altmount_cache_sendfile_segments_total {segments}".encode(), metrics)
        _, after = yield self.call("/api/queue/stats")
        served = after["performance"]["bytes_served_total"]
        self.assertEqual(served - before["performance"]["bytes_served_total"], SIZE)

    @defer.inlineCallbacks
    def test_providers_statistics_no_password(self):
        """Providers list connections and statistics with real numbers and no password."""
        status, body = yield self.call("/api/providers")
        self.assertEqual(status, 200)
        (entry,) = body["providers"]
        self.assertEqual(entry["name"], "A")
        self.assertGreater(entry["statistics"]["bytes"], 0)
        self.assertGreaterEqual(entry["statistics"]["articles"], 2)
        self.assertEqual(entry["connections"]["max"], 6)
        self.assertNotIn("sekrit", json.dumps(body))
        _, config = yield self.call("/api/config")
        self.assertEqual(config["providers"][0]["password"], "********")

    @defer.inlineCallbacks
    def test_provider_test_fresh_connection_and_unknown(self):
        """The provider test measures RTT and speed on real articles; unknown names are 404."""
        status, body = yield self.call("/api/providers/A/test", b"POST")
        self.assertEqual(status, 200)
        self.assertTrue(body["ok"], body)
        self.assertEqual(body["via"], "fresh_connection")
        self.assertEqual(body["rtt_ms"]["samples"], 5)
        self.assertGreater(body["download"]["articles"], 0)
        self.assertGreater(body["download"]["speed"], 0)
        status, body = yield self.call("/api/providers/nobody/test")
        self.assertEqual(status, 404)
        self.assertEqual(body["error"]["code"], "not_found")

    @defer.inlineCallbacks
    def test_health_degraded_when_provider_stops(self):
        """With the provider's server gone, /api/health turns degraded within a few probes."""
        status, body = yield self.call("/api/health")
        self.assertEqual((status, body["status"]), (200, "healthy"))
        yield self.nntp_port.stopListening()
        for protocol in self.server_protocols:
            protocol.transport.loseConnection()
        for _ in range(100):
            _, body = yield self.call("/api/health")
            if body["status"] != "healthy":
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(body["status"], "degraded")
        self.assertEqual(body["components"]["providers"]["status"], "degraded")
        _, anonymous = yield self.call("/api/health", headers={})
        self.assertEqual(anonymous, {"status": "degraded"})

    @defer.inlineCallbacks
    def test_refused_login_shows_disabled_until_a_reload_with_fixed_credentials(self):
        """/api/providers shows each provider's state: closed while it works, disabled after
        a 481 at login (its password changed at the server), closed again once a config
        reload brings the new password, and the provider serves again."""
        pool = self.engine.pools[0]
        message_id = self.record.segments.message_ids[0]
        _, body = yield self.call("/api/providers")
        (entry,) = body["providers"]
        self.assertEqual(entry["state"], "closed")
        self.assertEqual(entry["circuit"]["consecutive_failures"], 0)
        self.nntp.password = "rotated"
        for protocol in self.server_protocols:
            protocol.transport.loseConnection()
        while pool.connections_open:
            yield task.deferLater(reactor, 0.02, lambda: None)
        with self.assertRaises(ProviderAuthError):
            yield pool.body(message_id)
        _, body = yield self.call("/api/providers")
        (entry,) = body["providers"]
        self.assertEqual((entry["state"], entry["enabled"]), ("disabled", False))
        self.assertIn("481", entry["disabled_reason"])
        self.raw["providers"][0]["password"] = "rotated"
        self.write_config()
        status, reloaded = yield self.call("/api/config/reload", b"POST")
        self.assertEqual(status, 200)
        self.assertEqual(reloaded["providers_reenabled"], ["A"])
        _, body = yield self.call("/api/providers")
        (entry,) = body["providers"]
        self.assertEqual((entry["state"], entry["enabled"]), ("closed", True))
        self.assertGreater(len((yield pool.body(message_id))), 0)

    @defer.inlineCallbacks
    def test_config_reload_applies_streaming_live(self):
        """A reload applies streaming limits at once and names other changes as needing restart."""
        self.raw["streaming"]["max_download_workers"] = 9
        self.raw["webdav"]["user"] = "other"
        self.write_config()
        status, body = yield self.call("/api/config/reload", b"POST")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["applied"], ["streaming.max_download_workers"])
        self.assertEqual(body["restart_required"], ["webdav.user"])
        self.assertEqual(self.engine.fetcher.max_download_workers, 9)
        _, streaming = yield self.call("/api/health/streaming")
        self.assertEqual(streaming["workers"]["max"], 9)

    @defer.inlineCallbacks
    def test_queue_routes_and_errors(self):
        """Queue list has a summary, unknown ids are 404 JSON, bad parameters 400 JSON."""
        self.queue.add_item(1, "completed")
        self.queue.add_item(2, "failed")
        status, body = yield self.call("/api/queue?state=completed,failed&limit=10")
        self.assertEqual(status, 200)
        self.assertEqual(body["summary"]["total"], 2)
        self.assertEqual([i["id"] for i in body["items"]], [2, 1])
        status, body = yield self.call("/api/queue/99")
        self.assertEqual(status, 404)
        self.assertIn("99", body["error"]["message"])
        status, body = yield self.call("/api/queue?limit=x")
        self.assertEqual(status, 400)
        status, body = yield self.call("/api/queue", b"DELETE")
        self.assertEqual(sorted(body["deleted"]), [1, 2])
        status, body = yield self.call("/api/providers", b"DELETE")
        self.assertEqual(status, 405)
