"""The one authentication module (altmount.web.auth) as every resource of a real site uses it:
WebDAV, the REST routes, the upload route, the SABnzbd API and the UI login, over
Twisted's HTTP channel on a StringTransport; the rate limit, CSRF and per-resource tokens."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.test.requesthelper import DummyRequest

from altmount.config import Config, WebDAVConfig
from altmount.queue.model import QueueItem, State, resolve_priority
from altmount.web.api import build_api_resources
from altmount.web.auth import (
    Authenticator,
    LoginLimiter,
    Outcome,
    client_key,
    credentials_ok,
    exposure_problem,
)
from altmount.web.opsapi import OpsRoutes, Route
from altmount.web.site import build_site

KEY = "0123456789abcdef0123456789abcdef"
BOUNDARY = b"----------------------------abcdef0123456789"
NZB = b'<?xml version="1.0"?><nzb xmlns="http://www.newzbin.com/DTD/2003/nzb"></nzb>'


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


GOOD = basic("usenet", "s3cret")


class Queue:
    """The part of QueueService the API resources use: the key and `add`."""

    def __init__(self) -> None:
        self.added: list[str] = []

    def api_key(self, override: str | None = None) -> defer.Deferred:
        return defer.succeed(KEY)

    def add(self, nzb, name, category=None, priority=None, source="api", paused=False):
        self.added.append(name)
        item = QueueItem(
            len(self.added), "SABnzbd_nzo_x", name, "Default", resolve_priority(None, 0)[0],
            State.PENDING, 0, "", 1.0,
            1.0, None, None, "", 0, source,
        )  # fmt: skip
        return defer.succeed(item)

    processing_paused = False


class EmptyStore:
    """A metadata store with nothing in it (every path is 404: past auth, nothing found)."""

    def stat(self, path):
        return None

    def listdir(self, path):
        return []


class Engine:
    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor


class Rig:
    """A site with every kind of resource, one Authenticator on a fake clock."""

    def __init__(self, user: str = "usenet", password: str = "s3cret", **webdav: Any) -> None:
        self.reactor = MemoryReactorClock()
        config = Config(webdav=WebDAVConfig(user=user, password=password, **webdav))
        config = dataclasses.replace(
            config, sabnzbd=dataclasses.replace(config.sabnzbd, enabled=True)
        )
        self.queue = Queue()
        self.auth = Authenticator(config, self.queue.api_key, clock=self.reactor.seconds)
        routes = OpsRoutes(
            config,
            [
                Route((b"GET",), "/api/ping", lambda request: {"pong": True}),
                Route((b"POST",), "/api/poke", lambda request: {"poked": True}),
            ],
            auth=self.auth,
        )
        resources = build_api_resources(config, self.queue, Engine(self.reactor), routes)
        self.site = build_site(
            config, EmptyStore(), None, extra_resources=resources, reactor=self.reactor
        )
        self.site.timeOut = None

    def call(
        self,
        method: bytes,
        path: bytes,
        headers: dict[bytes, bytes] | None = None,
        body: bytes = b"",
        source: str = "127.0.0.1",
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        protocol = self.site.buildProtocol(IPv4Address("TCP", source, 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", source, 40000))
        protocol.makeConnection(transport)
        lines = [method + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1:8080"]
        lines += [name + b": " + value for name, value in (headers or {}).items()]
        if body:
            lines.append(b"Content-Length: %d" % len(body))
        protocol.dataReceived(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        raw = transport.value()
        head, _, content = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ")[1])
        found = dict(re.findall(rb"\r\n([^:\r\n]+): ([^\r\n]*)", head))
        protocol.connectionLost(None)
        return status, {k.lower(): v for k, v in found.items()}, content

    def connect(self, source: str = "127.0.0.1") -> tuple[Any, StringTransport]:
        """A connection from `source`, nothing sent yet."""
        protocol = self.site.buildProtocol(IPv4Address("TCP", source, 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", source, 40000))
        protocol.makeConnection(transport)
        return protocol, transport

    def upload(self, headers: dict[bytes, bytes], source: str = "127.0.0.1") -> int:
        body = (
            b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; '
            b'filename="x.nzb"\r\n\r\n' + NZB + b"\r\n--" + BOUNDARY + b"--\r\n"
        )
        content_type = {b"Content-Type": b"multipart/form-data; boundary=" + BOUNDARY}
        return self.call(b"POST", b"/api/queue/upload", {**content_type, **headers}, body, source)[
            0
        ]

    def sab(self, query: bytes, source: str = "127.0.0.1") -> tuple[int, Any]:
        status, _, body = self.call(b"GET", b"/sabnzbd/api?output=json&" + query, source=source)
        return status, json.loads(body)


# Basic credentials


def test_right_credentials_pass():
    """The configured user and password are accepted, in any case of the scheme name."""
    assert credentials_ok(GOOD, "usenet", "s3cret")
    assert credentials_ok(GOOD.replace(b"Basic", b"bAsIc"), "usenet", "s3cret")
    assert credentials_ok(basic("\u00fcser", "a:b:\u00e9"), "\u00fcser", "a:b:\u00e9")


@pytest.mark.parametrize(
    "header",
    [
        None,
        b"",
        b"Basic",
        b"Bearer abc",
        b"Basic !!!notbase64",
        b"Basic " + base64.b64encode(b"usenet"),
        basic("usenet", "wrong"),
        basic("other", "s3cret"),
        basic("usenet", ""),
    ],
)
def test_wrong_or_malformed_credentials_fail(header):
    """Missing, malformed, other-scheme or wrong credentials are refused."""
    assert not credentials_ok(header, "usenet", "s3cret")


# One verdict for every resource


def test_every_resource_refuses_and_admits_alike():
    """WebDAV, REST, upload and the SABnzbd API: no or wrong credentials refused, right admitted."""
    rig = Rig()
    wrong = {b"Authorization": basic("usenet", "nope")}
    for headers, expected in (({}, 401), (wrong, 401), ({b"Authorization": GOOD}, None)):
        dav = rig.call(b"PROPFIND", b"/", {**headers, b"Depth": b"0"})[0]
        rest = rig.call(b"GET", b"/api/ping", headers)[0]
        upload = rig.upload(headers)
        if expected is None:
            assert (dav, rest, upload) == (404, 200, 201)
        else:
            assert (dav, rest, upload) == (expected,) * 3
    assert rig.call(b"GET", b"/api/ping", {b"X-Api-Key": KEY.encode()})[0] == 200
    assert rig.call(b"GET", b"/api/ping", {b"X-Api-Key": b"bad"})[0] == 401
    assert rig.sab(b"mode=queue")[1]["error"] == "API Key Required"
    assert rig.sab(b"mode=queue&apikey=bad")[1]["error"] == "API Key Incorrect"
    assert "categories" in rig.sab(b"mode=get_cats&apikey=" + KEY.encode())[1]
    assert "categories" in rig.sab(b"mode=get_cats&ma_username=usenet&ma_password=s3cret")[1]


def test_auth_off_a_wrong_key_is_refused_on_every_route():
    """With no WebDAV login, requests without credentials pass, a wrong API key fails on every
    REST route alike, and the SABnzbd API still wants its key."""
    rig = Rig(user="", password="")
    assert rig.call(b"GET", b"/api/ping")[0] == 200
    assert rig.upload({}) == 201
    assert rig.call(b"PROPFIND", b"/", {b"Depth": b"0", b"Authorization": GOOD})[0] == 404
    bad = {b"X-Api-Key": b"bad"}
    assert (rig.call(b"GET", b"/api/ping", bad)[0], rig.upload(bad)) == (401, 401)
    assert rig.sab(b"mode=queue")[1]["error"] == "API Key Required"
    assert rig.sab(b"mode=queue&ma_username=a&ma_password=b")[1]["error"] == "API Key Required"


# Rate limiting per address and credential


def test_bad_client_never_locks_out_a_good_one_on_its_address():
    """A client with a stale password and one with a stale key, on 127.0.0.5, get 429 after
    ten tries each; right credentials from that address keep working throughout."""
    rig = Rig()
    source = "127.0.0.5"
    stale = {b"Authorization": basic("usenet", "old-password")}
    codes = [rig.call(b"GET", b"/api/ping", stale, source=source)[0] for _ in range(12)]
    assert codes == [401] * 10 + [429] * 2
    status, headers, _ = rig.call(b"PROPFIND", b"/", {**stale, b"Depth": b"0"}, source=source)
    assert status == 429 and int(headers[b"retry-after"]) > 0
    errors = [rig.sab(b"mode=queue&apikey=stale", source)[1]["error"] for _ in range(11)]
    assert errors[:10] == ["API Key Incorrect"] * 10
    assert rig.sab(b"mode=queue&apikey=stale", source)[0] == 429
    good = {b"Authorization": GOOD, b"Depth": b"0"}
    assert rig.call(b"PROPFIND", b"/", good, source=source)[0] == 404
    assert rig.call(b"GET", b"/api/ping", {b"X-Api-Key": KEY.encode()}, source=source)[0] == 200
    assert "categories" in rig.sab(b"mode=get_cats&apikey=" + KEY.encode(), source)[1]


def test_sabnzbd_key_failures_counted_apart():
    """Ten wrong SABnzbd keys leave the address's password attempts untouched."""
    rig = Rig()
    for i in range(12):
        rig.sab(b"mode=queue&apikey=guess%d" % i, "127.0.0.6")
    wrong = {b"Authorization": basic("usenet", "typo")}
    assert rig.call(b"GET", b"/api/ping", wrong, source="127.0.0.6")[0] == 401


