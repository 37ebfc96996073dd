"""ProviderPool against the fake server on an in-memory network with a fake clock."""

from __future__ import annotations

import logging

import pytest
from twisted.python.failure import Failure

from altmount.config import NNTPConfig, ProviderConfig
from altmount.errors import (
    ArticleNotFound,
    NNTPConnectionLost,
    NNTPTimeout,
    ProviderAuthError,
    ProviderUnavailable,
)
from altmount.nntp.pool import ProviderPool
from altmount.nntp.protocol import ArticleBody
from altmount.nntp.schedule import IMPORT_PRIORITY, STREAM_LINGER_SECONDS, STREAM_PRIORITY
from altmount.nntp.stats import ProviderStats
from altmount.testing.nntpserver import Faults, MemoryNetReactor, NNTPServerFactory

ARTICLES = {f"a{i}@test": f"body {i}\r\n".encode() * 50 for i in range(120)}
NNTP = NNTPConfig(
    connect_timeout_seconds=2, request_timeout_seconds=5, idle_timeout_seconds=60, max_retries=3
)


def _setup(max_connections=3, depth=2, faults=None, nntp=NNTP, **provider):
    reactor = MemoryNetReactor()
    server = NNTPServerFactory(reactor, ARTICLES, faults, seed=1)
    reactor.servers["news.test"] = server
    config = ProviderConfig(
        name="news",
        host="news.test",
        tls=False,
        max_connections=max_connections,
        inflight_requests=depth,
        **provider,
    )
    pool = ProviderPool(reactor, config, nntp, ProviderStats("news", reactor.seconds))
    return reactor, server, pool


def _collect(deferreds):
    results: list = [None] * len(deferreds)
    for index, d in enumerate(deferreds):
        d.addBoth(lambda result, i=index: results.__setitem__(i, result))
    return results


def test_never_more_than_max_connections():
    """100 concurrent requests with a limit of 3: at no step more than 3 connections."""
    reactor, server, pool = _setup(max_connections=3)
    ids = list(ARTICLES)[:100]
    results = _collect([pool.body(m) for m in ids])
    assert pool.connections_connecting == 3
    while reactor.step():
        assert pool.connections_open + pool.connections_connecting <= 3
        assert reactor.open_connections + len(reactor.pending) <= 3
        assert server.current_connections <= 3
    assert results == [ARTICLES[m] for m in ids]
    assert server.peak_connections == 3 and server.connections_total == 3


def test_jobs_spread_over_connections_before_pipelining():
    """Each request gets a connection of its own while the limit allows (servers answer
    pipelined commands one at a time, so connections are the parallelism)."""
    reactor, server, pool = _setup(max_connections=5, depth=4)
    results = _collect([pool.body(m) for m in list(ARTICLES)[:4]])
    assert pool.connections_connecting == 4
    reactor.flush()
    assert server.connections_total == 4 and all(isinstance(r, ArticleBody) for r in results)
    assert pool.connections_open == 4 and pool.connections_idle == 4


def test_pipelines_only_beyond_the_connection_limit():
    """With every connection open and busy, further requests are pipelined up to the depth."""
    reactor, server, pool = _setup(max_connections=2, depth=3)
    results = _collect([pool.body(m) for m in list(ARTICLES)[:6]])
    reactor.flush()
    assert server.peak_connections == 2 and server.connections_total == 2
    assert results == [ARTICLES[m] for m in list(ARTICLES)[:6]]


def test_pipelines_behind_the_request_that_started_first():
    """With every connection busy, a request is pipelined behind the oldest head request:
    the server answers one command at a time per connection, so that one frees first."""
    reactor, server, pool = _setup(max_connections=2, depth=3, faults=Faults(latency=1.0))
    ids = list(ARTICLES)

    def until(when):
        # In 0.1 s steps: one advance() past several timers would schedule the
        # server's next answer from the end of the jump.
        while reactor.seconds() < when - 1e-9:
            reactor.advance(0.1)
            reactor.flush()

    def at(when, message_id):
        until(when)
        results = _collect([pool.body(message_id)])
        reactor.flush()
        return results

    at(0.0, ids[0])  # connection A
    at(0.5, ids[1])  # A is busy: connection B, its head started at 0.5
    at(1.2, ids[2])  # A answered at 1.0 and is idle: A again, head started at 1.2
    late = at(1.3, ids[3])  # both busy: behind B's head (answered at 1.5), not A's (2.2)
    until(2.6)
    assert server.connections_total == 2
    assert isinstance(late[0], ArticleBody)


