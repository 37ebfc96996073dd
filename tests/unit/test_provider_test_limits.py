"""The provider test (ops/providertest.py) stays inside max_connections, counted at the
fake server, on an in-memory network with a fake clock."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from twisted.internet import defer

from altmount.config import NNTPConfig, ProviderConfig
from altmount.nntp.pool import ProviderPool
from altmount.nntp.stats import ProviderStats
from altmount.ops.providertest import ProviderTests
from altmount.testing.nntpserver import Faults, MemoryNetReactor, NNTPServerFactory

ARTICLES = {f"a{i}@test": f"body {i}\r\n".encode() * 500 for i in range(60)}
NNTP = NNTPConfig(connect_timeout_seconds=2, request_timeout_seconds=5, idle_timeout_seconds=1)
PROVIDER = ProviderConfig(
    name="news", host="news.test", tls=False, max_connections=2, inflight_requests=2
)


class _Store:
    """The one method of the metadata store the test reads: recently imported files."""

    def walk_files(self):
        yield SimpleNamespace(mtime=1.0, segments=SimpleNamespace(message_ids=list(ARTICLES)))


def _resolve(host: str) -> defer.Deferred:
    return defer.succeed("127.0.0.1")


def _rig():
    reactor = MemoryNetReactor()
    server = NNTPServerFactory(reactor, ARTICLES, Faults(latency=0.01), seed=1)
    reactor.servers["news.test"] = server
    pool = ProviderPool(reactor, PROVIDER, NNTP, ProviderStats("news", reactor.seconds))
    return reactor, server, pool


def _run(reactor, server, until, limit=60.0):
    """Step the clock by 10 ms until `until()`; the peak of connections seen at the server."""
    peak = 0
    end = reactor.seconds() + limit
    while not until() and reactor.seconds() < end:
        reactor.advance(0.01)
        reactor.flush()
        peak = max(peak, server.current_connections + len(reactor.pending))
    return peak


@pytest.mark.parametrize(
    ("streaming", "via"), [(0, "fresh_connection"), (20, "pool")], ids=["idle", "streaming"]
)
def test_five_concurrent_tests_never_open_a_third_connection(streaming, via):
    """Five tests asked for at once with max_connections 2 (the pool idle, or streaming
    too): they take turns, every one succeeds, and the server never sees a third
    connection. Idle, each test gets its own fresh connection in its turn (before, three
    of five fell back to the pool at once); streaming, the pool's two connections fill
    the limit and the tests measure through them."""
    reactor, server, pool = _rig()
    tests = ProviderTests()
    reads = [pool.body(m) for m in list(ARTICLES)[:streaming]]
    results = []
    for _ in range(5):
        test = tests.run(
            reactor, PROVIDER, NNTP, _Store(), pool, resolve=_resolve, speed_seconds=0.2
        )
        test.addBoth(results.append)
    peak = _run(reactor, server, lambda: len(results) == 5)
    assert len(results) == 5 and all(r["ok"] for r in results), results
    assert peak <= 2 and server.peak_connections <= 2
    assert [r["via"] for r in results] == [via] * 5 and all(r.called for r in reads)
    waits = [r["waited_ms"] for r in results]
    assert waits[0] == 0 and waits == sorted(waits) and len(set(waits)) == 5
    assert all(r["download"]["articles"] > 0 for r in results)


def test_test_goes_through_the_pool_when_no_slot_is_free():
    """With the pool holding both connections busy, the test does not open a third: it
    measures through the pool's own connections and says so."""
    reactor, server, pool = _rig()
    busy = [pool.body(m) for m in ARTICLES]  # enough work to keep both busy for a while
    reactor.advance(0.01)
    reactor.flush()
    assert pool.connections_open == 2
    results = []
    ProviderTests().run(
        reactor, PROVIDER, NNTP, _Store(), pool, resolve=_resolve, speed_seconds=0.1
    ).addBoth(results.append)
    peak = _run(reactor, server, lambda: bool(results))
    assert results[0]["ok"] and results[0]["via"] == "pool" and "note" in results[0]
    assert peak <= 2 and server.peak_connections == 2 and server.connections_total == 2
    _run(reactor, server, lambda: all(b.called for b in busy))
