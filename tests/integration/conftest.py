"""Fixtures shared by the integration tests."""

from __future__ import annotations

import hashlib
import os
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


@pytest.fixture(scope="session")
def postgres_cluster():
    """A real PostgreSQL cluster on 127.0.0.1 for the whole run (Debian's postgresql);
    a test takes its own database with `create_database`. Required under CI."""
    from altmount.testing.postgres import PostgresCluster, PostgresUnavailable

    try:
        cluster = PostgresCluster()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
    yield cluster
    cluster.stop()


@pytest.fixture
def postgres_dsn(postgres_cluster, request):
    """The DSN of a fresh database for this test on the shared cluster."""
    name = "t_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:16]
    return postgres_cluster.create_database(name)