def test_guessing_blocks_new_credentials_but_not_known_good_ones():
    """Ten different wrong passwords from one address: further new ones get 429 unchecked,
    the login that worked there before still works, other addresses are untouched, and
    the block ends with the window."""
    rig = Rig()
    source = "127.0.0.7"
    assert rig.call(b"GET", b"/api/ping", {b"Authorization": GOOD}, source=source)[0] == 200
    for i in range(10):
        guess = {b"Authorization": basic("usenet", f"guess{i}")}
        assert rig.call(b"GET", b"/api/ping", guess, source=source)[0] == 401
    another = {b"Authorization": basic("usenet", "guess-next")}
    assert rig.call(b"GET", b"/api/ping", another, source=source)[0] == 429
    assert rig.call(b"GET", b"/api/ping", {b"Authorization": GOOD}, source=source)[0] == 200
    assert rig.call(b"GET", b"/api/ping", another, source="127.0.0.8")[0] == 401
    rig.reactor.advance(61)
    assert rig.call(b"GET", b"/api/ping", another, source=source)[0] == 401


def test_ui_login_failures_are_rate_limited():
    """Wrong UI logins count like wrong Basic credentials: the eleventh is 429."""
    rig = Rig()
    body = json.dumps({"user": "usenet", "password": "wrong"}).encode()
    headers = {b"Content-Type": b"application/json"}
    codes = [rig.call(b"POST", b"/ui/api/login", headers, body)[0] for _ in range(11)]
    assert codes == [401] * 10 + [429]
    right = json.dumps({"user": "usenet", "password": "s3cret"}).encode()
    assert rig.call(b"POST", b"/ui/api/login", headers, right)[0] == 200


