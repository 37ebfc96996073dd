"""Browser sessions for the web UI: the session table, the cookie and CSRF tokens.

A login (`altmount.web.login`) creates a server-side session and sets the cookie
`altmount_session` (HttpOnly, SameSite=Strict, Path=/; Secure on https). The
cookie then stands in for Basic auth on `/api`, `/metrics` and WebDAV
(`altmount.web.auth` checks it). Requests that change state (anything but GET,
HEAD, OPTIONS and PROPFIND) made with the cookie must also carry the session's
CSRF token in `X-CSRF-Token`; the UI gets the token from the login answer or
`GET /ui/api/session` (same-origin reads only).

Sessions live in memory, keyed by a hash of the token (a restart logs everyone
out). A session ends after `idle_timeout` seconds without a request, after
`max_age` seconds in any case, or at logout; the table holds at most
`max_sessions` (the least recently used goes first).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from twisted.web.server import Request

__all__ = [
    "COOKIE_NAME",
    "CSRF_HEADER",
    "SAFE_METHODS",
    "CookieAuth",
    "Session",
    "SessionStore",
    "check_request",
    "cookie_token",
]

COOKIE_NAME = b"altmount_session"
CSRF_HEADER = b"x-csrf-token"
#: Methods that change nothing, so they need no CSRF token (PROPFIND only reads, and a
#: cross-site page cannot send it without a CORS preflight we never grant).
SAFE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PROPFIND"})
IDLE_TIMEOUT_SECONDS = 12 * 3600
MAX_AGE_SECONDS = 7 * 24 * 3600
MAX_SESSIONS = 1000


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


def cookie_token(request: Request) -> str | None:
    get = getattr(request, "getCookie", None)  # a bare test request has no cookies
    raw = get(COOKIE_NAME) if get is not None else None
    return raw.decode("ascii", "replace") if raw else None


def check_request(store: SessionStore, request: Request) -> tuple[CookieAuth, Session | None]:
    """What `request`'s cookie proves against `store`, and its session."""
    session = store.get(cookie_token(request))
    if session is None:
        return CookieAuth.ABSENT, None
    if request.method in SAFE_METHODS:
        return CookieAuth.VALID, session
    given = request.getHeader(CSRF_HEADER) or b""
    given_bytes = given.encode("latin-1") if isinstance(given, str) else given
    if hmac.compare_digest(given_bytes, session.csrf_token.encode("ascii")):
        return CookieAuth.VALID, session
    return CookieAuth.CSRF_MISSING, session
