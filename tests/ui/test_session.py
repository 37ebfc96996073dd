"""Sessions of the web UI: the store (expiry, eviction), login/logout/session routes, the
cookie on /api and WebDAV, CSRF, and the browser redirect at the root."""

from __future__ import annotations

import base64
import json
import re

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource

from altmount.config import Config, WebDAVConfig
from altmount.web.opsapi import OpsResource, OpsRoutes, Route
from altmount.web.session import SessionStore
from altmount.web.site import build_site

BASIC = b"Basic " + base64.b64encode(b"usenet:pw")


class Clock:
    """A settable clock for the session store."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class EmptyStore:
    """A metadata store with nothing in it (every path is 404)."""

    def stat(self, path):
        return None

    def listdir(self, path):
        return []


def config(user: str = "usenet", password: str = "pw") -> Config:
    return Config(webdav=WebDAVConfig(user=user, password=password))


def site(user: str = "usenet", password: str = "pw"):
    cfg = config(user, password)
    routes = OpsRoutes(
        cfg,
        [
            Route((b"GET",), "/api/ping", lambda request: {"pong": True}),
            Route((b"POST",), "/api/poke", lambda request: {"poked": True}),
        ],
    )
    return build_site(cfg, EmptyStore(), None, extra_resources={b"api": OpsResource(routes)})


class Answer:
    """A parsed HTTP/1.1 answer."""

    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.status = int(lines[0].split()[1])
        self.headers: dict[bytes, list[bytes]] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            self.headers.setdefault(name.strip().lower(), []).append(value.strip())

    def header(self, name: bytes) -> bytes | None:
        values = self.headers.get(name)
        return values[0] if values else None

    def json(self):
        return json.loads(self.body)


def call(the_site, method: bytes, path: bytes, headers=None, body: bytes = b"") -> Answer:
    the_site.timeOut = None
    protocol = the_site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport()
    protocol.makeConnection(transport)
    lines = [method + b" " + path + b" HTTP/1.1", b"Host: localhost"]
    lines += [name + b": " + value for name, value in (headers or {}).items()]
    if body:
        lines.append(b"Content-Length: %d" % len(body))
    protocol.dataReceived(b"\r\n".join(lines) + b"\r\n\r\n" + body)
    return Answer(transport.value())


def login(
    the_site, user: bytes = b"usenet", password: bytes = b"pw"
) -> tuple[Answer, bytes, bytes]:
    """Log in; the answer, the cookie header to send back and the CSRF token."""
    body = json.dumps({"user": user.decode(), "password": password.decode()}).encode()
    answer = call(the_site, b"POST", b"/ui/api/login", {b"Content-Type": b"application/json"}, body)
    cookie = b""
    for value in answer.headers.get(b"set-cookie", []):
        found = re.match(rb"altmount_session=([^;]*)", value)
        if found:
            cookie = b"altmount_session=" + found.group(1)
    token = answer.json().get("csrf_token", "").encode() if answer.status == 200 else b""
    return answer, cookie, token


# The store


def test_store_session_lives_while_used():
    """A session used within the idle timeout stays alive past it in total."""
    clock = Clock()
    store = SessionStore(clock, idle_timeout=10, max_age=100)
    session = store.create("usenet")
    for _ in range(5):
        clock.now += 9
        assert store.get(session.token) is not None


def test_store_idle_expiry():
    """A session unused for longer than the idle timeout is gone (and removed)."""
    clock = Clock()
    store = SessionStore(clock, idle_timeout=10, max_age=100)
    session = store.create("usenet")
    clock.now += 10.5
    assert store.get(session.token) is None
    assert len(store) == 0


def test_store_max_age():
    """A session ends at max_age even when used all the time."""
    clock = Clock()
    store = SessionStore(clock, idle_timeout=10, max_age=25)
    session = store.create("usenet")
    for _ in range(2):
        clock.now += 9
        assert store.get(session.token) is not None
    clock.now += 9
    assert store.get(session.token) is None


def test_store_evicts_least_recently_used():
    """With the table full, a new session pushes out the one used longest ago."""
    clock = Clock()
    store = SessionStore(clock, max_sessions=2)
    first, second = store.create("a"), store.create("b")
    store.get(first.token)
    store.create("c")
    assert store.get(first.token) is not None
    assert store.get(second.token) is None


def test_store_delete_and_unknown_tokens():
    """delete() ends a session once; unknown or empty tokens find nothing."""
    store = SessionStore(Clock())
    session = store.create("a")
    assert store.get("nope") is None and store.get("") is None and store.get(None) is None
    assert store.delete(session.token) is True
    assert store.delete(session.token) is False
    assert store.get(session.token) is None


def test_tokens_are_unique_and_long():
    """Session and CSRF tokens are distinct random strings of 43 characters."""
    store = SessionStore(Clock())
    sessions = [store.create("a") for _ in range(50)]
    tokens = {s.token for s in sessions} | {s.csrf_token for s in sessions}
    assert len(tokens) == 100
    assert all(len(t) == 43 for t in tokens)


# Login, session, logout


def test_login_sets_a_strict_httponly_cookie():
    """A right login answers the CSRF token and sets altmount_session HttpOnly SameSite=Strict."""
    answer, cookie, token = login(site())
    assert answer.status == 200
    assert cookie and token
    set_cookie = answer.header(b"set-cookie")
    assert b"HttpOnly" in set_cookie and b"SameSite=strict" in set_cookie
    assert b"Path=/" in set_cookie and b"Secure" not in set_cookie
    assert answer.json()["user"] == "usenet"


def test_login_refuses_wrong_credentials_without_challenge():
    """A wrong password is 401 JSON with no Basic challenge and no cookie."""
    answer, cookie, _ = login(site(), password=b"wrong")
    assert answer.status == 401
    assert answer.json()["error"]["code"] == "unauthorized"
    assert b"www-authenticate" not in answer.headers and not cookie


def test_login_needs_json():
    """A form-encoded login (what a cross-site form could send) is refused with 415."""
    answer = call(
        site(),
        b"POST",
        b"/ui/api/login",
        {b"Content-Type": b"application/x-www-form-urlencoded"},
        b"user=usenet&password=pw",
    )
    assert answer.status == 415


def test_session_route_reports_login_state():
    """GET /ui/api/session says authenticated false before login and true with the cookie."""
    the_site = site()
    before = call(the_site, b"GET", b"/ui/api/session")
    assert before.status == 200 and before.json()["authenticated"] is False
    _, cookie, token = login(the_site)
    after = call(the_site, b"GET", b"/ui/api/session", {b"Cookie": cookie})
    assert after.json()["authenticated"] is True
    assert after.json()["csrf_token"] == token.decode()


def test_session_route_open_without_credentials():
    """With no user and password configured, the UI needs no login."""
    answer = call(site("", ""), b"GET", b"/ui/api/session")
    assert answer.json()["authenticated"] is True and answer.json()["auth_required"] is False


def test_logout_needs_csrf_then_ends_the_session():
    """Logout without the CSRF header is 403; with it the cookie stops working."""
    the_site = site()
    _, cookie, token = login(the_site)
    refused = call(the_site, b"POST", b"/ui/api/logout", {b"Cookie": cookie})
    assert refused.status == 403
    done = call(the_site, b"POST", b"/ui/api/logout", {b"Cookie": cookie, b"X-CSRF-Token": token})
    assert done.status == 200 and done.json()["logged_out"] is True
    assert b"Max-Age=0" in done.header(b"set-cookie")
    assert call(the_site, b"GET", b"/api/ping", {b"Cookie": cookie}).status == 401


def test_unknown_route_and_wrong_method():
    """/ui/api/other is 404 and GET /ui/api/login is 405 with Allow."""
    the_site = site()
    assert call(the_site, b"GET", b"/ui/api/other").status == 404
    wrong = call(the_site, b"GET", b"/ui/api/login")
    assert wrong.status == 405 and wrong.header(b"allow") == b"POST"


# The cookie on /api and WebDAV


def test_cookie_authorizes_api_reads():
    """A GET to /api with the session cookie is answered."""
    the_site = site()
    _, cookie, _ = login(the_site)
    answer = call(the_site, b"GET", b"/api/ping", {b"Cookie": cookie})
    assert answer.status == 200 and answer.json() == {"pong": True}


def test_cookie_post_needs_the_csrf_header():
    """A POST with the cookie but without (or with a wrong) X-CSRF-Token is refused (403)."""
    the_site = site()
    _, cookie, token = login(the_site)
    for headers in ({b"Cookie": cookie}, {b"Cookie": cookie, b"X-CSRF-Token": b"forged"}):
        answer = call(the_site, b"POST", b"/api/poke", headers)
        assert answer.status == 403
        assert "X-CSRF-Token" in answer.json()["error"]["message"]
    ok = call(the_site, b"POST", b"/api/poke", {b"Cookie": cookie, b"X-CSRF-Token": token})
    assert ok.status == 200 and ok.json() == {"poked": True}


def test_forged_cookie_is_refused():
    """A made-up session cookie authorizes nothing."""
    answer = call(site(), b"GET", b"/api/ping", {b"Cookie": b"altmount_session=made-up"})
    assert answer.status == 401


def test_ui_calls_get_no_basic_challenge():
    """A 401 to a call marked X-Requested-With: altmount-ui has no WWW-Authenticate."""
    the_site = site()
    plain = call(the_site, b"GET", b"/api/ping")
    marked = call(the_site, b"GET", b"/api/ping", {b"X-Requested-With": b"altmount-ui"})
    assert plain.header(b"www-authenticate") == b'Basic realm="altmount"'
    assert marked.status == 401 and b"www-authenticate" not in marked.headers


def test_cookie_authorizes_webdav_reads_and_csrf_guards_delete():
    """PROPFIND with the cookie passes auth (404: empty store); DELETE needs the CSRF header."""
    the_site = site()
    _, cookie, token = login(the_site)
    found = call(the_site, b"PROPFIND", b"/webdav/x", {b"Cookie": cookie, b"Depth": b"1"})
    assert found.status == 404
    refused = call(the_site, b"DELETE", b"/webdav/x", {b"Cookie": cookie})
    assert refused.status == 403
    allowed = call(the_site, b"DELETE", b"/webdav/x", {b"Cookie": cookie, b"X-CSRF-Token": token})
    assert allowed.status == 404


def test_webdav_without_credentials_still_challenges():
    """WebDAV clients without credentials still get 401 with the Basic challenge."""
    answer = call(site(), b"PROPFIND", b"/", {b"Depth": b"1"})
    assert answer.status == 401
    assert answer.header(b"www-authenticate") == b'Basic realm="altmount"'


# The root redirect


def test_browser_at_root_goes_to_the_ui():
    """GET / accepting text/html (a browser) is redirected to /ui/."""
    answer = call(site(), b"GET", b"/", {b"Accept": b"text/html,application/xhtml+xml"})
    assert answer.status == 302 and answer.header(b"location") == b"/ui/"


def test_webdav_clients_at_root_are_not_redirected():
    """PROPFIND /, GET / without text/html, GET / with Depth, and GET of a file stay WebDAV."""
    the_site = site()
    cases = [
        (b"PROPFIND", b"/", {b"Depth": b"1", b"Authorization": BASIC}),
        (b"GET", b"/", {b"Authorization": BASIC}),
        (b"GET", b"/", {b"Accept": b"text/html", b"Depth": b"0", b"Authorization": BASIC}),
        (b"GET", b"/movie.mkv", {b"Accept": b"text/html", b"Authorization": BASIC}),
    ]
    for method, path, headers in cases:
        assert call(the_site, method, path, headers).status != 302, (method, path, headers)


def test_ui_mount_can_be_replaced():
    """A caller's own b"ui" resource wins over the built-in UI."""

    class Mine(Resource):
        isLeaf = True

        def render(self, request):
            return b"mine"

    the_site = build_site(config(), EmptyStore(), None, extra_resources={b"ui": Mine()})
    assert call(the_site, b"GET", b"/ui/").body == b"mine"
