"""Two provider pools with one per-host budget against the fake server on 127.0.0.1.

Each pool stands for a process (its own `SlotBudget`, its own lock descriptors): the
server must never see more than `max_connections` in total, and a pool that arrives
while the other holds every slot gets its share.
"""

from __future__ import annotations

import random
import shutil
import tempfile

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from altmount.config import NNTPConfig, ProviderConfig
from altmount.nntp.budget import SlotBudget
from altmount.nntp.pool import ProviderPool
from altmount.nntp.stats import ProviderStats
from altmount.testing.articles import post_release
from altmount.testing.nntpserver import Faults, listen

RELEASE = post_release({"movie.mkv": random.Random(7).randbytes(40 * 50_000)}, article_size=50_000)
IDS = list(RELEASE.articles)
NNTP = NNTPConfig(
    connect_timeout_seconds=5, request_timeout_seconds=5, idle_timeout_seconds=30, max_retries=5
)


class SharedBudget(unittest.TestCase):
    """Pools that share a lease folder share the provider's connections."""

    timeout = 60

    def setUp(self) -> None:
        self.port, self.server = listen(reactor, RELEASE.articles, Faults(latency=0.01), seed=1)
        self.pools: list[ProviderPool] = []
        self.leases = tempfile.mkdtemp(prefix="altmount-leases-")
        self.addCleanup(shutil.rmtree, self.leases, True)

    @defer.inlineCallbacks
    def tearDown(self):
        for pool in self.pools:
            yield pool.close()
        yield self.server.when_idle()
        yield self.port.stopListening()

    def pool(self, pid: int, limit: int = 4) -> ProviderPool:
        provider = ProviderConfig(
            name="news",
            host="127.0.0.1",
            port=self.port.getHost().port,
            tls=False,
            max_connections=limit,
        )
        budget = SlotBudget(self.leases, "news", limit, clock=reactor.seconds, pid=pid)
        pool = ProviderPool(reactor, provider, NNTP, ProviderStats("news"), budget)
        self.pools.append(pool)
        return pool

    @defer.inlineCallbacks
    def test_two_pools_never_exceed_the_limit(self):
        """Every article read through both pools at once: at most 4 connections, all bytes right."""
        first, second = self.pool(1), self.pool(2)
        reads = [pool.body(m) for m in IDS for pool in (first, second)]
        bodies = yield defer.gatherResults(reads)
        self.assertEqual(bodies, [RELEASE.articles[m] for m in IDS for _ in range(2)])
        self.assertLessEqual(self.server.peak_connections, 4)

    @defer.inlineCallbacks
    def test_a_latecomer_gets_its_share(self):
        """A pool that starts while the other holds all slots gets connections within a second."""
        first = self.pool(1)
        busy = defer.gatherResults([first.body(m) for m in IDS * 3])
        yield task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(first.connections_open, 4)
        second = self.pool(2)
        started = reactor.seconds()
        body = yield second.body(IDS[0])
        waited = reactor.seconds() - started
        self.assertEqual(body, RELEASE.articles[IDS[0]])
        self.assertLess(waited, 1.5)
        yield busy
        self.assertLessEqual(self.server.peak_connections, 4)
