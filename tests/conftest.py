"""Shared pytest configuration.

How tests that need Twisted run (pytest-twisted is not installed):

- Unit tests never touch a socket or the global reactor. Drive protocols with
  `twisted.internet.testing.StringTransport` and time with `task.Clock` /
  `MemoryReactorClock`. For anything that talks NNTP, build the code under test on
  `altmount.testing.nntpserver.MemoryNetReactor`: its connectTCP/connectSSL reach
  in-memory fake servers (`reactor.servers[host] = NNTPServerFactory(...)`),
  `reactor.flush()` moves bytes until quiet and `reactor.advance(s)` moves time.
- Integration tests that need a real reactor (127.0.0.1, ephemeral ports) are
  `twisted.trial.unittest.TestCase` classes whose test methods return Deferreds
  (`@defer.inlineCallbacks`). pytest runs them as unittest cases; trial spins the
  global reactor until the Deferred fires, applies the class's `timeout`, and fails
  the test if it leaves connections, listening ports or timers behind. So close
  pools, `yield server.when_idle()` and `addCleanup(port.stopListening)`.
  See tests/integration/test_nntp_integration.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from altmount.testing.rclonemount import RcloneMount, mount_problem


@pytest.fixture
def rclone_mount(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Callable[..., RcloneMount]]:
    """Mount a server's WebDAV root with `rclone mount`: call it with (port, user, password);
    every mount is unmounted after the test, and a failing test gets rclone's log.

    Without rclone, fuse3 or /dev/fuse the test skips, except under CI (CI=true), where
    that is a failure: the setup installs them.
    """
    problem = mount_problem()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)
    workdir = tmp_path_factory.mktemp("rclone-mount")
    mounts: list[RcloneMount] = []
    request.node.rclone_mounts = mounts

    def mount(port: int, user: str, password: str, *extra_args: str) -> RcloneMount:
        mountpoint = Path(workdir) / f"mnt{len(mounts)}"
        made = RcloneMount(
            f"http://127.0.0.1:{port}", user, password, mountpoint, workdir, extra_args
        )
        mounts.append(made)
        return made.start()

    try:
        yield mount
    finally:
        for made in reversed(mounts):
            made.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Attach the log of every rclone mount a failing test made to its report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for made in getattr(item, "rclone_mounts", ()):
            report.sections.append((f"rclone mount log ({made.mountpoint})", made.log_tail()))
