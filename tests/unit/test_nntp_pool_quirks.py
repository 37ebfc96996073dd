"""Provider quirks in a session (480, 400/502, timeouts) and the pool's circuit breaker,
against the fake server on an in-memory network with a fake clock."""

from __future__ import annotations

import logging

import pytest

from altmount.config import NNTPConfig, ProviderConfig
from altmount.errors import NNTPAuthExpired, ProviderAuthError, ProviderUnavailable
from altmount.nntp.breaker import BREAKER_THRESHOLD, FIRST_PAUSE_SECONDS
from altmount.nntp.pool import ProviderPool
from altmount.nntp.stats import ProviderStats
from altmount.testing.nntpserver import Faults, MemoryNetReactor, NNTPServerFactory

ARTICLES = {f"a{i}@test": f"body {i}\r\n".encode() * 50 for i in range(40)}
NNTP = NNTPConfig(
    connect_timeout_seconds=2, request_timeout_seconds=5, idle_timeout_seconds=600, max_retries=3
)


def _setup(faults=None, max_connections=2, login=True, nntp=NNTP):
    reactor = MemoryNetReactor()
    credentials = {"username": "u", "password": "p"} if login else {}
    server = NNTPServerFactory(reactor, ARTICLES, faults, seed=1, **credentials)
    reactor.servers["news.test"] = server
    config = ProviderConfig(
        name="news",
        host="news.test",
        tls=False,
        max_connections=max_connections,
        inflight_requests=2,
        **credentials,
    )
    pool = ProviderPool(reactor, config, nntp, ProviderStats("news", reactor.seconds))
    return reactor, server, pool


def _collect(deferreds):
    results: list = [None] * len(deferreds)
    for index, d in enumerate(deferreds):
        d.addBoth(lambda result, i=index: results.__setitem__(i, result))
    return results


def _run(reactor, seconds):
    """Advance the clock in 0.1 s steps (each step's timers run before the next)."""
    for _ in range(round(seconds * 10)):
        reactor.advance(0.1)
        reactor.flush()


def test_480_in_a_session_logs_in_again_and_retries_once():
    """A session that forgets its login (480 to BODY) costs one fresh, logged-in connection:
    the request is answered, the provider stays enabled and its circuit closed."""
    reactor, server, pool = _setup(Faults(forget_login=1), max_connections=1)
    results = _collect([pool.body("a1@test")])
    reactor.flush()
    assert results == [ARTICLES["a1@test"]]
    assert server.commands["AUTHINFO"] == 4 and server.connections_total == 2
    assert pool.enabled and pool.stats.errors["reauth"] == 1
    assert pool.circuit["state"] == "closed"


def test_480_again_after_the_new_login_fails_the_request_not_the_provider():
    """Retry once: a request met by 480 on the fresh connection too fails with
    NNTPAuthExpired; the provider is not disabled and serves the next request."""
    faults = Faults(forget_login=2)
    reactor, server, pool = _setup(faults, max_connections=1)
    results = _collect([pool.body("a1@test")])
    reactor.flush()
    assert results[0].check(NNTPAuthExpired) and server.commands["BODY"] == 2
    assert pool.enabled
    _run(reactor, 1)
    later = _collect([pool.body("a2@test")])
    _run(reactor, 2)
    assert later == [ARTICLES["a2@test"]]


@pytest.mark.parametrize("code", [400, 502])
def test_400_502_in_a_session_reconnect_with_backoff(code):
    """400/502 to BODY drops that connection; the request is retried on a new connection
    after the first backoff step, and the provider stays enabled (it was disabled for
    good before)."""
    reactor, server, pool = _setup(Faults(refuse_next=1, refuse_code=code), max_connections=1)
    results = _collect([pool.body("a1@test")])
    reactor.flush()
    assert results == [None] and server.connections_total == 1
    assert pool.circuit["consecutive_failures"] == 1
    _run(reactor, 0.5)
    assert results == [ARTICLES["a1@test"]] and server.connections_total == 2
    assert pool.enabled and pool.stats.errors["unavailable"] == 1
    assert pool.circuit["consecutive_failures"] == 0


