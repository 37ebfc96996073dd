"""Browser sessions for the web UI: login, logout, the session cookie and CSRF tokens.

A login (`POST /ui/api/login` with JSON `{"user", "password"}`, the WebDAV
credentials; a failure counts towards the site's login limiter) creates a server-side session and sets the cookie `altmount_session`
(HttpOnly, SameSite=Strict, Path=/; Secure on https). The cookie then stands in
for Basic auth on `/api`, `/metrics` and WebDAV. Requests that change state
(anything but GET, HEAD, OPTIONS and PROPFIND) made with the cookie must also
carry the session's CSRF token in `X-CSRF-Token`; the UI gets the token from the
login answer or `GET /ui/api/session` (same-origin reads only). `POST
/ui/api/logout` ends the session.

Sessions live in memory, keyed by a hash of the token (a restart logs everyone
out). A session ends after `idle_timeout` seconds without a request, after
`max_age` seconds in any case, or at logout; the table holds at most
`max_sessions` (the least recently used goes first).

The UI marks its calls with `X-Requested-With: altmount-ui`; a 401 to such a call
carries no Basic challenge, so the browser shows the login page instead of its
own password dialog.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request

from altmount.config import Config
from altmount.web.auth import auth_required, note_failed_login

__all__ = [
    "COOKIE_NAME",
    "CSRF_HEADER",
    "UI_MARKER",
    "CookieAuth",
    "Session",
    "SessionAPI",
    "SessionStore",
    "SessionUnauthorized",
    "attach_sessions",
    "cookie_auth",
    "session_authorized",
    "unauthorized_message",
    "wants_basic_challenge",
]

COOKIE_NAME = b"altmount_session"
CSRF_HEADER = b"x-csrf-token"
UI_MARKER = b"altmount-ui"
#: Methods that change nothing, so they need no CSRF token (PROPFIND only reads, and a
#: cross-site page cannot send it without a CORS preflight we never grant).
SAFE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PROPFIND"})
IDLE_TIMEOUT_SECONDS = 12 * 3600
MAX_AGE_SECONDS = 7 * 24 * 3600
MAX_SESSIONS = 1000
#: Largest login body read; credentials are short.
MAX_LOGIN_BYTES = 4096
_SITE_ATTRIBUTE = "altmount_sessions"


@dataclass(frozen=True, slots=True)
class Session:
    """One logged-in browser: the cookie token, its CSRF token, who, and when."""

    token: str
    csrf_token: str
    user: str
    created_at: float
    last_seen: float


def _key(token: str) -> bytes:
    # Looked up by hash: a dict lookup's timing then says nothing about real tokens.
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


class SessionStore:
    """The in-memory session table; `clock()` gives seconds (monotonic is best)."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        idle_timeout: float = IDLE_TIMEOUT_SECONDS,
        max_age: float = MAX_AGE_SECONDS,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self._clock = clock
        self.idle_timeout = idle_timeout
        self.max_age = max_age
        self._max_sessions = max_sessions
        self._sessions: OrderedDict[bytes, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, user: str) -> Session:
        """A new session for `user`, evicting the least recently used one when full."""
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), user, now, now)
        self._sessions[_key(session.token)] = session
        while len(self._sessions) > self._max_sessions:
            self._sessions.popitem(last=False)
        return session

    def get(self, token: str | None) -> Session | None:
        """The live session of `token` (its idle timer restarted), or None."""
        if not token:
            return None
        key = _key(token)
        session = self._sessions.get(key)
        if session is None:
            return None
        now = self._clock()
        if now - session.last_seen > self.idle_timeout or now - session.created_at > self.max_age:
            del self._sessions[key]
            return None
        session = replace(session, last_seen=now)
        self._sessions[key] = session
        self._sessions.move_to_end(key)
        return session

    def delete(self, token: str | None) -> bool:
        """End the session of `token`; whether there was one."""
        return bool(token) and self._sessions.pop(_key(token or ""), None) is not None


class CookieAuth(enum.Enum):
    """What the session cookie of a request proves."""

    ABSENT = "absent"  #: no cookie, or not a live session
    VALID = "valid"  #: a live session (and the CSRF token, when the method needs it)
    CSRF_MISSING = "csrf_missing"  #: a live session, but a state change without the token


def attach_sessions(site: Any, store: SessionStore) -> None:
    """Make `store` the session table of every request `site` serves."""
    setattr(site, _SITE_ATTRIBUTE, store)


def _store_of(request: Request) -> SessionStore | None:
    return getattr(getattr(request, "site", None), _SITE_ATTRIBUTE, None)


def _cookie_token(request: Request) -> str | None:
    raw = request.getCookie(COOKIE_NAME)
    return raw.decode("ascii", "replace") if raw else None


def check_request(store: SessionStore, request: Request) -> tuple[CookieAuth, Session | None]:
    """What `request`'s cookie proves against `store`, and its session."""
    session = store.get(_cookie_token(request))
    if session is None:
        return CookieAuth.ABSENT, None
    if request.method in SAFE_METHODS:
        return CookieAuth.VALID, session
    given = request.getHeader(CSRF_HEADER) or b""
    given_bytes = given.encode("latin-1") if isinstance(given, str) else given
    if hmac.compare_digest(given_bytes, session.csrf_token.encode("ascii")):
        return CookieAuth.VALID, session
    return CookieAuth.CSRF_MISSING, session


