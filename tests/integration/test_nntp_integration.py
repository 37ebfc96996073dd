"""The NNTP pool and router against the fake server over real sockets on 127.0.0.1.

These are `twisted.trial` test cases (see tests/conftest.py): each test returns a
Deferred and trial spins the global reactor until it fires, then checks that no
connection or timer was left behind.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile

from twisted.internet import defer, reactor
from twisted.trial import unittest

from altmount.config import NNTPConfig, ProviderConfig
from altmount.errors import ProviderAuthError, ProviderTLSError, ProviderUnavailable
from altmount.nntp.client import connect
from altmount.nntp.pool import ProviderPool
from altmount.nntp.probe import probe_provider
from altmount.nntp.router import ProviderRouter
from altmount.nntp.stats import ProviderStats
from altmount.testing.articles import post_release
from altmount.testing.certs import TestCA, server_options
from altmount.testing.nntpserver import Faults, NNTPServerFactory, listen

RELEASE = post_release(
    {"movie.mkv": random.Random(3).randbytes(30 * 100_000)}, article_size=100_000
)
IDS = list(RELEASE.articles)
NNTP = NNTPConfig(
    connect_timeout_seconds=5, request_timeout_seconds=5, idle_timeout_seconds=30, max_retries=5
)


class NNTPIntegration(unittest.TestCase):
    """Each test starts fake servers and pools, and tears all of them down."""

    timeout = 60

    def setUp(self) -> None:
        self.servers: list[NNTPServerFactory] = []
        self.pools: list[ProviderPool] = []

    @defer.inlineCallbacks
    def tearDown(self):
        for pool in self.pools:
            yield pool.close()
        for server in self.servers:
            yield server.when_idle()

    def serve(self, articles=RELEASE.articles, faults=None, **options) -> int:
        port, factory = listen(reactor, articles, faults, seed=5, **options)
        self.addCleanup(port.stopListening)
        self.servers.append(factory)
        return port.getHost().port

    def pool(self, port: int, name: str = "news", **options) -> ProviderPool:
        config = ProviderConfig(name=name, host="127.0.0.1", port=port, tls=False, **options)
        pool = ProviderPool(reactor, config, NNTP, ProviderStats(name, reactor.seconds))
        self.pools.append(pool)
        return pool

    @defer.inlineCallbacks
    def test_fetch_release_with_four_connections(self):
        """30 articles through a 4-connection pool arrive byte for byte."""
        pool = self.pool(self.serve(), max_connections=4)
        bodies = yield defer.gatherResults([pool.body(m) for m in IDS])
        self.assertEqual(bodies, [RELEASE.articles[m] for m in IDS])
        self.assertEqual(self.servers[0].peak_connections, 4)
        self.assertEqual(pool.stats.articles, 30)

    @defer.inlineCallbacks
    def test_missing_articles_fail_over_to_second_provider(self):
        """Articles missing on the first primary come from the second."""
        missing = set(IDS[::3])
        first = self.pool(self.serve(faults=Faults(missing=missing)), "first")
        second = self.pool(self.serve(), "second")
        router = ProviderRouter([first, second])
        bodies = yield defer.gatherResults([router.body(m) for m in IDS])
        self.assertEqual(bodies, [RELEASE.articles[m] for m in IDS])
        self.assertGreaterEqual(first.stats.articles_missing, 1)
        self.assertEqual(second.stats.articles_missing, 0)

    @defer.inlineCallbacks
    def test_disconnect_mid_body_retried(self):
        """Bodies cut off mid-transfer are fetched again and arrive whole."""
        pool = self.pool(self.serve(faults=Faults(disconnect_rate=0.2)), max_connections=3)
        bodies = yield defer.gatherResults([pool.body(m) for m in IDS])
        self.assertEqual(bodies, [RELEASE.articles[m] for m in IDS])
        self.assertGreater(pool.stats.errors["connection_lost"], 0)

    @defer.inlineCallbacks
    def test_slow_server(self):
        """Latency and a bandwidth cap slow the answers down but do not break them."""
        faults = Faults(latency=0.05, bandwidth=2_000_000)
        pool = self.pool(self.serve(faults=faults), max_connections=2)
        started = reactor.seconds()
        bodies = yield defer.gatherResults([pool.body(m) for m in IDS[:6]])
        self.assertEqual(bodies, [RELEASE.articles[m] for m in IDS[:6]])
        # 6 bodies of ~100 KB over two 2 MB/s connections take at least ~0.15 s.
        self.assertGreater(reactor.seconds() - started, 0.12)

    @defer.inlineCallbacks
    def test_auth_failure_disables_provider(self):
        """A 481 at login disables the provider; requests fail with ProviderAuthError."""
        port = self.serve(username="user", password="right")
        pool = self.pool(port, username="user", password="wrong")
        with self.assertRaises(ProviderAuthError):
            yield pool.body(IDS[0])
        self.assertFalse(pool.enabled)
        self.assertIn("481", pool.disabled_reason)

    @defer.inlineCallbacks
    def test_login_with_right_credentials(self):
        """With the right credentials the body arrives."""
        pool = self.pool(
            self.serve(username="user", password="right"), username="user", password="right"
        )
        body = yield pool.body(IDS[0])
        self.assertEqual(body, RELEASE.articles[IDS[0]])

    @defer.inlineCallbacks
    def test_peak_connections_within_limit_under_faults(self):
        """Under disconnects and timeouts the server never sees more than max_connections."""
        faults = Faults(disconnect_rate=0.1, max_connections=3)
        pool = self.pool(self.serve(faults=faults), max_connections=3, inflight_requests=2)
        bodies = yield defer.gatherResults([pool.body(m) for m in IDS * 2])
        self.assertEqual(bodies, [RELEASE.articles[m] for m in IDS * 2])
        self.assertLessEqual(self.servers[0].peak_connections, 3)
        self.assertEqual(self.servers[0].connections_rejected, 0)

    @defer.inlineCallbacks
    def test_probe(self):
        """probe_provider logs in, times a DATE round trip and quits."""
        port = self.serve()
        config = ProviderConfig(name="probe", host="127.0.0.1", port=port, tls=False)
        rtt = yield probe_provider(reactor, config, NNTP)
        self.assertGreaterEqual(rtt, 0.0)
        self.assertEqual(self.servers[0].commands["DATE"], 1)


class NNTPOverTLS(unittest.TestCase):
    """TLS to the fake server with certificates of a test CA (altmount.testing.certs)."""

    timeout = 60

    def setUp(self) -> None:
        self.ca = TestCA.make()
        folder = tempfile.mkdtemp(prefix="altmount-ca-")
        self.addCleanup(shutil.rmtree, folder)
        self.ca_file = os.path.join(folder, "ca.pem")
        with open(self.ca_file, "wb") as out:
            out.write(self.ca.pem)

    def serve(self, pair: tuple[bytes, bytes]) -> int:
        port, server = listen(reactor, RELEASE.articles, tls=server_options(*pair))
        self.addCleanup(port.stopListening)
        self.addCleanup(server.when_idle)
        return port.getHost().port

    def pool(self, port: int, **options) -> ProviderPool:
        config = ProviderConfig(name="tls", host="localhost", port=port, tls=True, **options)
        nntp = NNTPConfig(connect_timeout_seconds=2, request_timeout_seconds=2)
        pool = ProviderPool(reactor, config, nntp, ProviderStats("tls", reactor.seconds))
        self.addCleanup(pool.close)
        return pool

    @defer.inlineCallbacks
    def test_ca_file_verifies_the_server(self):
        """A certificate signed by the CA in ca_file verifies; the body arrives over TLS."""
        pool = self.pool(self.serve(self.ca.issue()), ca_file=self.ca_file)
        body = yield pool.body(IDS[0])
        self.assertEqual(body, RELEASE.articles[IDS[0]])

    @defer.inlineCallbacks
    def test_system_store_honours_ssl_cert_file(self):
        """Without ca_file the system store is used, and OpenSSL's SSL_CERT_FILE points it."""
        port = self.serve(self.ca.issue())
        previous = os.environ.get("SSL_CERT_FILE")
        os.environ["SSL_CERT_FILE"] = self.ca_file  # the process environment OpenSSL reads

        def restore() -> None:
            if previous is None:
                del os.environ["SSL_CERT_FILE"]
            else:
                os.environ["SSL_CERT_FILE"] = previous

        self.addCleanup(restore)
        body = yield self.pool(port).body(IDS[0])
        self.assertEqual(body, RELEASE.articles[IDS[0]])

    @defer.inlineCallbacks
    def test_insecure_tls_accepts_an_unknown_ca(self):
        """With insecure_tls a certificate of an untrusted CA is accepted."""
        pool = self.pool(self.serve(TestCA.make("stranger").issue()), insecure_tls=True)
        body = yield pool.body(IDS[0])
        self.assertEqual(body, RELEASE.articles[IDS[0]])

    @defer.inlineCallbacks
    def test_unknown_ca_disables_the_provider(self):
        """A certificate of an untrusted CA fails with ProviderTLSError and disables the pool."""
        pool = self.pool(self.serve(TestCA.make("stranger").issue()), ca_file=self.ca_file)
        with self.assertRaises(ProviderTLSError) as raised:
            yield pool.body(IDS[0])
        self.assertIn(f"(localhost:{pool._provider.port})", str(raised.exception))
        self.assertIn("unknown CA", str(raised.exception))
        self.assertFalse(pool.enabled)
        self.assertIn("unknown CA", pool.disabled_reason)

    @defer.inlineCallbacks
    def test_reconnect_resumes_the_tls_session(self):
        """A second connection to the provider resumes the first one's TLS session."""
        port = self.serve(self.ca.issue())
        config = ProviderConfig(
            name="tls", host="localhost", port=port, tls=True, ca_file=self.ca_file
        )
        nntp = NNTPConfig(connect_timeout_seconds=2, request_timeout_seconds=2)
        reused = []
        for _ in range(2):
            client = yield connect(reactor, config, nntp)
            body = yield client.body(IDS[0])  # the session ticket arrives with the data
            self.assertEqual(body, RELEASE.articles[IDS[0]])
            reused.append(client.transport.session_reused)
            yield client.quit()
        self.assertEqual(reused, [False, True])

    @defer.inlineCallbacks
    def test_plain_server_on_a_tls_port_is_named(self):
        """tls: true against a plain NNTP server says the handshake failed and why."""
        port, server = listen(reactor, RELEASE.articles)
        self.addCleanup(port.stopListening)
        config = ProviderConfig(
            name="plain", host="127.0.0.1", port=port.getHost().port, tls=True, insecure_tls=True
        )
        with self.assertRaises(ProviderUnavailable) as raised:
            yield probe_provider(reactor, config, NNTPConfig(connect_timeout_seconds=2))
        self.assertIn("TLS handshake", str(raised.exception))
        self.assertIn("tls: false", str(raised.exception))
        yield server.when_idle()
