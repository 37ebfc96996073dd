"""The pipelined NNTP client protocol, driven through StringTransport and a fake clock."""

from __future__ import annotations

import ssl

import pytest
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from altmount.config import NNTPConfig, ProviderConfig
from altmount.errors import (
    ArticleNotFound,
    NNTPAuthExpired,
    NNTPConnectionLost,
    NNTPProtocolError,
    NNTPServiceUnavailable,
    NNTPTimeout,
    ProviderAuthError,
    ProviderUnavailable,
)
from altmount.nntp.client import NNTPClientProtocol, connect
from altmount.nntp.tls import provider_tls

PROVIDER = ProviderConfig(
    name="news.test", host="news.test", port=119, tls=False, inflight_requests=3
)
NNTP = NNTPConfig(request_timeout_seconds=5, connect_timeout_seconds=2)


def _client(provider=PROVIDER, greeting=b"200 ready\r\n"):
    clock = MemoryReactorClock()
    proto = NNTPClientProtocol(clock, provider, NNTP)
    transport = StringTransport()
    proto.makeConnection(transport)
    if greeting:
        proto.dataReceived(greeting)
    return proto, transport, clock


def _sent(transport: StringTransport) -> bytes:
    data = transport.value()
    transport.clear()
    return data


def test_ready_after_greeting_without_credentials():
    """A 200 greeting and no user name make the connection ready at once."""
    proto, transport, _ = _client()
    assert proto.ready.called and proto.usable
    assert transport.value() == b""


def test_login_success():
    """AUTHINFO USER then PASS, and 281 makes the connection ready."""
    provider = ProviderConfig(name="p", host="h", username="u", password="secret pw", tls=False)
    proto, transport, _ = _client(provider)
    assert _sent(transport) == b"AUTHINFO USER u\r\n"
    proto.dataReceived(b"381 more\r\n")
    assert _sent(transport) == b"AUTHINFO PASS secret pw\r\n"
    assert not proto.ready.called
    proto.dataReceived(b"281 ok\r\n")
    assert proto.usable


def test_login_481_is_auth_error_naming_provider():
    """481 to AUTHINFO PASS fails login with ProviderAuthError naming the provider."""
    provider = ProviderConfig(name="p1", host="h", username="u", password="x", tls=False)
    proto, transport, _ = _client(provider)
    errors = []
    proto.ready.addErrback(errors.append)
    proto.dataReceived(b"381 more\r\n481 Authentication failed\r\n")
    assert errors[0].check(ProviderAuthError)
    assert str(errors[0].value) == "provider p1: 481 authentication failed: Authentication failed"
    assert transport.disconnecting or transport.value().endswith(b"PASS x\r\n")
    assert proto.closed.called


@pytest.mark.parametrize("greeting", [b"400 too busy\r\n", b"502 too many connections\r\n"])
def test_refusing_greeting_is_unavailable(greeting):
    """A 400/502 greeting fails login with ProviderUnavailable quoting the server."""
    proto, _, _ = _client(greeting=greeting)
    errors = []
    proto.ready.addErrback(errors.append)
    assert errors[0].check(ProviderUnavailable)
    assert greeting[4:-2].decode() in str(errors[0].value)


def test_pipelining_writes_ahead_and_matches_fifo():
    """Up to inflight_requests commands go out before any answer; answers match in order."""
    proto, transport, _ = _client()
    results = [proto.body(f"m{i}@x") for i in range(5)]
    assert _sent(transport) == b"BODY <m0@x>\r\nBODY <m1@x>\r\nBODY <m2@x>\r\n"
    got = []
    for d in results:
        d.addBoth(got.append)
    proto.dataReceived(b"222 0 <m0@x>\r\nzero\r\n.\r\n430 nope\r\n")
    assert _sent(transport) == b"BODY <m3@x>\r\nBODY <m4@x>\r\n"
    proto.dataReceived(b"222 0 <m2@x>\r\ntwo\r\n.\r\n222 0\r\n.\r\n222 0\r\nfour\r\n.\r\n")
    assert got[0] == b"zero\r\n"
    assert got[1].check(ArticleNotFound) and got[1].value.message_id == "m1@x"
    assert got[2:] == [b"two\r\n", b"", b"four\r\n"]
    assert proto.in_flight == 0


def test_stat_head_date():
    """STAT answers True/False, HEAD returns the header block, DATE the stamp."""
    proto, transport, _ = _client()
    got = []
    for d in (proto.stat("a@x"), proto.stat("b@x"), proto.head("a@x")):
        d.addCallback(got.append)
    proto.dataReceived(b"223 0 <a@x>\r\n430 no\r\n221 0 <a@x>\r\nSubject: s\r\n.\r\n")
    proto.date().addCallback(got.append)
    proto.dataReceived(b"111 20240102030405\r\n")
    assert got == [True, False, b"Subject: s\r\n", "20240102030405"]
    assert _sent(transport).endswith(b"DATE\r\n")


def test_timeout_fails_head_and_drops_the_rest():
    """A silent server: the head request times out, the others fail as connection lost."""
    proto, transport, clock = _client()
    results = [proto.body(f"m{i}@x") for i in range(4)]
    got = []
    for d in results:
        d.addErrback(got.append)
    clock.advance(4.9)
    assert got == []
    clock.advance(0.2)
    assert got[0].check(NNTPTimeout)
    assert all(f.check(NNTPConnectionLost) for f in got[1:]) and len(got) == 4
    assert transport.disconnecting and proto.closed.called and not proto.usable


