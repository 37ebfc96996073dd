"""Login rate limiting, constant-time credential checks, and the addurl time limit."""

from __future__ import annotations

import base64
import hmac
from typing import Any

import pytest
from twisted.internet import defer, task
from twisted.internet.testing import MemoryReactorClock
from twisted.web.test.requesthelper import DummyRequest

from altmount.errors import RequestError
from altmount.web import auth
from altmount.web.addurl import NZBDownloader
from altmount.web.auth import LoginLimiter, client_key, credentials_ok


def test_limit_reached_after_ten_failures() -> None:
    """Ten failures in the window block the client; Retry-After counts down to the oldest expiry."""
    clock = task.Clock()
    limiter = LoginLimiter(clock.seconds)
    for _ in range(9):
        limiter.failed("1.2.3.4")
        clock.advance(1)
    assert limiter.retry_after("1.2.3.4") == 0
    limiter.failed("1.2.3.4")
    assert limiter.retry_after("1.2.3.4") == pytest.approx(51)
    clock.advance(51)
    assert limiter.retry_after("1.2.3.4") == 0


def test_other_clients_never_blocked() -> None:
    """One client over the limit leaves every other address at zero wait."""
    clock = task.Clock()
    limiter = LoginLimiter(clock.seconds)
    for _ in range(50):
        limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") > 0
    assert limiter.retry_after("10.0.0.2") == 0


def test_old_failures_slide_out() -> None:
    """Failures spread wider than the window never add up to a block."""
    clock = task.Clock()
    limiter = LoginLimiter(clock.seconds)
    for _ in range(100):
        limiter.failed("1.1.1.1")
        clock.advance(7)
    assert limiter.retry_after("1.1.1.1") == 0
    assert not limiter.active or len(limiter._failures) == 1


def test_tracked_clients_bounded() -> None:
    """A flood of distinct addresses keeps at most max_clients entries."""
    limiter = LoginLimiter(task.Clock().seconds, max_clients=100)
    for i in range(10_000):
        limiter.failed(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    assert len(limiter._failures) <= 100


def test_ipv6_counted_per_64() -> None:
    """IPv6 addresses of one /64 share a counter; IPv4-mapped ones count as IPv4."""
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1234")
    assert client_key("2001:db8::1") != client_key("2001:db8:0:1::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("not an address") == "not an address"


def test_no_failure_means_inactive() -> None:
    """With no failure on record the limiter reports inactive (requests skip it entirely)."""
    assert not LoginLimiter(task.Clock().seconds).active


def test_basic_auth_compares_bytes_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """credentials_ok runs hmac.compare_digest on bytes for both user and password, always."""
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    header = b"Basic " + base64.b64encode(b"wrong:pw")
    assert not credentials_ok(header, "usenet", "secret")
    assert len(calls) == 2
    assert all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in calls)


def test_no_plain_equality_on_secrets() -> None:
    """No web module compares a password, key or token with == or !=."""
    import ast
    import pathlib

    import altmount.web

    suspicious = {"password", "key", "apikey", "api_key", "token", "expected", "given", "secret"}
    found = []
    for path in pathlib.Path(altmount.web.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(
                isinstance(op, ast.Eq | ast.NotEq) for op in node.ops
            ):
                names = {
                    n.id if isinstance(n, ast.Name) else n.attr
                    for n in ast.walk(node)
                    if isinstance(n, ast.Name | ast.Attribute)
                }
                if names & suspicious:
                    found.append(f"{path.name}:{node.lineno}")
    assert not found, found


def test_addurl_connect_stall_times_out() -> None:
    """A URL whose server never accepts fails with 504 at the time limit, not later."""
    reactor = MemoryReactorClock()
    downloader = NZBDownloader(
        reactor,
        max_bytes=1 << 20,
        timeout=30,
        allow_private=True,
        resolve=lambda host, port: defer.succeed(["192.0.2.1"]),
    )
    result = downloader.fetch("http://indexer.example/get.nzb")
    failures: list[Any] = []
    result.addErrback(failures.append)
    assert reactor.tcpClients, "no connection attempted"
    reactor.advance(29.9)
    assert not failures
    reactor.advance(0.2)
    assert len(failures) == 1
    error = failures[0].value
    assert isinstance(error, RequestError) and error.http_status == 504


def test_addurl_stalled_resolver_times_out() -> None:
    """A DNS lookup that never answers is cut by the same time limit."""
    reactor = MemoryReactorClock()
    downloader = NZBDownloader(
        reactor,
        max_bytes=1 << 20,
        timeout=5,
        allow_private=False,
        resolve=lambda host, port: defer.Deferred(),
    )
    failures: list[Any] = []
    downloader.fetch("https://indexer.example/x.nzb").addErrback(failures.append)
    reactor.advance(5.1)
    assert len(failures) == 1 and failures[0].value.http_status == 504


def test_note_failed_login_without_limiter_is_harmless() -> None:
    """A resource rendered outside our site (no limiter) can still report a failure."""
    auth.note_failed_login(DummyRequest([b""]))
