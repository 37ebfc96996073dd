"""A whole `altmount serve` session at log level debug with webdav.debug on: requests with
wrong and right credentials of every kind, a provider login refused and one accepted, an
import and a stream. Every log line (standard error and log.file) is one structured line,
carries the ids it should, and no secret appears in any of them."""

from __future__ import annotations

import base64
import re
import subprocess

import pytest
from livestack import (
    ALTMOUNT,
    DEADLINE,
    PASSWORD,
    ROOT,
    USER,
    basic,
    make_stack,
    request,
    wait_for,
)

LINE = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [A-Z]+ +\S+: (?:\[(?P<context>[^\]]*)\] )?.*"
)
NNTP_PASSWORD = "nntp-Pa55word"
WRONG_NNTP_PASSWORD = "wrong-nntp-Secret"
WRONG_DAV_PASSWORD = "wrong-dav-Secret"
WRONG_API_KEY = "0badc0de0badc0de0badc0de0badc0de"


@pytest.fixture
def debug_stack(tmp_path):
    """A stack logging everything, with a second provider whose password is wrong."""
    live = make_stack(
        tmp_path,
        size=2 * 1024 * 1024,
        webdav={"debug": True},
        sabnzbd={"enabled": True},
        log={"level": "debug", "file": "./logs/altmount.log"},
        extra_providers=(
            {"name": "refused", "username": "nntp-user", "password": WRONG_NNTP_PASSWORD},
        ),
    )
    yield live
    live.close()


def test_no_secret_in_any_log_line(debug_stack):
    """Wrong and right Basic auth, apikey, X-Api-Key and ma_password, and both provider
    passwords, never appear in a log line; every line has the structured format."""
    port = debug_stack.web_port
    key = subprocess.run(
        [*ALTMOUNT, "apikey", "--config", str(debug_stack.config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    ).stdout.strip()
    assert len(key) == 32
    wrong = basic(USER, WRONG_DAV_PASSWORD)
    sab = "/sabnzbd/api?mode=queue&output=json&ma_username=" + USER
    calls = [
        ("GET", debug_stack.file_path, {**wrong, "Range": "bytes=0-99"}, 401),
        ("GET", debug_stack.file_path, {**basic(), "Range": "bytes=0-99"}, 206),
        ("PROPFIND", "/", {**wrong, "Depth": "1"}, 401),
        ("GET", f"/api/queue?apikey={WRONG_API_KEY}", {}, 401),
        ("GET", f"/api/queue?apikey={key}", {}, 200),
        ("GET", "/api/providers", {"X-Api-Key": WRONG_API_KEY}, 401),
        ("GET", "/api/providers", {"X-Api-Key": key}, 200),
        ("GET", "/api/config", basic(), 200),
        ("GET", f"{sab}&apikey={key}&ma_password={PASSWORD}", {}, 200),
        ("GET", f"{sab}&apikey={WRONG_API_KEY}&ma_password={WRONG_DAV_PASSWORD}", {}, None),
        ("GET", f"/api?mode=version&apikey={key}", {}, 200),
    ]
    for method, path, headers, expected in calls:
        status, response_headers, _ = request(port, method, path, headers)
        assert expected is None or status == expected, (method, path, status)
        assert re.fullmatch(r"[0-9a-f]{8}", response_headers["X-Request-Id"])
    stream_request = request(port, "GET", debug_stack.file_path, basic())
    assert (stream_request[0], len(stream_request[2])) == (200, debug_stack.file_size)
    wait_for(
        lambda: "refused" in (debug_stack.root / "logs" / "altmount.log").read_text(),
        "the refused provider's warning",
    )
    debug_stack.stop_server()

    stderr = debug_stack.server_log.read_text()
    logfile = (debug_stack.root / "logs" / "altmount.log").read_text()
    assert stderr.splitlines() == logfile.splitlines()
    lines = logfile.splitlines()
    assert len(lines) > 20
    secrets = [
        PASSWORD,
        WRONG_DAV_PASSWORD,
        key,
        WRONG_API_KEY,
        NNTP_PASSWORD,
        WRONG_NNTP_PASSWORD,
        base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
        base64.b64encode(f"{USER}:{WRONG_DAV_PASSWORD}".encode()).decode(),
    ]
    for line in lines:
        assert LINE.fullmatch(line), line
        for secret in secrets:
            assert secret not in line, line

    contexts = [LINE.fullmatch(line)["context"] or "" for line in lines]
    debug_lines = [line for line in lines if "altmount.web.site:" in line]
    assert len(debug_lines) >= len(calls) + 1
    assert all("[request_id=" in line for line in debug_lines)
    assert any("apikey=***" in line and "ma_password=***" in line for line in debug_lines)
    stream_lines = [c for c in contexts if "stream_id=" in c]
    assert stream_lines and all(c.startswith("request_id=") for c in stream_lines)
    assert any("nzo_id=SABnzbd_nzo_" in c for c in contexts)
