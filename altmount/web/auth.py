"""HTTP Basic authentication (RFC 7617) for WebDAV and the API, and login rate limiting.

Both the user and the password are compared with `hmac.compare_digest`, and
both comparisons always run, so the time taken says nothing about which part
was wrong or how much of it matched.

`LoginLimiter` counts failed logins per client address in a sliding window;
once a client passes the limit, its requests that carry credentials are
answered 429 (with Retry-After) without being checked, until the window has
moved on. Other clients are never affected, and a request whose credentials
are right costs nothing extra.
"""

from __future__ import annotations

import binascii
import hmac
import ipaddress
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request

__all__ = [
    "REALM",
    "MAX_FAILED_LOGINS",
    "LOGIN_WINDOW_SECONDS",
    "credentials_ok",
    "auth_required",
    "Unauthorized",
    "LoginLimiter",
    "client_key",
    "presents_credentials",
    "note_failed_login",
    "too_many_logins",
]

REALM = "altmount"
#: Failed logins one client may make within LOGIN_WINDOW_SECONDS before it must wait.
MAX_FAILED_LOGINS = 10
LOGIN_WINDOW_SECONDS = 60.0
#: Clients tracked at once; past this the ones idle longest are forgotten, so a flood
#: of addresses costs bounded memory (each can then make at most its first attempts).
MAX_TRACKED_CLIENTS = 10_000
#: Query/form arguments that carry credentials (SABnzbd's apikey and login).
_CREDENTIAL_ARGS = (b"apikey", b"ma_username", b"ma_password")


def credentials_ok(authorization: bytes | None, user: str, password: str) -> bool:
    """Whether an Authorization header carries exactly `user` and `password` (Basic scheme)."""
    if not authorization:
        return False
    scheme, _, token = authorization.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return False
    try:
        decoded = binascii.a2b_base64(token.strip(), strict_mode=True)
    except binascii.Error:
        return False
    given_user, sep, given_password = decoded.partition(b":")
    user_ok = hmac.compare_digest(given_user, user.encode("utf-8"))
    password_ok = hmac.compare_digest(given_password, password.encode("utf-8"))
    return bool(sep) and user_ok and password_ok


def auth_required(user: str, password: str) -> bool:
    """Whether credentials are configured at all; an empty user and password turn auth off."""
    return bool(user or password)


class Unauthorized(Resource):
    """Answers every request with 401 and the Basic challenge."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setResponseCode(401)
        request.setHeader(b"WWW-Authenticate", f'Basic realm="{REALM}"')
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"authentication required\n"


def client_key(host: str) -> str:
    """The rate-limit key of a client address: the address, or its /64 for IPv6.

    One IPv6 host usually owns a whole /64, so counting per address would let it
    rotate through 2**64 of them.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return host


def presents_credentials(request: Request) -> bool:
    """Whether a request carries any credentials (Basic, X-Api-Key, SABnzbd key or login)."""
    if request.getHeader(b"authorization") or request.getHeader(b"x-api-key"):
        return True
    args: dict[bytes, list[bytes]] = request.args or {}
    return any(args.get(name) for name in _CREDENTIAL_ARGS)


class LoginLimiter:
    """Failed logins per client in a sliding window of `window` seconds; `clock()` is now."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_failures: int = MAX_FAILED_LOGINS,
        window: float = LOGIN_WINDOW_SECONDS,
        max_clients: int = MAX_TRACKED_CLIENTS,
    ) -> None:
        self._clock = clock
        self._max_failures = max_failures
        self._window = window
        self._max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}

    @property
    def active(self) -> bool:
        """Whether any failure is on record (nothing to check for anyone otherwise)."""
        return bool(self._failures)

    def failed(self, key: str) -> None:
        """Record one failed login by the client `key`."""
        now = self._clock()
        times = self._failures.pop(key, None)  # re-inserted last: dict order is recency
        if times is None:
            times = deque(maxlen=self._max_failures)
            if len(self._failures) >= self._max_clients:
                self._forget(now)
        times.append(now)
        self._failures[key] = times

    def retry_after(self, key: str) -> float:
        """Seconds `key` must wait before its credentials are checked again; 0 if none."""
        times = self._failures.get(key)
        if times is None:
            return 0.0
        now = self._clock()
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0.0
        if len(times) < self._max_failures:
            return 0.0
        return times[0] + self._window - now

    def _forget(self, now: float) -> None:
        """Drop clients whose failures have all expired, else the least recently failed."""
        for key in [k for k, t in self._failures.items() if t[-1] <= now - self._window]:
            del self._failures[key]
        while len(self._failures) >= self._max_clients:
            del self._failures[next(iter(self._failures))]


def note_failed_login(request: Request) -> None:
    """Count a failed login by the request's client, when its site has a `login_limiter`."""
    site = getattr(request, "site", None) or getattr(
        getattr(request, "channel", None), "site", None
    )
    limiter: Any = getattr(site, "login_limiter", None)
    if limiter is None:
        return
    limiter.failed(client_key(getattr(request.getClientAddress(), "host", "")))


def too_many_logins(request: Request, wait: float) -> bytes:
    """Answer 429 with Retry-After (whole seconds, rounded up)."""
    request.setResponseCode(429)
    request.setHeader(b"Retry-After", b"%d" % max(1, math.ceil(wait)))
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-store")
    return b"too many failed logins; try again later\n"