def test_idle_connection_is_reused_before_opening_another():
    """A request arriving while a connection is idle uses it: no new connect."""
    reactor, server, pool = _setup(max_connections=5, depth=4)
    first = _collect([pool.body(list(ARTICLES)[0])])
    reactor.flush()
    second = _collect([pool.body(list(ARTICLES)[1])])
    reactor.flush()
    assert server.connections_total == 1 and isinstance(first[0], ArticleBody)
    assert isinstance(second[0], ArticleBody)


def test_backoff_after_connect_failure():
    """Refused connects back off 0.5 s, 1 s, 2 s; queued requests wait, then succeed."""
    reactor, server, pool = _setup(
        nntp=NNTPConfig(connect_timeout_seconds=10, request_timeout_seconds=30)
    )
    reactor.refused.add("news.test")
    results = _collect([pool.body("a1@test")])
    reactor.flush()
    assert pool.stats.errors["connect"] == 1
    for failures, backoff in ((2, 0.5), (3, 1.0), (4, 2.0)):
        reactor.advance(backoff - 0.01)
        reactor.flush()
        assert pool.stats.errors["connect"] == failures - 1
        reactor.advance(0.01)
        reactor.flush()
        assert pool.stats.errors["connect"] == failures
    assert results == [None]
    reactor.refused.clear()
    reactor.advance(4)
    reactor.flush()
    assert results == [ARTICLES["a1@test"]]
    reactor.advance(0.5)
    reactor.flush()
    assert server.connections_total == 1


def test_queued_requests_expire_while_unreachable():
    """With no connection possible, queued requests fail after connect+request timeout."""
    reactor, _, pool = _setup()
    reactor.refused.add("news.test")
    results = _collect([pool.body("a1@test")])
    reactor.flush()
    for _ in range(65):
        reactor.advance(0.1)
        reactor.flush()
    assert results == [None]
    reactor.advance(0.6)
    reactor.flush()
    assert results[0].check(ProviderUnavailable) and "refused" in str(results[0].value)


def test_auth_failure_disables_provider_once(caplog):
    """481 at login disables the provider with one warning; later requests fail at once."""
    reactor, server, pool = _setup(faults=Faults(auth_fail=True), username="u", password="p")
    caplog.set_level(logging.WARNING, logger="altmount.nntp.pool")
    results = _collect([pool.body(m) for m in list(ARTICLES)[:20]])
    reactor.flush()
    assert all(r.check(ProviderAuthError) for r in results)
    assert not pool.enabled and pool.disabled_reason.startswith("provider news: 481")
    assert len([r for r in caplog.records if "disabled" in r.getMessage()]) == 1
    late = _collect([pool.body("a1@test")])
    assert late[0].check(ProviderAuthError)
    reactor.advance(60)
    reactor.flush()
    assert server.connections_total == 3 and pool.stats.errors["auth"] >= 1


def test_disconnect_mid_body_is_retried():
    """Bodies cut off by disconnects are retried on new connections and arrive whole."""
    reactor, server, pool = _setup(
        faults=Faults(disconnect_rate=0.3), nntp=NNTPConfig(max_retries=10)
    )
    ids = list(ARTICLES)[:30]
    results = _collect([pool.body(m) for m in ids])
    reactor.flush()
    assert results == [ARTICLES[m] for m in ids]
    assert pool.stats.errors["connection_lost"] > 0 and server.peak_connections <= 3


