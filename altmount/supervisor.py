"""`altmount serve --processes N`: start N serving processes on one port, restart any
that dies, and stop them all on SIGTERM/SIGINT.

The supervisor claims the port with a bound, non-listening SO_REUSEPORT socket (so a
port of 0 becomes one real port every process shares, and a port in use fails here,
once) and serves the demo provider itself when the demo is on, so that every process
streams from the same one.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.error import ProcessExitedAlready

from altmount.config import Config
from altmount.demo import demo_release
from altmount.selfexec import altmount_argv
from altmount.testing import nntpserver
from altmount.workers import reuseport_socket

__all__ = ["Supervisor"]

log = logging.getLogger(__name__)

#: The first pause before restarting a process that died; doubled while it keeps dying
#: within `STEADY_SECONDS` of its start, up to `MAX_RESTART_SECONDS`.
FIRST_RESTART_SECONDS = 1.0
MAX_RESTART_SECONDS = 30.0
STEADY_SECONDS = 30.0
#: How long the processes get to finish after SIGTERM before they are killed.
STOP_GRACE_SECONDS = 30.0


class _Worker(protocol.ProcessProtocol):
    """One serving process; tells the supervisor when it ends."""

    def __init__(self, index: int, on_end: Callable[[int, Any], None]) -> None:
        self.index = index
        self._on_end = on_end
        self.ended: defer.Deferred[None] = defer.Deferred()

    def processEnded(self, reason: Any) -> None:  # noqa: N802 - Twisted's name
        self._on_end(self.index, reason.value)
        self.ended.callback(None)


class Supervisor:
    """Runs `count` worker processes of `altmount serve` for `config_path`."""

    def __init__(
        self,
        reactor: Any,
        config: Config,
        config_path: str,
        count: int,
        *,
        argv: list[str] | None = None,
    ) -> None:
        self.reactor = reactor
        self.config = config
        self.config_path = config_path
        self.count = count
        self._argv = argv or altmount_argv()
        self.port = 0
        self._claim: Any = None
        self._demo_port: Any = None
        self._workers: dict[int, tuple[Any, _Worker]] = {}
        self._started_at: dict[int, float] = {}
        self._pause: dict[int, float] = {}
        self._restarts: dict[int, Any] = {}
        self.restarts = 0  #: processes restarted after dying
        self._stopping = False

    def start(self) -> int:
        """Claim the port, start the demo provider if on, spawn every process; returns
        the shared port."""
        webdav = self.config.webdav
        self._claim = reuseport_socket(webdav.bind_address, webdav.port, listen=False)
        self.port = self._claim.getsockname()[1]
        demo = 0
        if self.config.demo.enabled:
            self._demo_port, _ = nntpserver.listen(
                self.reactor, demo_release(self.config.demo).articles, port=self.config.demo.port
            )
            demo = self._demo_port.getHost().port
            log.info("demo provider: serving a sample release on 127.0.0.1:%d", demo)
        self._demo = demo
        for index in range(self.count):
            self._spawn(index)
        log.info(
            "supervisor: %d serving processes share http://%s:%d/",
            self.count,
            webdav.bind_address,
            self.port,
        )
        return self.port

    @property
    def pids(self) -> dict[int, int]:
        """index -> pid of the processes running now."""
        return {i: t.pid for i, (t, _) in self._workers.items() if t.pid is not None}

    def _spawn(self, index: int) -> None:
        self._restarts.pop(index, None)
        if self._stopping:
            return
        args = [
            *self._argv,
            "serve",
            "--config",
            self.config_path,
            "--worker",
            f"{index}/{self.count}/{self.port}/{self._demo}",
        ]
        worker = _Worker(index, self._ended)
        transport = self.reactor.spawnProcess(
            worker, args[0], args, env=dict(os.environ), childFDs={0: "w", 1: 1, 2: 2}
        )
        self._workers[index] = (transport, worker)
        self._started_at[index] = self.reactor.seconds()

    def _ended(self, index: int, reason: Any) -> None:
        self._workers.pop(index, None)
        if self._stopping:
            return
        lived = self.reactor.seconds() - self._started_at.get(index, 0.0)
        pause = self._pause.get(index, 0.0)
        pause = (
            FIRST_RESTART_SECONDS
            if lived >= STEADY_SECONDS or not pause
            else min(MAX_RESTART_SECONDS, pause * 2)
        )
        self._pause[index] = pause
        self.restarts += 1
        log.warning(
            "supervisor: serving process %d ended (%s); restarting it in %.0f s",
            index,
            reason,
            pause,
        )
        self._restarts[index] = self.reactor.callLater(pause, self._spawn, index)

    @defer.inlineCallbacks
    def stop(self):
        """SIGTERM every process, SIGKILL those still running after the grace period."""
        self._stopping = True
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        running = list(self._workers.values())
        for transport, _ in running:
            _signal(transport, signal.SIGTERM)
        kill = self.reactor.callLater(
            STOP_GRACE_SECONDS, lambda: [_signal(t, signal.SIGKILL) for t, _ in running]
        )
        yield defer.DeferredList([worker.ended for _, worker in running])
        if kill.active():
            kill.cancel()
        if self._demo_port is not None:
            yield self._demo_port.stopListening()
        if self._claim is not None:
            self._claim.close()


def _signal(transport: Any, number: int) -> None:
    try:
        transport.signalProcess(number)
    except (ProcessExitedAlready, OSError):
        return  # it ended meanwhile: its processEnded is on the way
