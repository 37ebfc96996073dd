"""Browser sessions for the web UI: the session table, the cookie and CSRF tokens.

A login (`altmount.web.login`) creates a server-side session and sets the cookie
`altmount_session` (HttpOnly, SameSite=Strict, Path=/; Secure on https). The
cookie then stands in for Basic auth on `/api`, `/metrics` and WebDAV
(`altmount.web.auth` checks it). Requests that change state (anything but GET,
HEAD, OPTIONS and PROPFIND) made with the cookie must also carry the session's
CSRF token in `X-CSRF-Token`; the UI gets the token from the login answer or
`GET /ui/api/session` (same-origin reads only).

Sessions live in memory, keyed by a hash of the token. With `shared` (the server's
`altmount.web.sessionshare`) they are also kept in the database, so every serving
process and instance knows a login and it survives a restart: a process asks the
database again for a session it has not checked for `REVALIDATE_SECONDS` (so a
logout elsewhere ends it here within that time) and writes its last use back at most
every `TOUCH_SECONDS`. A session ends after `idle_timeout` seconds without a request,
after `max_age` seconds in any case, or at logout; the memory table holds at most
`max_sessions` (the least recently used goes first).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import math
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from twisted.web.server import Request

from altmount.web.sessionshare import SharedSessions, SharedSessionsUnavailable

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
#: How long a process trusts its own copy of a shared session before asking again.
REVALIDATE_SECONDS = 5.0
#: How stale the stored last use of a shared session may get (idle timeouts are hours).
TOUCH_SECONDS = 60.0


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
    """The session table; `clock()` gives seconds (monotonic is best; wall time when
    `shared`, whose rows other processes and hosts read)."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        idle_timeout: float = IDLE_TIMEOUT_SECONDS,
        max_age: float = MAX_AGE_SECONDS,
        max_sessions: int = MAX_SESSIONS,
        shared: SharedSessions | None = None,
    ) -> None:
        self._clock = clock
        self.idle_timeout = idle_timeout
        self.max_age = max_age
        self._max_sessions = max_sessions
        self._shared = shared
        self._sessions: OrderedDict[bytes, Session] = OrderedDict()
        self._checked: dict[bytes, float] = {}  # when the shared row was last read
        self._stored_seen: dict[bytes, float] = {}  # last use as the shared row has it

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, user: str) -> Session:
        """A new session for `user`, evicting the least recently used one when full."""
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), user, now, now)
        key = _key(session.token)
        self._sessions[key] = session
        while len(self._sessions) > self._max_sessions:
            self._forget(self._sessions.popitem(last=False)[0])
        if self._shared is not None:
            try:
                self._shared.expire(now, self.idle_timeout, self.max_age)
                self._store(key, session)
            except SharedSessionsUnavailable:
                pass  # known to this process only, until the database answers
        return session

    def get(self, token: str | None) -> Session | None:
        """The live session of `token` (its idle timer restarted), or None."""
        if not token:
            return None
        key = _key(token)
        now = self._clock()
        session = self._sessions.get(key)
        if self._shared is not None and now - self._checked.get(key, -math.inf) > REVALIDATE_SECONDS:
            session = self._revalidate(key, token, session, now)
        if session is None:
            return None
        if now - session.last_seen > self.idle_timeout or now - session.created_at > self.max_age:
            self._end(key)
            return None
        session = replace(session, last_seen=now)
        self._sessions[key] = session
        self._sessions.move_to_end(key)
        if self._shared is not None and now - self._stored_seen.get(key, now) > TOUCH_SECONDS:
            try:
                self._store(key, session)
            except SharedSessionsUnavailable:
                pass
        return session

    def delete(self, token: str | None) -> bool:
        """End the session of `token` (everywhere, when shared); whether there was one."""
        if not token:
            return False
        key = _key(token)
        known = key in self._sessions
        if self._shared is not None and not known:
            known = self._revalidate(key, token, None, self._clock()) is not None
        self._end(key)
        return known

    def _revalidate(self, key: bytes, token: str, local: Session | None,
                    now: float) -> Session | None:
        """The shared row of `key` as a Session (None: ended elsewhere, or unknown)."""
        assert self._shared is not None
        try:
            fields = self._shared.load(key.hex())
        except SharedSessionsUnavailable:
            return local  # keep what this process knows
        self._checked[key] = now
        if fields is None:
            self._forget(key)
            return None
        seen = max(fields["seen"], local.last_seen if local else fields["seen"])
        session = Session(token, fields["csrf"], fields["user"], fields["created"], seen)
        self._sessions[key] = session
        self._stored_seen[key] = fields["seen"]
        return session

    def _store(self, key: bytes, session: Session) -> None:
        assert self._shared is not None
        self._shared.save(key.hex(), {"user": session.user, "csrf": session.csrf_token,
                                      "created": session.created_at, "seen": session.last_seen})
        self._stored_seen[key] = session.last_seen
        self._checked[key] = self._clock()

    def _end(self, key: bytes) -> None:
        self._forget(key)
        if self._shared is not None:
            try:
                self._shared.drop(key.hex())
            except SharedSessionsUnavailable:
                pass  # expires there by its own timestamps

    def _forget(self, key: bytes) -> None:
        """Drop `key` from this process's memory only."""
        self._sessions.pop(key, None)
        self._checked.pop(key, None)
        self._stored_seen.pop(key, None)


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