def cookie_auth(request: Request) -> CookieAuth:
    """What the request's session cookie proves (ABSENT when the site has no sessions)."""
    store = _store_of(request)
    return CookieAuth.ABSENT if store is None else check_request(store, request)[0]


def session_authorized(request: Request) -> bool:
    """Whether a session cookie (with its CSRF token where needed) authorizes `request`."""
    return cookie_auth(request) is CookieAuth.VALID


def wants_basic_challenge(request: Request) -> bool:
    """Whether a 401 should carry `WWW-Authenticate: Basic` (not for the UI's own calls)."""
    return request.getHeader(b"x-requested-with") != UI_MARKER


def unauthorized_message(request: Request) -> str:
    """The 401 message: names the missing CSRF header when that is what is wrong."""
    if cookie_auth(request) is CookieAuth.CSRF_MISSING:
        return "the session cookie needs the X-CSRF-Token header for this method"
    return "authentication required (Basic auth, X-Api-Key or a UI session)"


def _json(request: Request, status: int, payload: dict[str, Any]) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    return json.dumps(payload).encode()


def _error(request: Request, status: int, code: str, message: str) -> bytes:
    return _json(request, status, {"error": {"code": code, "message": message}})


class SessionUnauthorized(Resource):
    """401 in JSON without a Basic challenge (for the UI's calls), or 403 for a missing
    CSRF token."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        if cookie_auth(request) is CookieAuth.CSRF_MISSING:
            return _error(request, 403, "csrf", unauthorized_message(request))
        return _error(request, 401, "unauthorized", unauthorized_message(request))


class SessionAPI(Resource):
    """`/ui/api/login` (POST), `/ui/api/logout` (POST), `/ui/api/session` (GET)."""

    isLeaf = True

    def __init__(self, config: Config, store: SessionStore) -> None:
        super().__init__()
        self._webdav = config.webdav
        self._store = store

    def render(self, request: Request) -> bytes:
        route = b"/".join(part for part in request.postpath or [] if part)
        handlers = {b"login": b"POST", b"logout": b"POST", b"session": b"GET"}
        method = handlers.get(route)
        if method is None:
            return _error(request, 404, "not_found", "no such UI API route")
        if request.method != method and not (method == b"GET" and request.method == b"HEAD"):
            request.setHeader(b"Allow", method)
            return _error(request, 405, "method_not_allowed", f"use {method.decode()}")
        if route == b"login":
            return self._login(request)
        if route == b"logout":
            return self._logout(request)
        return self._session(request)

    def _answer(self, request: Request, session: Session | None) -> bytes:
        required = auth_required(self._webdav.user, self._webdav.password)
        return _json(
            request,
            200,
            {
                # Without configured credentials everything is open: no login needed.
                "authenticated": session is not None or not required,
                "user": session.user if session is not None else "",
                "csrf_token": session.csrf_token if session is not None else "",
                "auth_required": required,
                "idle_timeout_seconds": self._store.idle_timeout,
            },
        )

    def _login(self, request: Request) -> bytes:
        content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        # JSON only: a cross-site form cannot send it without a preflight (no login CSRF).
        if content_type != b"application/json":
            return _error(request, 415, "unsupported_media_type", "send JSON {user, password}")
        body = request.content.read(MAX_LOGIN_BYTES + 1) if request.content is not None else b""
        try:
            given = json.loads(body) if len(body) <= MAX_LOGIN_BYTES else None
        except ValueError:
            given = None
        if not isinstance(given, dict):
            return _error(request, 400, "bad_request", "send JSON {user, password}")
        user, password = str(given.get("user", "")), str(given.get("password", ""))
        if auth_required(self._webdav.user, self._webdav.password):
            user_ok = hmac.compare_digest(user.encode(), self._webdav.user.encode())
            password_ok = hmac.compare_digest(password.encode(), self._webdav.password.encode())
            if not (user_ok and password_ok):
                note_failed_login(request)  # the site's limiter answers 429 after too many
                return _error(request, 401, "unauthorized", "wrong user or password")
        self._store.delete(_cookie_token(request))
        session = self._store.create(user)
        request.addCookie(
            COOKIE_NAME,
            session.token.encode("ascii"),
            path=b"/",
            httpOnly=True,
            sameSite="strict",
            secure=request.isSecure(),
        )
        return self._answer(request, session)

    def _logout(self, request: Request) -> bytes:
        verdict, session = check_request(self._store, request)
        if verdict is CookieAuth.CSRF_MISSING:
            return _error(request, 403, "csrf", unauthorized_message(request))
        if session is not None:
            self._store.delete(session.token)
        request.addCookie(
            COOKIE_NAME, b"", path=b"/", max_age=b"0", httpOnly=True, sameSite="strict"
        )
        return _json(request, 200, {"logged_out": session is not None})

    def _session(self, request: Request) -> bytes:
        # 200 even when logged out: the UI asks on every start, and a 401 would be
        # logged as an error by the browser console.
        return self._answer(request, self._store.get(_cookie_token(request)))