def test_timeout_measures_only_the_head():
    """The second request's clock starts when the first is answered, not when sent."""
    proto, _, clock = _client()
    first, second = proto.body("a@x"), proto.body("b@x")
    got = []
    second.addBoth(got.append)
    clock.advance(4)
    proto.dataReceived(b"222 0\r\nbody\r\n.\r\n")
    clock.advance(4)
    assert got == [] and first.called
    clock.advance(1.1)
    assert got[0].check(NNTPTimeout)


def test_connection_lost_mid_body_fails_every_request():
    """Losing the connection in a body fails it and all behind it with NNTPConnectionLost."""
    proto, _, _ = _client()
    results = [proto.body(f"m{i}@x") for i in range(3)]
    got = []
    for d in results:
        d.addErrback(got.append)
    proto.dataReceived(b"222 0\r\nhalf of a bo")
    proto.connectionLost(Failure(ConnectionDone()))
    assert len(got) == 3 and all(f.check(NNTPConnectionLost) for f in got)
    assert proto.disconnected.called
    failed = []
    proto.body("late@x").addErrback(failed.append)
    assert failed[0].check(NNTPConnectionLost)


def test_garbage_response_drops_connection():
    """A garbage status line fails the request with NNTPProtocolError."""
    proto, transport, _ = _client()
    got = []
    proto.body("a@x").addErrback(got.append)
    proto.dataReceived(b"garbage\r\n")
    assert got[0].check(NNTPProtocolError) and transport.disconnecting


def test_mid_session_480_is_auth_error():
    """480 to BODY (credentials needed but none configured) is ProviderAuthError."""
    proto, _, _ = _client()
    got = []
    proto.body("a@x").addErrback(got.append)
    proto.dataReceived(b"480 auth required\r\n")
    assert got[0].check(ProviderAuthError) and "set username" in str(got[0].value)


def _logged_in():
    provider = ProviderConfig(name="p", host="h", username="u", password="pw", tls=False)
    proto, transport, clock = _client(provider)
    proto.dataReceived(b"381 more\r\n281 ok\r\n")
    transport.clear()
    return proto, transport


def test_mid_session_480_with_credentials_drops_the_session_for_a_new_login():
    """480 to BODY on a logged-in connection is NNTPAuthExpired (the pool logs in again on
    a fresh connection); the request pipelined behind it fails the same way, unsent again."""
    proto, transport = _logged_in()
    got = []
    proto.body("a@x").addErrback(got.append)
    proto.body("b@x").addErrback(got.append)
    proto.dataReceived(b"480 auth required\r\n")
    assert [f.check(NNTPAuthExpired) for f in got] == [NNTPAuthExpired] * 2
    assert not proto.usable and transport.disconnecting


@pytest.mark.parametrize("reply", [b"400 busy, try later\r\n", b"502 too many users\r\n"])
def test_mid_session_400_502_is_service_unavailable(reply):
    """400/502 to BODY during a session is NNTPServiceUnavailable (reconnect with backoff),
    never ProviderAuthError (which would disable the provider)."""
    proto, transport = _logged_in()
    got = []
    proto.body("a@x").addErrback(got.append)
    proto.dataReceived(reply)
    assert got[0].check(NNTPServiceUnavailable) and not got[0].check(ProviderAuthError)
    assert reply[:3].decode() in str(got[0].value) and transport.disconnecting


def test_quit_sends_quit_and_fires_when_gone():
    """quit() sends QUIT, refuses new work, and fires once the transport is gone."""
    proto, transport, _ = _client()
    done = proto.quit()
    assert _sent(transport) == b"QUIT\r\n" and not proto.usable
    proto.dataReceived(b"205 bye\r\n")
    assert not done.called
    proto.connectionLost(Failure(ConnectionDone()))
    assert done.called


def test_connect_plain_uses_connect_tcp():
    """tls: false connects with plain TCP through the given reactor."""
    reactor = MemoryReactorClock()
    connect(reactor, PROVIDER, NNTP)
    assert reactor.tcpClients[0][:2] == ("news.test", 119) and not reactor.sslClients


def test_provider_tls_verifies_by_default():
    """tls: true verifies the peer and its host name unless insecure_tls is set."""
    verified = provider_tls(ProviderConfig(host="secure.test", port=563))
    lax = provider_tls(ProviderConfig(host="lax.test", port=563, insecure_tls=True))
    assert verified.context.verify_mode == ssl.CERT_REQUIRED and verified.context.check_hostname
    assert lax.context.verify_mode == ssl.CERT_NONE and not lax.context.check_hostname
    assert verified.server_hostname == "secure.test"
    assert verified.context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_connect_timeout_without_login():
    """No login within connect_timeout fails the connect with NNTPTimeout."""
    reactor = MemoryReactorClock()
    got = []
    connect(reactor, PROVIDER, NNTP).addErrback(got.append)
    factory = reactor.tcpClients[0][2]
    proto = factory.buildProtocol(None)
    proto.makeConnection(StringTransport())
    reactor.advance(2.1)
    assert got[0].check(NNTPTimeout)


def test_connect_refused_names_host_and_port():
    """A refused TCP connect fails with ProviderUnavailable naming host and port."""
    reactor = MemoryReactorClock()
    got = []
    connect(reactor, PROVIDER, NNTP).addErrback(got.append)
    reactor.tcpClients[0][2].clientConnectionFailed(None, Failure(ConnectionRefusedError()))
    assert got[0].check(ProviderUnavailable) and "news.test:119" in str(got[0].value)
    assert not reactor.getDelayedCalls()
