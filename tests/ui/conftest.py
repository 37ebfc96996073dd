"""Fixtures of the browser suite: the fake provider and a running altmount."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from uilib import Altmount, FakeProvider, browser_problem


@pytest.fixture(scope="module")
def browser_ready() -> None:
    """Skip without chromium/playwright, except under CI (CI=true), where that fails."""
    problem = browser_problem()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{problem} (CI must run it before the suite)", pytrace=False)
    pytest.skip(problem)


@pytest.fixture(scope="module")
def fake_provider(
    tmp_path_factory: pytest.TempPathFactory, browser_ready: None
) -> Iterator[FakeProvider]:
    """A fake NNTP server with one generated release and its NZB."""
    folder: Path = tmp_path_factory.mktemp("provider")
    provider = FakeProvider(folder)
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture(scope="module")
def altmount(
    tmp_path_factory: pytest.TempPathFactory, fake_provider: FakeProvider
) -> Iterator[Altmount]:
    """altmount serve over the fake provider, with credentials."""
    server = Altmount(tmp_path_factory.mktemp("altmount"), fake_provider.port)
    server.start()
    try:
        yield server
    finally:
        server.stop()
