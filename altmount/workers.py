"""Serving processes of one `altmount serve --processes N`: their role, their shared
listening socket, and the board on which each publishes its figures for the others.

Every process binds its own socket to the same port with SO_REUSEPORT; the kernel
spreads new connections across them. Only the first process (index 0) runs the
import queue, the watch folder and the file health checks, so an item is never
imported twice; the others serve and accept NZBs into the shared queue database.

Each process writes a snapshot of its figures (streams, bytes served, provider
connections) to `<database>.processes/process-<index>.json` about once a second, so
whichever process answers `/api/health` or `/metrics` can report every process and the
totals. A snapshot whose writer is gone or silent is left out.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ProcessBoard",
    "WorkerRole",
    "board_dir",
    "process_figures",
    "processes_report",
    "reuseport_socket",
]

log = logging.getLogger(__name__)

#: How often a process publishes its snapshot.
PUBLISH_SECONDS = 1.0
#: A snapshot older than this is a process that hangs or died without cleaning up.
STALE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class WorkerRole:
    """Which of `count` serving processes this one is, and what it shares."""

    index: int
    count: int
    port: int  #: the listening port every process binds with SO_REUSEPORT
    demo_port: int = 0  #: the supervisor's demo provider (0: none)

    @property
    def primary(self) -> bool:
        """Whether this process runs the queue, the watch folder and health checks."""
        return self.index == 0


def reuseport_socket(host: str, port: int, *, listen: bool, backlog: int = 511) -> socket.socket:
    """A non-blocking TCP socket bound to (host, port) with SO_REUSEPORT.

    The supervisor binds one without listening to claim the port (and learn it, when
    the configuration says 0): the kernel only hands connections to listening sockets.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def board_dir(database_path: str) -> Path:
    """Where the processes sharing `database_path` publish their snapshots."""
    db = Path(database_path)
    return db.with_name(db.name + ".processes")


class ProcessBoard:
    """This process's snapshot file, and the live snapshots of all of them."""

    def __init__(
        self,
        directory: Path,
        role: WorkerRole,
        *,
        wall: Callable[[], float],
        pid: int | None = None,
    ) -> None:
        self.role = role
        self._directory = Path(directory)
        self._directory.mkdir(parents=True, exist_ok=True)
        self._wall = wall
        self._pid = os.getpid() if pid is None else pid
        self._path = self._directory / f"process-{role.index}.json"

    def publish(self, figures: dict[str, Any]) -> None:
        """Write this process's figures (atomically: a reader never sees half a file)."""
        snapshot = {"index": self.role.index, "pid": self._pid, "at": self._wall(), **figures}
        temporary = self._path.with_name(f".{self._path.name}.{self._pid}.tmp")
        try:
            temporary.write_text(json.dumps(snapshot))
            os.replace(temporary, self._path)
        except OSError as exc:
            log.warning("cannot publish this process's figures to %s: %s", self._path, exc)

    def withdraw(self) -> None:
        """Remove this process's snapshot (at a clean stop)."""
        try:
            current = json.loads(self._path.read_text())
        except (OSError, ValueError):
            return
        if current.get("pid") == self._pid:  # a restarted successor may own it already
            self._path.unlink(missing_ok=True)

    def snapshots(self) -> list[dict[str, Any]]:
        """The fresh snapshots of live processes, by index."""
        now = self._wall()
        found = []
        for index in range(self.role.count):
            path = self._directory / f"process-{index}.json"
            try:
                snapshot = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if now - float(snapshot.get("at", 0)) > STALE_SECONDS:
                continue
            if not _alive(int(snapshot.get("pid", 0))):
                continue
            found.append(snapshot)
        return found


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def process_figures(ops: Any) -> dict[str, Any]:
    """What one process publishes: its streams, bytes served and provider connections."""
    return {
        "streams_active": ops.streams.count,
        "bytes_served": ops.streams.bytes_served_total,
        "provider_connections": {
            pool.name: pool.connections_open for pool in ops.engine.router.providers
        },
    }


def processes_report(board: ProcessBoard) -> dict[str, Any]:
    """The /api/health component: every live process and the totals."""
    snapshots = board.snapshots()
    expected = board.role.count
    connections: dict[str, int] = {}
    for snapshot in snapshots:
        for name, count in snapshot.get("provider_connections", {}).items():
            connections[name] = connections.get(name, 0) + int(count)
    up = len(snapshots)
    return {
        "status": "healthy" if up >= expected else "degraded",
        "reason": f"{up} of {expected} serving process(es) up",
        "this_process": board.role.index,
        "processes": [
            {key: s.get(key) for key in ("index", "pid", "streams_active", "bytes_served")}
            | {"provider_connections": s.get("provider_connections", {})}
            for s in snapshots
        ],
        "total": {
            "streams_active": sum(int(s.get("streams_active", 0)) for s in snapshots),
            "bytes_served": sum(int(s.get("bytes_served", 0)) for s in snapshots),
            "provider_connections": connections,
        },
    }