def test_retries_exhausted_fail_with_last_error():
    """A body that always breaks fails after max_retries charged retries with the last
    error. Its losses come in quick succession, so each charged one is followed by one
    free loss per connection (the outage rule below): bounded, never endless."""
    reactor, server, pool = _setup(max_connections=1, depth=1, faults=Faults(disconnect_rate=1.0))
    results = _collect([pool.body("a1@test")])
    reactor.flush()
    assert results[0].check(NNTPConnectionLost)
    assert server.commands["BODY"] == 1 + NNTP.max_retries * 2


def test_provider_restart_charges_a_request_once():
    """A provider drops every connection at once. The pool notices the losses one at a
    time, so the request's retry lands on an idle sibling that is already dead: that
    loss is the same outage, not another attempt, and the request survives it even
    with max_retries 1."""
    nntp = NNTPConfig(request_timeout_seconds=5, max_retries=1)
    faults = Faults()
    reactor, server, pool = _setup(max_connections=3, depth=2, faults=faults, nntp=nntp)
    warm = _collect([pool.body(m) for m in list(ARTICLES)[:6]])
    reactor.flush()
    assert warm == [ARTICLES[m] for m in list(ARTICLES)[:6]] and reactor.open_connections == 3
    faults.stall_rate = 1.0
    results = _collect([pool.body("a7@test")])
    reactor.flush()
    for pump in reactor._pumps:
        pump.serverIO.loseConnection()
    faults.stall_rate = 0.0
    reactor.flush()
    assert results == [ARTICLES["a7@test"]]


def _run_until(reactor, done, limit):
    """Advance the clock in 0.1 s steps until `done()` or `limit` seconds have passed."""
    end = reactor.seconds() + limit
    while not done() and reactor.seconds() < end:
        reactor.advance(0.1)
        reactor.flush()


def test_timeout_reissues_on_a_new_connection():
    """A stalled request times out, the connection is dropped, and the retry goes out on
    a new connection after the first backoff step (0.5 s), not at once."""
    faults = Faults(stall_rate=1.0)
    reactor, server, pool = _setup(max_connections=1, faults=faults)
    results = _collect([pool.body("a1@test"), pool.body("a2@test")])
    reactor.flush()
    faults.stall_rate = 0.0
    reactor.advance(5.1)
    reactor.flush()
    assert results == [None, None] and server.connections_total == 1
    reactor.advance(0.5)
    reactor.flush()
    assert results == [ARTICLES["a1@test"], ARTICLES["a2@test"]]
    assert pool.stats.errors["timeout"] == 1 and server.connections_total == 2
    assert pool.circuit["state"] == "closed" and pool.circuit["consecutive_failures"] == 0


def test_requests_behind_a_stall_keep_their_attempts():
    """When a stalled head drops the connection, only the head spends a retry: the request
    pipelined behind it outlives the head's retries and succeeds once the stalls stop."""
    faults = Faults(stall_rate=1.0)
    reactor, server, pool = _setup(max_connections=1, depth=2, faults=faults)
    results = _collect([pool.body("a1@test"), pool.body("a2@test")])
    reactor.flush()
    # The head's first try and every retry stall (with backoff between them).
    _run_until(reactor, lambda: results[0] is not None, 60)
    assert isinstance(results[0], Failure) and results[0].check(NNTPTimeout)
    assert results[1] is None  # still queued: the stalls behind cost it nothing
    assert server.commands["BODY"] == NNTP.max_retries + 1  # a stalled server reads no more
    faults.stall_rate = 0.0
    _run_until(reactor, lambda: results[1] is not None, 60)
    assert results[1] == ARTICLES["a2@test"]


def test_missing_article_not_retried():
    """430 fails with ArticleNotFound at once and counts as missing."""
    reactor, server, pool = _setup(faults=Faults(missing={"a1@test"}))
    results = _collect([pool.body("a1@test"), pool.stat("a1@test"), pool.stat("a2@test")])
    reactor.flush()
    assert results[0].check(ArticleNotFound) and results[1:] == [False, True]
    assert pool.stats.articles_missing == 2 and server.commands["BODY"] == 1


