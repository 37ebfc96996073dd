"""Authentication of every HTTP resource: one `Authenticator` decides, resources only answer.

A resource says which credentials it takes (`Scheme` flags) and asks
`Authenticator.check(request, accepts)` for a `Verdict`; `refusal_headers`
and `refusal_json` turn a refusal into the answer. The schemes:

- BASIC: `Authorization: Basic` with `webdav.user` / `webdav.password` (RFC 7617);
- SESSION: the web UI's session cookie, with its CSRF token on state changes
  (`altmount.web.session`);
- API_KEY: the API key in `X-Api-Key` or the `apikey` argument;
- SAB_LOGIN: SABnzbd's `ma_username` / `ma_password` arguments (the WebDAV login);
- a resource with its own secret (a per-file token, say) calls `check_token`,
  which compares and rate-limits it the same way.

The same rules hold everywhere:

- Secrets are compared with `hmac.compare_digest` on bytes, user and password
  both, always, so timing tells nothing.
- Auth is "off" when `webdav.user` and `webdav.password` are both empty: a
  resource that takes BASIC then lets in requests without credentials (Basic
  credentials are ignored: there are none to compare). A credential that does
  exist (the API key, a token) is still checked when presented: a wrong one is
  refused everywhere. The SABnzbd API always needs its key, as SABnzbd does.
- Failed credentials are counted per client address *and* credential
  (`LoginLimiter`): the same wrong credential, tried `MAX_FAILED_LOGINS` times in
  `LOGIN_WINDOW_SECONDS`, is answered 429 without being checked; an address that
  tried `MAX_DISTINCT_FAILURES` different wrong ones (guessing) gets 429 for every
  credential it has not used successfully before. A credential that worked from
  an address keeps working there, so a stale key in one client never locks out
  another client on the same host or behind the same reverse proxy. Each scheme
  counts apart (a SABnzbd key failure never counts against a password).
- CSRF: a state-changing request (not GET, HEAD, OPTIONS, PROPFIND) let in by
  Basic credentials, or let in because auth is off, is refused (403) when its
  `Origin` (or, without one, its `Referer`) names another site than the one it
  was sent to (`Host`, or `X-Forwarded-Host` from a reverse proxy): a browser
  sends cached Basic credentials to any page's form. Clients that send neither
  header (curl, rclone, Sonarr) are not browsers and are not affected. Session
  requests carry the CSRF token instead.
"""

from __future__ import annotations

import binascii
import enum
import hashlib
import hmac
import ipaddress
import json
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.web.resource import Resource
from twisted.web.server import Request

from altmount.config import Config, WebDAVConfig
from altmount.web.origin import cross_site
from altmount.web.ratelimit import (
    LOGIN_WINDOW_SECONDS,
    MAX_DISTINCT_FAILURES,
    MAX_FAILED_LOGINS,
    LoginLimiter,
    client_key,
)
from altmount.web.session import CookieAuth, SessionStore, check_request

__all__ = [
    "REALM",
    "MAX_FAILED_LOGINS",
    "MAX_DISTINCT_FAILURES",
    "LOGIN_WINDOW_SECONDS",
    "SAFE_METHODS",
    "UI_MARKER",
    "Scheme",
    "Outcome",
    "Verdict",
    "Authenticator",
    "LoginLimiter",
    "Refusal",
    "auth_required",
    "authenticator_of",
    "client_key",
    "credentials_ok",
    "cross_site",
    "exposure_problem",
    "refusal_headers",
    "refusal_json",
]

REALM = "altmount"
#: Methods that change nothing (PROPFIND only reads; no page can send it cross-site).
SAFE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PROPFIND"})
#: The UI marks its calls with `X-Requested-With: altmount-ui`: no Basic challenge
#: for them, so the browser shows the login page instead of its password dialog.
UI_MARKER = b"altmount-ui"
#: The credentials the server ships with; refused on any address but loopback.
BUILT_IN_CREDENTIALS = ("usenet", "usenet")


