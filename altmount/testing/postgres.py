"""A real PostgreSQL server for tests and benchmarks: a throw-away cluster on 127.0.0.1.

Debian's server binaries (`postgresql-15`) in `/usr/lib/postgresql/<version>/bin`; the
cluster lives in a temporary folder with trust authentication for one user, listens
on an ephemeral port and is stopped (fast shutdown) and deleted by `stop()`. `initdb`
refuses to run as root, so as root the cluster belongs to the `postgres` system user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["PostgresCluster", "PostgresUnavailable", "server_bin"]

USER = "altmount"
#: Seconds `pg_ctl start -w` may take: a fresh cluster starts in well under one.
START_TIMEOUT = 60


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def server_bin() -> Path:
    """The newest installed PostgreSQL server's bin folder."""
    base = Path("/usr/lib/postgresql")
    versions = sorted(
        (path for path in base.glob("*/bin") if (path / "initdb").exists()),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    if not versions:
        raise PostgresUnavailable(
            f"no PostgreSQL server in {base} (install Debian's postgresql package)"
        )
    return versions[-1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresCluster:
    """One running cluster; `dsn(database)` to connect, `create_database(name)` for more."""

    def __init__(self, folder: Path | None = None) -> None:
        self.bin = server_bin()
        self.folder = Path(folder or tempfile.mkdtemp(prefix="altmount-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self._owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if self._owner is not None:
            os.chown(self.folder, self._owner.pw_uid, self._owner.pw_gid)
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", USER,
            "-E", "UTF8", "--no-sync",
        )
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=200"
        )
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "log"),
            "-w", "-t", str(START_TIMEOUT), "-o", options, "start",
        )

    def dsn(self, database: str = "postgres") -> str:
        """A libpq connection string for `database` on this cluster."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database `name` (an identifier) and return its DSN."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server log, for a failing test's message."""
        try:
            return "\n".join((self.folder / "log").read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server and delete the cluster."""
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        except subprocess.CalledProcessError:
            pass  # already gone; the folder still goes
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, *command: str) -> None:
        started = time.monotonic()
        try:
            subprocess.run(
                command,
                check=True,
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT + 30,
                user=self._owner.pw_uid if self._owner else None,
                group=self._owner.pw_gid if self._owner else None,
                cwd=self.folder,
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(
                f"{Path(command[0]).name} failed after {time.monotonic() - started:.1f} s: "
                f"{exc.stderr.strip() or exc.stdout.strip()}\n{self.log_tail()}"
            ) from None
