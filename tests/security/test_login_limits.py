"""Constant-time credential checks and the addurl time limit (the rate limit: test_web_auth)."""

from __future__ import annotations

import base64
import hmac
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock

from altmount.errors import RequestError
from altmount.web import auth
from altmount.web.addurl import NZBDownloader
from altmount.web.auth import credentials_ok


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
