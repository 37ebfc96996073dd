"""A provider that needs AUTHINFO (INN2's second reader on 1120, user altmount)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from inn2lib import (
    AUTH_PASSWORD,
    AUTH_PORT,
    AUTH_USER,
    AltmountServer,
    Posted,
    md5,
    provider,
    skip_without_peers,
)

pytestmark = pytest.mark.inn2
skip_without_peers()

PROVIDER = "inn2-auth"


def _warnings_naming(server: AltmountServer, name: str) -> list[str]:
    return [line for line in server.log_text().splitlines() if "WARNING" in line and name in line]


def test_right_password_streams(
    altmount_factory: Callable[..., AltmountServer], posted_wav: Posted
) -> None:
    """With the right password the release imports and streams byte for byte, no warning."""
    server = altmount_factory([provider(PROVIDER, AUTH_PORT, AUTH_USER, AUTH_PASSWORD)], "auth-ok")
    server.import_nzb(posted_wav.nzb)
    path = server.find_file(posted_wav.release, posted_wav.name).path
    code, status, body, _ = server.curl(path)
    assert (code, status) == (0, 200)
    assert md5(body) == md5(posted_wav.data)
    first = 3 * posted_wav.article_size - 7
    code, status, body, _ = server.curl(path, f"{first}-{first + 99_999}")
    assert (code, status) == (0, 206)
    assert body == posted_wav.data[first : first + 100_000]
    assert _warnings_naming(server, PROVIDER) == []


def test_wrong_password_starts_and_warns_once(
    altmount_factory: Callable[..., AltmountServer],
) -> None:
    """With a wrong password the server still starts and logs one warning naming the provider."""
    server = altmount_factory([provider(PROVIDER, AUTH_PORT, AUTH_USER, "wrong")], "auth-bad")
    deadline = time.monotonic() + 30
    while not _warnings_naming(server, PROVIDER) and time.monotonic() < deadline:
        time.sleep(0.1)
    warnings = _warnings_naming(server, PROVIDER)
    assert len(warnings) == 1, f"expected one warning naming {PROVIDER}, got {warnings}"
    assert "481" in warnings[0] or "auth" in warnings[0].lower(), warnings[0]
    assert server.propfind("/") is not None
