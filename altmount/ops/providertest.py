"""`GET|POST /api/providers/{name}/test`: is a provider usable, how close, how fast?

The test resolves the host, opens a fresh connection (not one of the pool's busy
ones) and logs in, times several DATE round trips, then fetches real articles
(segments of recently imported files) for a few seconds, pipelined, to measure the
download speed. The fresh connection borrows one of the pool's `max_connections`
(`pool.hold_slot()`, which counts open, connecting, draining and shed connections,
other loans and the other processes' slots); when none is free the test runs through
the pool instead (`pool.date()` and pooled BODY requests) and says so. Tests of one
provider take turns (`ProviderTests`): concurrent ones wait, none borrows a second slot.

Failures come back as data, `{"kind": dns|tcp|tls|timeout|auth|protocol|connection_lost,
"message": ...}`, never as an exception.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from twisted.internet import defer

from altmount.config import NNTPConfig, ProviderConfig
from altmount.errors import (
    ArticleNotFound,
    NNTPConnectionLost,
    NNTPError,
    NNTPTimeout,
    ProviderAuthError,
    ProviderTLSError,
    ProviderUnavailable,
)
from altmount.nntp.client import connect
from altmount.nntp.schedule import BACKGROUND_PRIORITY
from altmount.ops.meters import human_rate

__all__ = [
    "ProviderTests",
    "run_provider_test",
    "recent_message_ids",
    "RTT_ROUNDS",
    "SPEED_SECONDS",
]

log = logging.getLogger(__name__)

#: DATE round trips timed.
RTT_ROUNDS = 5
#: Seconds spent fetching articles for the speed figure.
SPEED_SECONDS = 3.0
#: Most articles fetched for the speed figure.
SPEED_ARTICLES = 200
#: Files looked at when choosing recently imported articles.
RECENT_FILES_SCANNED = 500
#: Pool priority of requests sent through the pool: background work, after streams
#: and imports (nntp/schedule.py).
TEST_PRIORITY = BACKGROUND_PRIORITY


def recent_message_ids(store: Any, limit: int = SPEED_ARTICLES) -> list[str]:
    """Message-ids of the most recently modified files' segments, newest files first."""
    files = []
    for index, record in enumerate(store.walk_files()):
        if index >= RECENT_FILES_SCANNED:
            break
        files.append((record.mtime, record.segments.message_ids))
    files.sort(key=lambda item: item[0], reverse=True)
    ids: list[str] = []
    for _, message_ids in files:
        ids.extend(message_ids[: limit - len(ids)])
        if len(ids) >= limit:
            break
    return ids


def _error_kind(error: BaseException, tls: bool) -> str:
    if isinstance(error, ProviderTLSError):
        return "tls"
    if isinstance(error, ProviderAuthError):
        return "auth"
    if isinstance(error, NNTPTimeout):
        return "timeout"
    if isinstance(error, ProviderUnavailable):
        return "tcp"
    if isinstance(error, NNTPConnectionLost):
        # Closed before the greeting was read: on TLS that is a failed handshake.
        return "tls" if tls else "connection_lost"
    return "protocol"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _Fresh:
    """Requests on our own connection."""

    via = "fresh_connection"

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def date(self) -> defer.Deferred:
        return self.conn.date().addCallback(lambda _: self.conn.last_rtt_ms)

    def body(self, message_id: str) -> defer.Deferred:
        return self.conn.body(message_id)


class _Pooled:
    """Requests through the pool, which stays within max_connections."""

    via = "pool"

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def date(self) -> defer.Deferred:
        return self.pool.date(TEST_PRIORITY)

    def body(self, message_id: str) -> defer.Deferred:
        return self.pool.body(message_id, TEST_PRIORITY)