def test_circuit_opens_probes_half_open_and_closes(caplog):
    """After BREAKER_THRESHOLD failed rounds the circuit opens (requests fail at once, one
    warning); the half-open probe after the pause fails and the pause doubles; once the
    provider is back the next probe closes it. Never disabled."""
    caplog.set_level(logging.WARNING, logger="altmount.nntp.pool")
    reactor, server, pool = _setup(login=False)
    reactor.refused.add("news.test")
    _collect([pool.body("a1@test")])
    reactor.flush()
    _run(reactor, 0.5 + 1 + 2 + 4 + 0.1)  # failures 2..5 after the backoff steps
    assert pool.circuit["state"] == "open" and pool.circuit["consecutive_failures"] == 5
    assert pool.circuit["pause_seconds"] == FIRST_PAUSE_SECONDS and pool.enabled
    fast = _collect([pool.body("a2@test")])
    assert fast[0].check(ProviderUnavailable) and "circuit open" in str(fast[0].value)
    assert not pool.reachable
    _run(reactor, FIRST_PAUSE_SECONDS + 0.2)  # the probe goes out and is refused
    assert pool.circuit["state"] == "open" and pool.circuit["pause_seconds"] == 10
    reactor.refused.clear()
    _run(reactor, 10.2)
    assert pool.circuit["state"] == "closed" and server.commands["DATE"] == 1
    assert _collect([pool.body("a3@test")]) == [None]
    reactor.flush()
    assert pool.enabled and pool.circuit["times_opened"] == 2
    opened = [r for r in caplog.records if "circuit open" in r.getMessage()]
    assert len(opened) == 2 and any("circuit closed" in r.getMessage() for r in caplog.records)
    assert BREAKER_THRESHOLD == 5


def test_refused_login_disables_until_reenabled_by_a_reload(caplog):
    """481 at AUTHINFO disables the provider with one warning however many requests were
    waiting; reenable() (a config reload with fixed credentials) brings it back."""
    caplog.set_level(logging.WARNING, logger="altmount.nntp.pool")
    faults = Faults(auth_fail=True)
    reactor, server, pool = _setup(faults)
    results = _collect([pool.body(f"a{i}@test") for i in range(10)])
    reactor.flush()
    assert all(r.check(ProviderAuthError) for r in results) and not pool.enabled
    assert len([r for r in caplog.records if "disabled" in r.getMessage()]) == 1
    _run(reactor, 60)
    assert server.connections_total == 2  # no retries while disabled
    faults.auth_fail = False
    assert pool.reenable(pool._provider) and pool.enabled
    again = _collect([pool.body("a1@test")])
    reactor.flush()
    assert again == [ARTICLES["a1@test"]]


def test_reenable_refuses_another_server():
    """A reload that points the provider at another host is not applied to the pool."""
    reactor, _, pool = _setup(Faults(auth_fail=True))
    _collect([pool.body("a1@test")])
    reactor.flush()
    other = ProviderConfig(name="news", host="elsewhere.test", tls=False, username="u")
    assert not pool.reenable(other) and not pool.enabled


def test_open_circuit_is_degraded_in_the_health_report():
    """/api/health's provider status says degraded while the circuit is open (the provider
    is out, not this server), naming the last failure, and healthy again once it closed."""
    from types import SimpleNamespace

    from altmount.ops.health import HealthMonitor

    reactor, _, pool = _setup(login=False)
    monitor = HealthMonitor(reactor, SimpleNamespace(router=SimpleNamespace(providers=[pool])))
    reactor.refused.add("news.test")
    _collect([pool.body("a1@test")])
    reactor.flush()
    _run(reactor, 7.6)
    status, reason = monitor.provider_status(pool)
    assert status == "degraded" and reason.startswith("circuit open:") and "refused" in reason
    reactor.refused.clear()
    _run(reactor, FIRST_PAUSE_SECONDS + 0.2)
    assert monitor.provider_status(pool)[0] == "healthy"