class Scheme(enum.Flag):
    """Kinds of credentials a resource accepts."""

    BASIC = enum.auto()
    SESSION = enum.auto()
    API_KEY = enum.auto()
    SAB_LOGIN = enum.auto()
    TOKEN = enum.auto()  #: a resource's own secret (`Authenticator.check_token`)


#: WebDAV and the UI's own data; the REST API and /metrics; the SABnzbd API.
WEB = Scheme.BASIC | Scheme.SESSION
REST = Scheme.BASIC | Scheme.SESSION | Scheme.API_KEY
SABNZBD = Scheme.API_KEY | Scheme.SAB_LOGIN


class Outcome(enum.Enum):
    """What a request's credentials prove."""

    GRANTED = "granted"  #: right credentials
    OPEN = "open"  #: auth is off and nothing wrong was presented
    MISSING = "missing"  #: no credentials the resource takes
    WRONG = "wrong"  #: credentials presented, not right
    CSRF_TOKEN = "csrf_token"  #: a live session, but a state change without its token
    CROSS_SITE = "cross_site"  #: a state change sent by another site's page
    LIMITED = "limited"  #: too many failures with these credentials; not checked


_STATUS = {
    Outcome.MISSING: 401,
    Outcome.WRONG: 401,
    Outcome.CSRF_TOKEN: 403,
    Outcome.CROSS_SITE: 403,
    Outcome.LIMITED: 429,
}
_CODE = {
    Outcome.MISSING: "unauthorized",
    Outcome.WRONG: "unauthorized",
    Outcome.CSRF_TOKEN: "csrf",
    Outcome.CROSS_SITE: "cross_site",
    Outcome.LIMITED: "too_many_requests",
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision on one request: the outcome, the scheme that decided, and details."""

    outcome: Outcome
    scheme: Scheme | None = None
    retry_after: float = 0.0
    detail: str = ""

    @property
    def allowed(self) -> bool:
        """Whether the request may go on."""
        return self.outcome in (Outcome.GRANTED, Outcome.OPEN)

    @property
    def status(self) -> int:
        """The HTTP status of the refusal (200 when allowed)."""
        return _STATUS.get(self.outcome, 200)

    @property
    def code(self) -> str:
        """The machine-readable error code of the refusal."""
        return _CODE.get(self.outcome, "")

    @property
    def message(self) -> str:
        """What a person should do about the refusal."""
        if self.outcome is Outcome.LIMITED:
            wait = max(1, math.ceil(self.retry_after))
            return f"too many failed logins with these credentials; try again in {wait} s"
        if self.outcome is Outcome.CSRF_TOKEN:
            return "the session cookie needs the X-CSRF-Token header for this method"
        if self.outcome is Outcome.CROSS_SITE:
            return f"cross-site request refused: {self.detail}"
        if self.outcome is Outcome.WRONG:
            return self.detail or "wrong credentials"
        return self.detail or "authentication required (Basic auth, X-Api-Key or a UI session)"


_ALLOWED_OPEN = Verdict(Outcome.OPEN)


def auth_required(user: str, password: str) -> bool:
    """Whether credentials are configured at all; an empty user and password turn auth off."""
    return bool(user or password)


def _basic(authorization: bytes | None) -> bytes | None:
    """The `user:password` bytes of a Basic header; b"" when malformed; None when absent."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        return binascii.a2b_base64(token.strip(), strict_mode=True)
    except binascii.Error:
        return b""


def _password_ok(user: bytes, password: bytes, webdav: WebDAVConfig) -> bool:
    user_ok = hmac.compare_digest(user, webdav.user.encode("utf-8"))
    password_ok = hmac.compare_digest(password, webdav.password.encode("utf-8"))
    return user_ok and password_ok


def credentials_ok(authorization: bytes | None, user: str, password: str) -> bool:
    """Whether an Authorization header carries exactly `user` and `password` (Basic scheme)."""
    decoded = _basic(authorization)
    if not decoded:
        return False
    given_user, sep, given_password = decoded.partition(b":")
    user_ok = hmac.compare_digest(given_user, user.encode("utf-8"))
    password_ok = hmac.compare_digest(given_password, password.encode("utf-8"))
    return bool(sep) and user_ok and password_ok


def _arg(request: Request, name: bytes) -> bytes | None:
    args: dict[bytes, list[bytes]] = request.args or {}
    values = args.get(name)
    return values[0] if values else None


def _text(value: Any) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else value


class Authenticator:
    """Checks every request of one server against `config`; holds the login limiter and
    the UI sessions.

    `api_key()` returns the API key (a str, or a Deferred firing with one); it is
    asked once, when a request first presents a key. `clock()` drives the
    limiter.
    """

    def __init__(
        self,
        config: Config,
        api_key: Callable[[], Any] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sessions: SessionStore | None = None,
    ) -> None:
        self.config = config
        self.limiter = LoginLimiter(clock)
        self.sessions = sessions if sessions is not None else SessionStore(time.monotonic)
        self._api_key_source = api_key
        self._api_key: bytes | None = None
        self._pepper = secrets.token_bytes(16)

    @property
    def required(self) -> bool:
        """Whether a WebDAV user or password is configured (else Basic auth is off)."""
        return auth_required(self.config.webdav.user, self.config.webdav.password)

    def provide_api_key(self, api_key: Callable[[], Any]) -> None:
        """Where the API key comes from, unless the Authenticator was given a source."""
        if self._api_key_source is None:
            self._api_key_source = api_key

    def load_key(self) -> defer.Deferred:
        """Fetch and keep the API key (no-op once known); fires with it, or None."""
        if self._api_key is not None or self._api_key_source is None:
            return defer.succeed(self._api_key)

        def keep(key: Any) -> bytes | None:
            self._api_key = str(key).encode("utf-8") if key else None
            return self._api_key

        return defer.maybeDeferred(self._api_key_source).addCallback(keep)

    def check(self, request: Request, accepts: Scheme) -> defer.Deferred:
        """The Verdict on `request` for a resource that takes `accepts`."""
        if Scheme.API_KEY in accepts and self._api_key is None and _given_key(request):
            return self.load_key().addCallback(lambda _: self.check_now(request, accepts))
        return defer.succeed(self.check_now(request, accepts))

    def check_now(self, request: Request, accepts: Scheme) -> Verdict:
        """The Verdict, decided without waiting (an API key not loaded yet counts as wrong)."""
        address = client_key(getattr(request.getClientAddress(), "host", ""))
        required = self.required
        webdav = self.config.webdav
        tried: list[tuple[Scheme, bytes, bool | None]] = []
        if Scheme.BASIC in accepts and required:
            decoded = _basic(request.getHeader(b"authorization"))
            if decoded is not None:
                name, sep, secret = decoded.partition(b":")
                # Without the colon it is no user:password pair: make it one that never matches.
                pair = name + b"\0" + secret if sep else b"\0\0" + decoded
                tried.append((Scheme.BASIC, pair, None))
        csrf_missing = False
        if Scheme.SESSION in accepts:
            cookie = check_request(self.sessions, request)[0]
            if cookie is CookieAuth.VALID:
                return Verdict(Outcome.GRANTED, Scheme.SESSION)
            csrf_missing = cookie is CookieAuth.CSRF_MISSING
        if Scheme.API_KEY in accepts:
            key = _given_key(request)
            if key:
                tried.append((Scheme.API_KEY, key, None))
        if Scheme.SAB_LOGIN in accepts and required:
            login, secret_arg = _arg(request, b"ma_username"), _arg(request, b"ma_password")
            if login is not None or secret_arg is not None:
                pair = (login or b"") + b"\0" + (secret_arg or b"")
                tried.append((Scheme.SAB_LOGIN, pair, None))
        checked = [(s, c, self._right(s, c, webdav)) for s, c, _ in tried]
        granted = next((s for s, _, right in checked if right), None)
        limited = 0.0
        for scheme, credential, right in checked:
            mark = self._mark(scheme, credential)
            wait = self.limiter.retry_after(address, _tag(scheme), mark)
            if scheme is granted and right:
                if wait <= 0:
                    self.limiter.succeeded(address, _tag(scheme), mark)
                    verdict = Verdict(Outcome.GRANTED, scheme)
                    # Only Basic credentials are sent by a browser on another site's behalf.
                    if scheme is Scheme.BASIC:
                        return self._unless_cross_site(request, verdict)
                    return verdict
                limited = max(limited, wait)
            elif granted is None:
                if wait > 0:
                    limited = max(limited, wait)
                else:
                    self.limiter.failed(address, _tag(scheme), mark)
        if limited:
            return Verdict(Outcome.LIMITED, retry_after=limited)
        if checked:
            return Verdict(Outcome.WRONG, checked[0][0])
        if csrf_missing:
            return Verdict(Outcome.CSRF_TOKEN, Scheme.SESSION)
        if Scheme.BASIC in accepts and not required:
            return self._unless_cross_site(request, _ALLOWED_OPEN)
        return Verdict(Outcome.MISSING, detail=_missing(accepts))

    def check_head(self, request: Request) -> Verdict | None:
        """The Verdict on a request head before its body is read (any scheme of the API,
        WebDAV or SABnzbd will do); None when it cannot be told yet (the API key is not
        loaded)."""
        if self._api_key is None and _given_key(request):
            return None
        return self.check_now(request, REST | SABNZBD)

    def check_token(self, request: Request, given: bytes | None, expected: bytes) -> Verdict:
        """The Verdict on a resource's own secret `given` (a per-file token, say), with
        the same constant-time compare and rate limit as every other credential."""
        if not given:
            return Verdict(Outcome.MISSING, detail="this link needs its token")
        address = client_key(getattr(request.getClientAddress(), "host", ""))
        mark = self._mark(Scheme.TOKEN, given)
        right = hmac.compare_digest(given, expected)
        wait = self.limiter.retry_after(address, _tag(Scheme.TOKEN), mark)
        if wait > 0:
            return Verdict(Outcome.LIMITED, Scheme.TOKEN, retry_after=wait)
        if right:
            self.limiter.succeeded(address, _tag(Scheme.TOKEN), mark)
            return Verdict(Outcome.GRANTED, Scheme.TOKEN)
        self.limiter.failed(address, _tag(Scheme.TOKEN), mark)
        return Verdict(Outcome.WRONG, Scheme.TOKEN)

    def check_login(self, request: Request, user: str, password: str) -> Verdict:
        """The Verdict on a user and password sent in a body (the UI's login form)."""
        if not self.required:
            return _ALLOWED_OPEN
        address = client_key(getattr(request.getClientAddress(), "host", ""))
        given_user, given_password = user.encode("utf-8"), password.encode("utf-8")
        mark = self._mark(Scheme.BASIC, given_user + b"\0" + given_password)
        right = _password_ok(given_user, given_password, self.config.webdav)
        wait = self.limiter.retry_after(address, _tag(Scheme.BASIC), mark)
        if wait > 0:
            return Verdict(Outcome.LIMITED, Scheme.BASIC, retry_after=wait)
        if right:
            self.limiter.succeeded(address, _tag(Scheme.BASIC), mark)
            return Verdict(Outcome.GRANTED, Scheme.BASIC)
        self.limiter.failed(address, _tag(Scheme.BASIC), mark)
        return Verdict(Outcome.WRONG, Scheme.BASIC, detail="wrong user or password")

    def _right(self, scheme: Scheme, credential: bytes, webdav: WebDAVConfig) -> bool:
        if scheme is Scheme.API_KEY:
            key = self._api_key or b""
            return hmac.compare_digest(credential, key) and bool(key)
        user, _, password = credential.partition(b"\0")
        return _password_ok(user, password, webdav)

    def _mark(self, scheme: Scheme, credential: bytes) -> bytes:
        """A fingerprint of `credential`: the limiter tells them apart without keeping them."""
        tag = _tag(scheme).encode("ascii") + b"\0"
        return hmac.new(self._pepper, tag + credential, hashlib.sha256).digest()[:16]

    @staticmethod
    def _unless_cross_site(request: Request, verdict: Verdict) -> Verdict:
        if request.method in SAFE_METHODS:
            return verdict
        why = cross_site(request)
        return Verdict(Outcome.CROSS_SITE, verdict.scheme, detail=why) if why else verdict


def _tag(scheme: Scheme) -> str:
    """The limiter's name for a scheme (each counts apart)."""
    return scheme.name or ""


def _given_key(request: Request) -> bytes | None:
    given = request.getHeader(b"x-api-key")
    return _text(given) if given is not None else _arg(request, b"apikey")


def _missing(accepts: Scheme) -> str:
    names = []
    if Scheme.BASIC in accepts:
        names.append("Basic auth")
    if Scheme.API_KEY in accepts:
        names.append("X-Api-Key" if Scheme.BASIC in accepts else "apikey")
    if Scheme.SESSION in accepts:
        names.append("a UI session")
    return f"authentication required ({' or '.join(names) or 'a token'})"


def authenticator_of(request: Request) -> Authenticator | None:
    """The Authenticator of the site serving `request` (None outside one)."""
    site = getattr(request, "site", None) or getattr(
        getattr(request, "channel", None), "site", None
    )
    found = getattr(site, "authenticator", None)
    return found if isinstance(found, Authenticator) else None


def wants_basic_challenge(request: Request) -> bool:
    """Whether a 401 should carry `WWW-Authenticate: Basic` (not for the UI's own calls)."""
    return request.getHeader(b"x-requested-with") != UI_MARKER


def refusal_headers(request: Request, verdict: Verdict, *, challenge: bool = True) -> None:
    """Set the status and headers of a refusal: the Basic challenge on 401 (unless the UI
    asked, or `challenge` is off), Retry-After on 429."""
    request.setResponseCode(verdict.status)
    request.setHeader(b"Cache-Control", b"no-store")
    if verdict.status == 401 and challenge and wants_basic_challenge(request):
        request.setHeader(b"WWW-Authenticate", f'Basic realm="{REALM}"'.encode())
    if verdict.status == 429:
        request.setHeader(b"Retry-After", b"%d" % max(1, math.ceil(verdict.retry_after)))


def refusal_json(request: Request, verdict: Verdict, *, challenge: bool = True) -> bytes:
    """A refusal as the REST API answers one: status, headers, `{"error": {code, message}}`."""
    refusal_headers(request, verdict, challenge=challenge)
    request.setHeader(b"Content-Type", b"application/json")
    return json.dumps({"error": {"code": verdict.code, "message": verdict.message}}).encode()


class Refusal(Resource):
    """Answers with a refusal: JSON for the UI's calls, plain text for WebDAV clients."""

    isLeaf = True

    def __init__(self, verdict: Verdict) -> None:
        super().__init__()
        self.verdict = verdict

    def render(self, request: Request) -> bytes:
        if not wants_basic_challenge(request):
            return refusal_json(request, self.verdict)
        refusal_headers(request, self.verdict)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return self.verdict.message.encode() + b"\n"


def _loopback(address: str) -> bool:
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_problem(webdav: WebDAVConfig) -> str | None:
    """Why the server must not listen as configured, or None: the built-in credentials
    on an address other machines can reach."""
    if _loopback(webdav.bind_address):
        return None
    user, password = (value.encode("utf-8") for value in BUILT_IN_CREDENTIALS)
    if not _password_ok(user, password, webdav):
        return None
    return (
        f"webdav.bind_address: {webdav.bind_address or '(all addresses)'} is reachable from "
        "other machines, and the built-in login usenet:usenet is in force; set webdav.user "
        "and webdav.password (or bind_address: 127.0.0.1 to keep the server local)"
    )