def test_limiter_memory_is_bounded():
    """A flood of addresses keeps at most max_clients of them."""
    limiter = LoginLimiter(lambda: 0.0, max_clients=100)
    for i in range(5000):
        limiter.failed(f"10.0.{i >> 8}.{i & 255}", "BASIC", b"x")
    assert len(limiter) <= 100


def test_ipv6_counted_per_64():
    """IPv6 addresses of one /64 share a counter; IPv4-mapped ones count as IPv4."""
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1234")
    assert client_key("2001:db8::1") != client_key("2001:db8:0:1::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"


# CSRF


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({b"Origin": b"http://evil.example"}, 403),
        ({b"Referer": b"http://evil.example/page.html"}, 403),
        ({b"Origin": b"null"}, 403),
        ({b"Origin": b"http://127.0.0.1:8081"}, 403),
        ({b"Origin": b"http://127.0.0.1:8080"}, 201),
        ({b"Referer": b"http://127.0.0.1:8080/ui/"}, 201),
        ({b"Origin": b"https://altmount.example", b"X-Forwarded-Host": b"altmount.example"}, 201),
        ({}, 201),
    ],
)
def test_cross_site_post_with_basic_credentials_is_refused(headers, status):
    """A multipart upload carrying Basic credentials is refused when Origin (or Referer) names
    another site, and accepted from our own pages or from clients sending neither."""
    rig = Rig()
    assert rig.upload({b"Authorization": GOOD, **headers}) == status
    assert len(rig.queue.added) == (1 if status == 201 else 0)


