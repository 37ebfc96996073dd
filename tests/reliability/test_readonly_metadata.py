"""A metadata directory the server may not write: `altmount serve` stops at start with a
clear error naming the directory (run as an unprivileged uid: root ignores modes)."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

NOBODY = 65534


def _serve_as_nobody(config: str, log_path: str) -> None:
    """Child process: stderr to `log_path`, drop root, run `altmount serve`."""
    # Everything is imported as root: the interpreter's files are not readable by nobody.
    from altmount.cli import main
    from altmount.server import Server  # noqa: F401

    os.dup2(os.open(log_path, os.O_WRONLY | os.O_CREAT, 0o644), 2)
    os.setgid(NOBODY)
    os.setuid(NOBODY)

    sys.argv = ["altmount", "serve", "--config", config]
    try:
        main()
    except SystemExit as exc:
        os._exit(exc.code if isinstance(exc.code, int) else 1)
    os._exit(0)


def test_serve_refuses_read_only_metadata():
    """serve as an unprivileged user over a read-only metadata directory exits non-zero
    within seconds, naming the directory."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run the server as another uid")
    # Not pytest's tmp_path: its parents are private to root.
    tmp_path = Path(tempfile.mkdtemp(prefix="altmount-ro-"))
    try:
        _check(tmp_path)
    finally:
        metadata = tmp_path / "metadata"
        if metadata.exists():
            metadata.chmod(0o755)
        shutil.rmtree(tmp_path, ignore_errors=True)


def _check(tmp_path: Path) -> None:
    metadata = tmp_path / "metadata"
    metadata.mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "altmount.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "webdav": {"port": port, "bind_address": "127.0.0.1"},
                "metadata": {"root_path": str(metadata), "map_size_mb": 16},
                "database": {"path": str(tmp_path / "db" / "queue.db")},
                "providers": [],
            }
        )
    )
    (tmp_path / "db").mkdir()
    for path in (tmp_path, tmp_path / "db", config):
        os.chown(path, NOBODY, NOBODY)
    metadata.chmod(0o555)
    tmp_path.chmod(0o755)
    log_path = tmp_path / "serve.log"
    child = multiprocessing.get_context("spawn").Process(
        target=_serve_as_nobody, args=(str(config), str(log_path))
    )
    child.start()
    child.join(timeout=30)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail("serve started over a read-only metadata directory")
    stderr = log_path.read_text()
    assert child.exitcode != 0
    assert str(metadata) in stderr, stderr
    assert "Traceback" not in stderr, stderr
