"""HTTP Basic credentials check and the 401 challenge."""

from __future__ import annotations

import base64

import pytest
from twisted.web.test.requesthelper import DummyRequest

from altmount.web.auth import Unauthorized, auth_required, credentials_ok


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def test_right_credentials_pass():
    """The configured user and password are accepted, in any case of the scheme name."""
    assert credentials_ok(basic("usenet", "s3cret"), "usenet", "s3cret")
    assert credentials_ok(basic("usenet", "s3cret").replace(b"Basic", b"bAsIc"), "usenet", "s3cret")


def test_unicode_and_colon_in_password():
    """Passwords may hold colons and non-ASCII (UTF-8 on the wire)."""
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
        basic("usenet", "s3cret2"),
        basic("usenet", ""),
    ],
)
def test_wrong_or_malformed_credentials_fail(header):
    """Missing, malformed, other-scheme or wrong credentials are refused."""
    assert not credentials_ok(header, "usenet", "s3cret")


def test_auth_off_only_when_both_empty():
    """Auth is required whenever a user or a password is configured."""
    assert not auth_required("", "")
    assert auth_required("u", "")
    assert auth_required("", "p")


def test_unauthorized_resource_challenges():
    """The 401 answer carries the Basic challenge with realm altmount."""
    request = DummyRequest([b""])
    body = Unauthorized().render(request)
    assert request.responseCode == 401
    assert request.responseHeaders.getRawHeaders(b"www-authenticate") == [b'Basic realm="altmount"']
    assert body
