"""Fixtures shared by the integration tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def spawn():
    """Start child processes (cwd: the repo root) that are killed and reaped when the test
    ends, pass or fail."""
    children: list[subprocess.Popen] = []

    def start(args: list[str], **options) -> subprocess.Popen:
        child = subprocess.Popen(args, cwd=ROOT, **options)
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=10)