def test_priority_lower_first():
    """Within one class, queued requests run lowest priority value first, FIFO within one."""
    reactor, _, pool = _setup(max_connections=1, depth=1)
    order = []
    for message_id, priority in (("a1@test", 1), ("a2@test", 0), ("a3@test", 1), ("a4@test", 0)):
        pool.body(message_id, priority).addCallback(lambda _, m=message_id: order.append(m))
    reactor.flush()
    assert order == ["a2@test", "a4@test", "a1@test", "a3@test"]


def _ordered(pool, requests):
    order: list[str] = []
    for message_id, priority in requests:
        pool.body(message_id, priority).addCallback(lambda _, m=message_id: order.append(m))
    return order


def test_one_connection_alternates_imports_with_streams():
    """On a one-connection provider, imports never go twice in a row while streams wait,
    and streams never starve them either."""
    reactor, _, pool = _setup(max_connections=1, depth=1)
    imports = [(f"a{i}@test", IMPORT_PRIORITY) for i in range(10, 14)]
    streams = [(f"a{i}@test", STREAM_PRIORITY) for i in range(20, 24)]
    order = _ordered(pool, imports + streams)
    reactor.flush()
    kinds = ["i" if int(m[1:3]) < 20 else "s" for m in order]
    assert kinds == ["i", "s", "i", "s", "i", "s", "i", "s"]


def test_imports_keep_to_the_background_limit_while_a_stream_is_active():
    """With one stream active, imports hold at most capacity - headroom connections, and a
    stream request gets a connection of its own at once instead of queueing behind them."""
    reactor, server, pool = _setup(max_connections=4, depth=2)
    pool.count_streams(lambda: 1)
    assert pool.background_limit == 2  # 4 - min(2 x 1, 3)
    imports = _collect([pool.body(f"a{i}@test", IMPORT_PRIORITY) for i in range(40)])
    assert pool.connections_connecting == 2
    reactor.flush()
    assert server.peak_connections == 2
    del imports[:]
    more = _collect([pool.body(f"a{i}@test", IMPORT_PRIORITY) for i in range(40, 80)])
    stream = _collect([pool.body("a100@test", STREAM_PRIORITY)])
    assert pool.background_connections <= 2 and pool.connections_connecting == 1
    while reactor.step():
        assert pool.background_connections <= 2
        if stream[0] is not None:
            break
    assert stream[0] == ARTICLES["a100@test"] and None in more  # before the imports end
    reactor.flush()
    assert all(isinstance(r, ArticleBody) for r in more) and server.peak_connections == 3


def test_without_streams_imports_use_every_connection():
    """With no stream active, import work may use all of max_connections."""
    reactor, server, pool = _setup(max_connections=4, depth=1)
    _collect([pool.body(f"a{i}@test", IMPORT_PRIORITY) for i in range(20)])
    reactor.flush()
    assert server.peak_connections == 4 and pool.background_limit == 4


def test_a_stream_request_keeps_connections_free_for_a_while():
    """Without a stream count, a stream request makes the pool count one stream for
    STREAM_LINGER_SECONDS: a seeking player's next request finds its connections free."""
    reactor, server, pool = _setup(max_connections=4, depth=1)
    _collect([pool.body("a1@test", STREAM_PRIORITY)])
    reactor.flush()
    assert pool.background_limit == 2
    reactor.advance(STREAM_LINGER_SECONDS + 0.1)
    assert pool.background_limit == 4


def test_import_waiting_behind_streams_is_served():
    """A flood of stream requests on every connection does not starve a queued import:
    it is answered long before the streams' requests run out."""
    reactor, _, pool = _setup(max_connections=2, depth=1)
    pool.count_streams(lambda: 5)  # limit 2 - min(10, 1) = 1 connection for imports
    streams = [(f"a{i}@test", STREAM_PRIORITY) for i in range(60)]
    order = _ordered(pool, streams[:30] + [("a100@test", IMPORT_PRIORITY)] + streams[30:])
    reactor.flush()
    assert len(order) == 61 and order.index("a100@test") <= 3


