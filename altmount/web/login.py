"""The web UI's session routes: `POST /ui/api/login`, `POST /ui/api/logout`, `GET /ui/api/session`.

A login takes JSON `{"user", "password"}` (the WebDAV credentials, checked and
rate-limited by `altmount.web.auth`) and starts a session (`altmount.web.session`);
logout needs the session's CSRF token; the session route tells the UI whether
it is logged in and gives it the token.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request

from altmount.web.auth import Authenticator, refusal_json
from altmount.web.session import COOKIE_NAME, CookieAuth, Session, check_request, cookie_token

__all__ = ["SessionAPI", "MAX_LOGIN_BYTES"]

#: Largest login body read; credentials are short.
MAX_LOGIN_BYTES = 4096


def _json(request: Request, status: int, payload: dict[str, Any]) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    return json.dumps(payload).encode()


def _error(request: Request, status: int, code: str, message: str) -> bytes:
    return _json(request, status, {"error": {"code": code, "message": message}})


class SessionAPI(Resource):
    """`/ui/api/login` (POST), `/ui/api/logout` (POST), `/ui/api/session` (GET)."""

    isLeaf = True

    def __init__(self, auth: Authenticator) -> None:
        super().__init__()
        self._auth = auth
        self._store = auth.sessions

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
        required = self._auth.required
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
        verdict = self._auth.check_login(request, user, password)
        if not verdict.allowed:
            return refusal_json(request, verdict, challenge=False)
        self._store.delete(cookie_token(request))
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
            return _error(
                request, 403, "csrf", "the session cookie needs the X-CSRF-Token header to log out"
            )
        if session is not None:
            self._store.delete(session.token)
        request.addCookie(
            COOKIE_NAME, b"", path=b"/", max_age=b"0", httpOnly=True, sameSite="strict"
        )
        return _json(request, 200, {"logged_out": session is not None})

    def _session(self, request: Request) -> bytes:
        # 200 even when logged out: the UI asks on every start, and a 401 would be
        # logged as an error by the browser console.
        return self._answer(request, self._store.get(cookie_token(request)))