@defer.inlineCallbacks
def run_provider_test(
    reactor: Any,
    provider: ProviderConfig,
    nntp: NNTPConfig,
    store: Any,
    pool: Any = None,
    *,
    resolve: Callable[[str], defer.Deferred] | None = None,
    speed_seconds: float = SPEED_SECONDS,
) -> Any:
    """Test `provider`; fires with the result dict (see docs/api.md), never fails."""
    name = provider.name or provider.host
    result: dict[str, Any] = {
        "provider": name,
        "host": provider.host,
        "port": provider.port,
        "tls": provider.tls,
        "ok": False,
    }
    started = reactor.seconds()
    if not _is_ip(provider.host):
        try:
            address = yield (resolve or reactor.resolve)(provider.host)
        except Exception as exc:
            result["error"] = {
                "kind": "dns",
                "message": f"provider {name}: cannot resolve {provider.host}: {exc}",
            }
            return result
        result["address"] = address
    conn = None
    # The fresh connection counts against max_connections: the pool must not fill
    # the last slot while the test holds it.
    give_back = None if pool is None else pool.hold_slot()
    if pool is not None and give_back is None:
        channel: Any = _Pooled(pool)
        result["note"] = (
            f"all {provider.max_connections} connections allowed are in use (by this "
            "process or others sharing the provider); tested through the pool instead "
            "of a fresh connection"
        )
    else:
        try:
            conn = yield connect(reactor, provider, nntp)
        except Exception as exc:
            if give_back is not None:
                give_back()
            if not isinstance(exc, NNTPError):
                raise
            result["error"] = {"kind": _error_kind(exc, provider.tls), "message": str(exc)}
            return result
        result["connect_ms"] = round((reactor.seconds() - started) * 1000, 1)
        channel = _Fresh(conn)
    result["via"] = channel.via
    try:
        rtts = []
        for _ in range(RTT_ROUNDS):
            rtt = yield channel.date()
            rtts.append(rtt)
        result["rtt_ms"] = {
            "min": round(min(rtts), 2),
            "avg": round(sum(rtts) / len(rtts), 2),
            "max": round(max(rtts), 2),
            "samples": len(rtts),
        }
        ids = recent_message_ids(store)
        if ids:
            result["download"] = yield _measure(reactor, channel, ids, provider, speed_seconds)
        else:
            result["download"] = {"skipped": "nothing to fetch: no imported files yet"}
        result["ok"] = True
    except NNTPError as exc:
        result["error"] = {"kind": _error_kind(exc, provider.tls), "message": str(exc)}
    finally:
        if conn is not None:
            yield conn.quit()
        if give_back is not None:
            give_back()
    return result


class ProviderTests:
    """Runs the tests of one provider one after another: a test asked for while another
    runs waits its turn (it would otherwise take a second slot of max_connections)."""

    def __init__(self) -> None:
        self._turns: dict[str, defer.DeferredLock] = {}

    def run(
        self,
        reactor: Any,
        provider: ProviderConfig,
        nntp: NNTPConfig,
        store: Any,
        pool: Any = None,
        **options: Any,
    ) -> defer.Deferred:
        """`run_provider_test` once the tests of this provider before it are done."""
        name = provider.name or provider.host
        turn = self._turns.setdefault(name, defer.DeferredLock())
        asked = reactor.seconds()

        def go() -> defer.Deferred:
            waited = reactor.seconds() - asked
            test = run_provider_test(reactor, provider, nntp, store, pool, **options)
            return test.addCallback(_waited, waited)

        return turn.run(go)


def _waited(result: dict[str, Any], waited: float) -> dict[str, Any]:
    result["waited_ms"] = round(waited * 1000, 1)  # behind other tests of the provider
    return result


@defer.inlineCallbacks
def _measure(
    reactor: Any, channel: Any, ids: list[str], provider: ProviderConfig, seconds: float
) -> Any:
    """Fetch `ids` pipelined until `seconds` pass or they run out; the speed figure."""
    started = reactor.seconds()
    deadline = started + seconds
    counts = {"bytes": 0, "articles": 0, "missing": 0}
    queue = iter(ids)

    @defer.inlineCallbacks
    def lane():
        for message_id in queue:
            if reactor.seconds() >= deadline:
                return
            try:
                body = yield channel.body(message_id)
            except ArticleNotFound:
                counts["missing"] += 1
                continue
            counts["bytes"] += len(body)
            counts["articles"] += 1

    lanes = [lane() for _ in range(max(1, provider.inflight_requests))]
    results = yield defer.DeferredList(lanes, consumeErrors=True)
    for ok, value in results:
        if not ok:
            value.raiseException()
    elapsed = max(reactor.seconds() - started, 1e-6)
    speed = counts["bytes"] / elapsed
    return {
        **counts,
        "seconds": round(elapsed, 3),
        "speed": speed,
        "speed_human": human_rate(speed),
    }
