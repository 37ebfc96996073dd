"""The repair loop against Sonarr/Radarr v3 APIs served on 127.0.0.1 (tests/integration/
fakearr.py: the endpoints and shapes of Sonarr's src/Sonarr.Api.V3/openapi.json and
Radarr's src/Radarr.Api.V3/openapi.json), with a real HealthStore and Twisted's Agent."""

from __future__ import annotations

import shutil
import tempfile

from fakearr import FakeArr, radarr_library, sonarr_library
from twisted.internet import defer, reactor
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Site

from altmount.config import parse_config
from altmount.ops.healthstore import FileHealth, HealthStore
from altmount.ops.repair import Repairer

EPISODE = "/library/tv/Shōgun (2024)/Season 1/Shōgun - S01E01.mkv"
MOVIE = "/complete/movies/Dune.Part.Two.2024.1080p/Dune.Part.Two.2024.1080p.mkv"


class RepairLoop(unittest.TestCase):
    """Each test: a fake Sonarr and a fake Radarr, a health store, a Repairer over them."""

    timeout = 30

    def setUp(self) -> None:
        self.sonarr = FakeArr("sonarr", "sonarr-key", sonarr_library())
        self.radarr = FakeArr("radarr", "radarr-key", radarr_library())
        self.ports = {}
        for name, fake in (("sonarr", self.sonarr), ("radarr", self.radarr)):
            port = reactor.listenTCP(0, Site(fake), interface="127.0.0.1")
            self.addCleanup(port.stopListening)
            self.ports[name] = port.getHost().port
        folder = tempfile.mkdtemp(prefix="altmount-repair-")
        self.addCleanup(shutil.rmtree, folder, True)
        self.store = HealthStore(folder)
        self.addCleanup(self.store.close)
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)

    def repairer(self, sonarr_key: str = "sonarr-key", max_attempts: int = 3) -> Repairer:
        text = f"""
sabnzbd: {{mount_dir: /mnt/altmount}}
arrs:
  enabled: true
  max_attempts: {max_attempts}
  request_timeout_seconds: 5
  sonarr_instances:
    - {{name: sonarr-main, url: "http://127.0.0.1:{self.ports["sonarr"]}", api_key: {sonarr_key}, category: tv}}
  radarr_instances:
    - {{name: radarr-main, url: "http://127.0.0.1:{self.ports["radarr"]}/", api_key: radarr-key, category: movies}}
"""
        config, warnings = parse_config(text)
        assert warnings == []
        agent = Agent(reactor, pool=self.pool)
        return Repairer(reactor, config, self.store, agent, retry_delays=(0.05, 0.05))

    def corrupted(self, path: str) -> FileHealth:
        health = FileHealth(path, "corrupted", missing_count=4, sampled=10, segments=200)
        self.store.put(health)
        return health

    @defer.inlineCallbacks
    def test_sonarr_episode_deleted_blocklisted_searched(self):
        """A corrupted episode moved into the library: Sonarr finds it by path, its latest
        grab is marked failed, the file deleted, EpisodeSearch sent; state `requested`."""
        repairer = self.repairer()
        repairer.consider(self.corrupted(EPISODE))
        self.assertEqual(self.store.get(EPISODE).repair_state, "running")
        done = yield repairer.start(EPISODE)
        calls = [(c.method, c.path, c.query, c.body) for c in self.sonarr.calls]
        self.assertEqual(
            calls,
            [
                ("GET", "/api/v3/series", {}, None),
                ("GET", "/api/v3/episodefile", {"seriesId": "7"}, None),
                ("GET", "/api/v3/episode", {"episodeFileId": "41"}, None),
                ("GET", "/api/v3/history/series", {"seriesId": "7", "eventType": "grabbed"}, None),
                ("POST", "/api/v3/history/failed/905", {}, None),
                ("DELETE", "/api/v3/episodefile/41", {}, None),
                ("POST", "/api/v3/command", {}, {"name": "EpisodeSearch", "episodeIds": [701]}),
            ],
        )
        self.assertEqual({c.api_key for c in self.sonarr.calls}, {"sonarr-key"})
        self.assertEqual(self.radarr.calls, [])
        self.assertEqual(done.repair_state, "requested")
        self.assertEqual(done.repair_attempts, 1)
        self.assertIn(
            "sonarr sonarr-main: file 41 deleted, grab 905 blocklisted", done.repair_detail
        )
        self.assertEqual([f["id"] for f in self.sonarr.library.files], [42])
        repairer.consider(self.store.get(EPISODE))
        self.assertEqual(len(self.sonarr.calls), 7)  # requested: never asked twice

    @defer.inlineCallbacks
    def test_radarr_asked_first_for_its_category(self):
        """A movie under the movies category folder goes to Radarr first; MoviesSearch."""
        self.corrupted(MOVIE)
        done = yield self.repairer().start(MOVIE)
        self.assertEqual(self.sonarr.calls, [])
        self.assertEqual(self.radarr.calls[-1].body, {"name": "MoviesSearch", "movieIds": [12]})
        self.assertEqual(
            [(c.method, c.path) for c in self.radarr.calls[:-1]],
            [
                ("GET", "/api/v3/movie"),
                ("GET", "/api/v3/moviefile"),
                ("GET", "/api/v3/history/movie"),
                ("POST", "/api/v3/history/failed/300"),
                ("DELETE", "/api/v3/moviefile/55"),
            ],
        )
        self.assertEqual(done.repair_state, "requested")

    @defer.inlineCallbacks
    def test_nobody_owns_the_file(self):
        """A path no series or movie holds: both asked, state `not_found` naming each."""
        path = "/complete/tv/Unknown.S01E01/Unknown.S01E01.mkv"
        self.corrupted(path)
        done = yield self.repairer().start(path)
        self.assertEqual(done.repair_state, "not_found")
        self.assertIn(
            "sonarr sonarr-main: no series folder holds /mnt/altmount" + path, done.repair_detail
        )
        self.assertIn("radarr radarr-main: no movie folder holds", done.repair_detail)
        self.assertFalse(any(c.method != "GET" for c in self.sonarr.calls + self.radarr.calls))

    @defer.inlineCallbacks
    def test_transient_errors_retried_boundedly(self):
        """A 503 is asked again (and the repair goes through); three in a row fail it,
        naming the call and the status, without touching the file."""
        self.corrupted(EPISODE)
        self.sonarr.fail_next = [503]
        done = yield self.repairer().start(EPISODE)
        self.assertEqual(done.repair_state, "requested")
        self.assertEqual(len(self.sonarr.calls), 8)
        self.sonarr.library = sonarr_library()
        self.sonarr.calls.clear()
        self.sonarr.fail_next = [503, 502, 500]
        done = yield self.repairer().start(EPISODE)
        self.assertEqual(done.repair_state, "failed")
        self.assertIn("sonarr sonarr-main: GET /api/v3/series: HTTP 500", done.repair_detail)
        self.assertEqual(len(self.sonarr.calls), 3)
        self.assertEqual(len(self.sonarr.library.files), 2)

    @defer.inlineCallbacks
    def test_wrong_api_key_fails_at_once(self):
        """A 401 is not retried: the repair fails saying to check the api_key."""
        self.corrupted(EPISODE)
        done = yield self.repairer(sonarr_key="wrong").start(EPISODE)
        self.assertEqual(done.repair_state, "failed")
        self.assertIn("HTTP 401 (check the api_key)", done.repair_detail)
        self.assertEqual(len(self.sonarr.calls), 1)

    @defer.inlineCallbacks
    def test_automatic_attempts_are_bounded(self):
        """After max_attempts failed automatic repairs, consider() starts no more; a
        manual start still runs."""
        repairer = self.repairer(sonarr_key="wrong", max_attempts=1)
        repairer.consider(self.corrupted(EPISODE))
        yield repairer.start(EPISODE)  # follows the automatic one
        self.assertEqual(len(self.sonarr.calls), 1)
        repairer.consider(self.store.get(EPISODE))
        self.assertEqual(self.store.get(EPISODE).repair_state, "failed")
        done = yield repairer.start(EPISODE)
        self.assertEqual(done.repair_attempts, 2)
        self.assertEqual(len(self.sonarr.calls), 2)

    @defer.inlineCallbacks
    def test_unreachable_instance_fails_named(self):
        """An instance nobody listens for: connection refused, retried, then failed."""
        self.corrupted(EPISODE)
        repairer = self.repairer()
        port = reactor.listenTCP(0, Site(self.sonarr), interface="127.0.0.1")
        dead = port.getHost().port
        yield port.stopListening()
        instance = repairer.config.arrs.sonarr_instances[0]
        arrs = repairer.config.arrs.__class__(
            enabled=True,
            mount_path="/mnt/altmount",
            sonarr_instances=[
                instance.__class__(
                    name="gone", url=f"http://127.0.0.1:{dead}", api_key="k", category="tv"
                )
            ],
        )
        repairer.config = repairer.config.__class__(sabnzbd=repairer.config.sabnzbd, arrs=arrs)
        done = yield repairer.start(EPISODE)
        self.assertEqual(done.repair_state, "failed")
        self.assertIn("sonarr gone: GET /api/v3/series:", done.repair_detail)