def test_cross_site_post_refused_with_auth_off_too():
    """With auth off, another site's page cannot post to the server either."""
    rig = Rig(user="", password="")
    assert rig.upload({b"Origin": b"http://evil.example"}) == 403
    assert rig.call(b"GET", b"/api/ping", {b"Origin": b"http://evil.example"})[0] == 200


def test_cross_site_webdav_change_refused_reads_allowed():
    """WebDAV DELETE/MOVE with Basic credentials from another site's page are 403; a
    PROPFIND from it (a read) is not refused."""
    rig = Rig()
    evil = {b"Authorization": GOOD, b"Origin": b"http://evil.example"}
    assert rig.call(b"DELETE", b"/complete/x.mkv", evil)[0] == 403
    assert rig.call(b"MOVE", b"/complete/x.mkv", evil)[0] == 403
    assert rig.call(b"PROPFIND", b"/complete/", {**evil, b"Depth": b"0"})[0] == 404


def test_api_key_post_is_not_subject_to_origin():
    """A request authenticated by the API key (which no other site knows) is let in."""
    rig = Rig()
    assert rig.upload({b"X-Api-Key": KEY.encode(), b"Origin": b"http://evil.example"}) == 201


# A resource's own token


def test_check_token_compares_and_limits():
    """check_token grants the right token, refuses a wrong one, and rate-limits its repeats."""
    rig = Rig()
    request = DummyRequest([b""])
    request.client = IPv4Address("TCP", "127.0.0.9", 1)
    assert rig.auth.check_token(request, b"tok", b"tok").outcome is Outcome.GRANTED
    assert rig.auth.check_token(request, None, b"tok").outcome is Outcome.MISSING
    outcomes = [rig.auth.check_token(request, b"bad", b"tok").outcome for _ in range(11)]
    assert outcomes == [Outcome.WRONG] * 10 + [Outcome.LIMITED]
    assert rig.auth.check_token(request, b"tok", b"tok").outcome is Outcome.GRANTED


# Request bodies and connections


def _head(length: int, *headers: bytes) -> bytes:
    lines = [b"POST /api/queue/upload HTTP/1.1", b"Host: 127.0.0.1:8080", *headers]
    return b"\r\n".join(lines + [b"Content-Length: %d" % length]) + b"\r\n\r\n"


def test_trickled_body_is_cut_at_the_deadline():
    """A body still incomplete 30 s after its head is answered 408 and its connection closed."""
    rig = Rig()
    protocol, transport = rig.connect()
    protocol.dataReceived(_head(100, b"Authorization: " + GOOD) + b"x" * 10)
    for _ in range(29):
        rig.reactor.advance(1)
        protocol.dataReceived(b"x")
    assert transport.value() == b"" and not transport.disconnecting
    rig.reactor.advance(1.1)
    assert transport.value().startswith(b"HTTP/1.1 408 ") and transport.disconnecting


def test_a_body_that_arrives_in_time_is_served():
    """The deadline is cancelled once the body is complete: no 408 later."""
    rig = Rig()
    protocol, transport = rig.connect()
    protocol.dataReceived(_head(5, b"Authorization: " + GOOD) + b"12345")
    rig.reactor.advance(60)
    assert b" 408 " not in transport.value() and transport.value().startswith(b"HTTP/1.1 400 ")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ((), 401),
        ((b"Authorization: " + basic("usenet", "wrong"),), 401),
        ((b"Authorization: " + GOOD, b"Origin: http://evil.example"), 403),
    ],
)
def test_large_body_refused_before_it_is_read(headers, status):
    """A 10 MB body whose head has no right credentials is refused at once, nothing read."""
    rig = Rig()
    protocol, transport = rig.connect()
    protocol.dataReceived(_head(10_000_000, *headers))
    assert transport.value().startswith(b"HTTP/1.1 %d " % status) and transport.disconnecting