def test_idle_connections_closed():
    """Connections idle for idle_timeout are closed with QUIT."""
    reactor, server, pool = _setup()
    _collect([pool.body("a1@test")])
    reactor.flush()
    reactor.advance(59)
    reactor.flush()
    assert pool.connections_open == 1
    reactor.advance(1.1)
    reactor.flush()
    assert pool.connections_open == 0 and server.current_connections == 0
    assert server.commands["QUIT"] == 1


def test_stats_count_articles_and_bytes():
    """Articles, bytes and connection counts reach the stats."""
    reactor, _, pool = _setup()
    ids = list(ARTICLES)[:10]
    _collect([pool.body(m) for m in ids])
    reactor.flush()
    stats = pool.stats
    assert stats.articles == 10 and stats.bytes == sum(len(ARTICLES[m]) for m in ids)
    assert stats.peak_connections <= 3 and stats.current_connections == pool.connections_open
    assert stats.avg_speed > 0


def test_cancelled_request_is_skipped():
    """A request cancelled while queued is never sent."""
    reactor, server, pool = _setup(max_connections=1, depth=1)
    first, second = pool.body("a1@test"), pool.body("a2@test")
    second.addErrback(lambda f: None)
    second.cancel()
    reactor.flush()
    assert first.called and server.commands["BODY"] == 1


def test_close_quits_connections_and_fails_queue():
    """close() fails queued requests at once, lets the one in flight finish, QUITs."""
    reactor, server, pool = _setup(max_connections=1, depth=1)
    _collect([pool.body("a1@test")])
    reactor.flush()
    results = _collect([pool.body("a2@test"), pool.body("a3@test")])
    assert pool.queued == 1  # a2 is on the one connection, a3 waits for it
    closed = pool.close()
    assert results[1].check(ProviderUnavailable) and "pool closed" in str(results[1].value)
    reactor.flush()
    assert results[0] == ARTICLES["a2@test"]
    assert closed.called and server.current_connections == 0
    assert server.commands["BODY"] == 2 and server.commands["QUIT"] == 1
    assert not pool.enabled


def test_disabled_in_config():
    """A provider disabled in the configuration refuses requests."""
    _, _, pool = _setup(enabled=False)
    results = _collect([pool.body("a1@test")])
    assert results[0].check(ProviderUnavailable) and "configuration" in pool.disabled_reason


@pytest.mark.parametrize("depth", [1, 4])
def test_requests_spread_over_connections(depth):
    """Requests go to the least busy connection, so every connection gets work."""
    reactor, server, pool = _setup(max_connections=3, depth=depth)
    _collect([pool.body(m) for m in list(ARTICLES)[: 3 * depth]])
    assert pool.connections_connecting == 3
    reactor.flush()
    assert server.connections_total == 3


def test_date_probe_uses_a_pooled_connection():
    """A DATE probe runs on the pool's connections, so it never exceeds max_connections."""
    reactor, server, pool = _setup(max_connections=1, depth=1)
    results = _collect([pool.body(m) for m in list(ARTICLES)[:3]] + [pool.date()])
    reactor.flush()
    assert server.peak_connections == 1 and server.connections_total == 1
    assert isinstance(results[-1], float) and results[-1] >= 0
    assert server.commands.get("DATE") == 1
    assert pool.stats.articles_missing == 0


def test_hold_slot_counts_the_pools_own_and_lent_slots():
    """No slot is lent while open connections plus earlier loans fill max_connections."""
    reactor, server, pool = _setup(max_connections=2, depth=1)
    _collect([pool.body(m) for m in list(ARTICLES)[:2]])
    reactor.flush()
    assert pool.connections_open == 2 and pool.hold_slot() is None
    _, _, empty = _setup(max_connections=2)
    first, second = empty.hold_slot(), empty.hold_slot()
    assert first is not None and second is not None and empty.hold_slot() is None
    first()
    assert empty.hold_slot() is not None
