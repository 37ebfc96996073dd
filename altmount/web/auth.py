"""HTTP Basic authentication (RFC 7617) for WebDAV and the API.

Both the user and the password are compared with `hmac.compare_digest`, and
both comparisons always run, so the time taken says nothing about which part
was wrong or how much of it matched.
"""

from __future__ import annotations

import binascii
import hmac

from twisted.web.resource import Resource
from twisted.web.server import Request

__all__ = ["REALM", "credentials_ok", "auth_required", "Unauthorized"]

REALM = "altmount"


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
