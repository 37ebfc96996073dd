"""A degraded file on the UI health page, in headless Chromium (tests/ui/degraded.cjs)."""

from __future__ import annotations

import base64
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from uilib import Altmount, FakeProvider, run_scenario

#: The article the provider lost (0-based; the release has 96 of 256 KiB).
MISSING = 40


@pytest.fixture(scope="module")
def lossy_provider(
    tmp_path_factory: pytest.TempPathFactory, browser_ready: None
) -> Iterator[FakeProvider]:
    """A fake NNTP server whose release lacks one article on every provider."""
    provider = FakeProvider(
        tmp_path_factory.mktemp("lossy"),
        media_name="degraded.mkv",
        size_mb=24,
        missing=str(MISSING),
    )
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, lossy_provider: FakeProvider
) -> Iterator[Altmount]:
    """altmount serve over the lossy provider."""
    running = Altmount(tmp_path_factory.mktemp("altmount-degraded"), lossy_provider.port)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _imported_path(server: Altmount, provider: FakeProvider) -> str:
    """Import the release through the running server; the media file's WebDAV path."""
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("altmount")),
            "import",
            str(provider.nzb),
            "--config",
            str(server.folder / "altmount.yaml"),
            "--wait",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=server.folder,
    )
    assert done.returncode == 0, done.stderr + server.log_tail()
    lines = [word for word in done.stdout.split() if word.endswith(provider.media_name)]
    assert lines, done.stdout
    return lines[0]


def test_degraded_file_shows_its_damage(server: Altmount, lossy_provider: FakeProvider) -> None:
    """After a stream zero-fills a lost article, the health page lists the damage line
    naming that segment and marks the file as wanting repair."""
    path = _imported_path(server, lossy_provider)
    auth = base64.b64encode(f"{server.user}:{server.password}".encode()).decode()
    request = urllib.request.Request(
        server.base_url + quote(path), headers={"Authorization": f"Basic {auth}"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read()
    assert len(body) == 24 << 20
    assert body[MISSING * 256 * 1024 : (MISSING + 1) * 256 * 1024] == bytes(256 * 1024)
    report = run_scenario(server, lossy_provider, script=Path(__file__).with_name("degraded.cjs"))
    assert report["wants_repair"] is True
    assert report["status"] == "degraded"
    assert any(
        f"segment {MISSING} (<" in line and "missing on every provider" in line
        for line in report["damage"]
    ), report["damage"]
