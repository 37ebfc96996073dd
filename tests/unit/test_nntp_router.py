"""ProviderRouter failover across fake providers on an in-memory network."""

from __future__ import annotations

from altmount.config import NNTPConfig, ProviderConfig
from altmount.errors import ArticleNotFound, NoProvidersAvailable, ProviderUnavailable
from altmount.nntp.pool import ProviderPool
from altmount.nntp.router import ProviderRouter
from altmount.nntp.stats import ProviderStats
from altmount.testing.nntpserver import Faults, MemoryNetReactor, NNTPServerFactory

ARTICLES = {f"r{i}@test": f"router body {i}\r\n".encode() for i in range(20)}
NNTP = NNTPConfig(connect_timeout_seconds=1, request_timeout_seconds=2, max_retries=1)


def _network(*specs):
    """specs: (name, missing ids, is_backup); returns reactor, servers, router."""
    reactor = MemoryNetReactor()
    servers, pools = {}, []
    for name, missing, backup in specs:
        servers[name] = NNTPServerFactory(reactor, ARTICLES, Faults(missing=set(missing)))
        reactor.servers[name] = servers[name]
        config = ProviderConfig(
            name=name,
            host=name,
            tls=False,
            max_connections=2,
            inflight_requests=2,
            is_backup_provider=backup,
        )
        pools.append(ProviderPool(reactor, config, NNTP, ProviderStats(name, reactor.seconds)))
    return reactor, servers, ProviderRouter(pools)


def _result(reactor, deferred):
    box = []
    deferred.addBoth(box.append)
    reactor.flush()
    return box[0]


def test_failover_primary_then_primary_then_backup():
    """430 on both primaries falls over to the backup, asking each once."""
    everything = list(ARTICLES)
    reactor, servers, router = _network(
        ("a", everything, False), ("b", everything, False), ("backup", [], True)
    )
    assert _result(reactor, router.body("r1@test")) == ARTICLES["r1@test"]
    assert [servers[n].commands["BODY"] for n in ("a", "b", "backup")] == [1, 1, 1]


def test_second_primary_before_backup():
    """A 430 on one primary is answered by the other primary; the backup is not asked."""
    reactor, servers, router = _network(
        ("a", ["r2@test"], False), ("b", [], False), ("backup", [], True)
    )
    assert _result(reactor, router.body("r2@test")) == ARTICLES["r2@test"]
    assert servers["backup"].commands["BODY"] == 0


def test_all_430_is_article_not_found():
    """Only when every provider says 430 is the article missing."""
    reactor, servers, router = _network(("a", ["r3@test"], False), ("backup", ["r3@test"], True))
    failure = _result(reactor, router.body("r3@test"))
    assert failure.check(ArticleNotFound) and failure.value.message_id == "r3@test"
    assert _result(reactor, router.stat("r3@test")) is False
    assert _result(reactor, router.stat("r4@test")) is True


def test_connection_failure_falls_over():
    """An unreachable primary fails over to the next provider after its queue wait."""
    reactor, servers, router = _network(("a", [], False), ("b", [], False))
    reactor.refused.add("a")
    box = []
    router.body("r5@test").addBoth(box.append)
    for _ in range(40):
        reactor.advance(0.1)
        reactor.flush()
    assert box == [ARTICLES["r5@test"]] and servers["b"].commands["BODY"] == 1


def test_last_real_error_wins_over_430():
    """A 430 plus an unreachable provider is that provider's error, not ArticleNotFound."""
    reactor, _, router = _network(("a", ["r6@test"], False), ("b", [], False))
    reactor.refused.add("b")
    box = []
    router.body("r6@test").addBoth(box.append)
    for _ in range(40):
        reactor.advance(0.1)
        reactor.flush()
    assert box[0].check(ProviderUnavailable)


def test_exclude_skips_provider():
    """body_from never asks an excluded provider and names the one that answered."""
    reactor, servers, router = _network(("a", [], False), ("b", [], False))
    assert _result(reactor, router.body_from("r7@test", exclude={"a"})) == (
        ARTICLES["r7@test"],
        "b",
    )
    assert servers["a"].commands["BODY"] == 0 and servers["b"].commands["BODY"] == 1


def test_no_enabled_provider():
    """With nobody left to ask the router fails with NoProvidersAvailable naming why."""
    reactor, _, router = _network(("a", [], False))
    failure = _result(reactor, router.body("r8@test", exclude={"a"}))
    assert failure.check(NoProvidersAvailable) and "a: excluded" in str(failure.value)


def test_load_shared_between_primaries():
    """The least loaded primary gets the next request."""
    reactor, servers, router = _network(("a", [], False), ("b", [], False), ("c", [], True))
    results = [router.body(m) for m in list(ARTICLES)[:8]]
    reactor.flush()
    assert all(d.called for d in results)
    assert servers["a"].commands["BODY"] == 4 and servers["b"].commands["BODY"] == 4
    assert servers["c"].commands["BODY"] == 0


def test_close_closes_every_pool():
    """close() closes every pool."""
    reactor, servers, router = _network(("a", [], False), ("b", [], True))
    _result(reactor, router.body("r9@test"))
    closed = router.close()
    reactor.flush()
    assert closed.called and not any(p.enabled for p in router.providers)
    assert servers["a"].current_connections == 0


def test_refusing_primary_is_asked_last_until_it_returns():
    """A primary that refuses connections does not delay requests: the backup answers at
    once, and once the primary accepts connections again it is asked first again."""
    reactor, servers, router = _network(("a", [], False), ("backup", [], True))
    reactor.refused.add("a")
    pool_a = router.providers[0]
    first = []
    router.body("r1@test").addBoth(first.append)  # the first request learns that "a" refuses
    reactor.flush()
    reactor.advance(NNTP.connect_timeout_seconds + NNTP.request_timeout_seconds)
    reactor.flush()
    assert first == [ARTICLES["r1@test"]] and not pool_a.reachable
    served_before = servers["backup"].commands["BODY"]
    box = []
    router.body("r2@test").addBoth(box.append)
    reactor.flush()
    assert box == [ARTICLES["r2@test"]]  # no wait for "a"'s connect + request timeout
    assert servers["backup"].commands["BODY"] == served_before + 1
    reactor.refused.discard("a")
    reactor.advance(60)  # backoff expires: the idle pool reconnects by itself
    reactor.flush()
    assert pool_a.reachable
    assert _result(reactor, router.body("r3@test")) == ARTICLES["r3@test"]
    assert servers["a"].commands["BODY"] == 1