def test_refused_body_gets_no_100_continue():
    """A client asking `Expect: 100-continue` for a refused body gets the 401 alone."""
    rig = Rig()
    protocol, transport = rig.connect()
    protocol.dataReceived(_head(10_000_000, b"Expect: 100-continue"))
    assert transport.value().startswith(b"HTTP/1.1 401 ") and b"100 Continue" not in transport.value()


def test_large_body_with_credentials_in_the_head_is_read():
    """With the right key in the head, a large body is awaited (no answer, connection open)."""
    rig = Rig()
    rig.auth.load_key()
    protocol, transport = rig.connect()
    protocol.dataReceived(_head(10_000_000, b"X-Api-Key: " + KEY.encode()) + b"x" * 100_000)
    assert transport.value() == b"" and not transport.disconnecting


def test_connections_capped_per_address_and_in_total():
    """Past the per-address cap an address gets 503 while others connect; past the total
    cap everyone does; a closed connection frees its place."""
    rig = Rig(max_connections=5, max_connections_per_address=3)
    first = [rig.connect("10.0.0.1") for _ in range(3)]
    _, refused = rig.connect("10.0.0.1")
    assert refused.value().startswith(b"HTTP/1.1 503 ") and refused.disconnecting
    assert b"webdav.max_connections_per_address" in refused.value()
    others = [rig.connect("10.0.0.2") for _ in range(2)]
    assert all(t.value() == b"" for _, t in first + others)
    _, full = rig.connect("10.0.0.3")
    assert full.value().startswith(b"HTTP/1.1 503 ") and b"webdav.max_connections" in full.value()
    first[0][0].connectionLost(None)
    _, admitted = rig.connect("10.0.0.1")
    assert admitted.value() == b"" and not admitted.disconnecting


# Exposure at start


@pytest.mark.parametrize(
    ("bind", "user", "password", "refused"),
    [
        ("0.0.0.0", "usenet", "usenet", True),
        ("", "usenet", "usenet", True),
        ("::", "usenet", "usenet", True),
        ("192.168.1.10", "usenet", "usenet", True),
        ("127.0.0.1", "usenet", "usenet", False),
        ("::1", "usenet", "usenet", False),
        ("localhost", "usenet", "usenet", False),
        ("0.0.0.0", "usenet", "a-real-secret", False),
    ],
)
def test_built_in_login_refused_off_loopback(bind, user, password, refused):
    """The built-in usenet:usenet login is refused on any non-loopback address, naming the keys."""
    problem = exposure_problem(WebDAVConfig(bind_address=bind, user=user, password=password))
    assert (problem is not None) == refused
    if refused:
        assert "webdav.user" in problem and "webdav.password" in problem


def test_default_bind_is_loopback():
    """A config that sets no bind_address listens on 127.0.0.1."""
    assert WebDAVConfig().bind_address == "127.0.0.1"


def test_serve_refuses_the_built_in_login_on_all_addresses(tmp_path):
    """`altmount serve` (and `config check`) on 0.0.0.0 with no login configured exit at once,
    naming the keys."""
    from click.testing import CliRunner

    from altmount.cli import cli

    config = tmp_path / "config.yaml"
    config.write_text("webdav:\n  bind_address: 0.0.0.0\nmetadata:\n  root_path: ./meta\n")
    for command in (["serve"], ["config", "check"]):
        result = CliRunner().invoke(cli, [*command, "--config", str(config)])
        assert result.exit_code != 0, command
        assert "webdav.user" in result.output and "webdav.password" in result.output


def test_basic_without_colon_never_matches():
    """`Basic base64(user)` (no colon) is refused even when the password is empty."""
    rig = Rig(user="usenet", password="")
    lone = {b"Authorization": b"Basic " + base64.b64encode(b"usenet")}
    assert rig.call(b"GET", b"/api/ping", lone)[0] == 401
    pair = {b"Authorization": b"Basic " + base64.b64encode(b"usenet:")}
    assert rig.call(b"GET", b"/api/ping", pair)[0] == 200
