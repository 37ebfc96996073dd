"""`Ops`: the operations side of one running server, in one object.

It owns the stream registry, the throughput and import meters, the health monitor,
the file health scheduler and the Prometheus metrics; the web layer (opsapi,
metrics resource, WebDAV) reads and feeds it. Built after the engine (and the
queue, when there is one); `start()` / `stop()` with the server.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.web.client import Agent

from altmount.config import Config, config_as_dict, load_config
from altmount.errors import RequestError
from altmount.ops.filehealth import HealthScheduler
from altmount.ops.health import PROBE_INTERVAL_SECONDS, HealthMonitor
from altmount.ops.healthstore import HealthStore
from altmount.ops.heartbeat import ReactorHeartbeat
from altmount.ops.meters import DurationMeter
from altmount.ops.metrics import OpsMetrics
from altmount.ops.repair import Repairer
from altmount.ops.streams import StreamRegistry
from altmount.queue.model import State

__all__ = ["Ops", "IMPORT_POLL_SECONDS", "LIVE_SECTIONS"]

log = logging.getLogger(__name__)

#: How often finished imports are read from the queue (for the import latency figures).
IMPORT_POLL_SECONDS = 10.0
#: Import ids remembered so that each import is counted once.
_SEEN_IMPORTS = 1000
#: Config sections (or keys) a reload applies without a restart.
LIVE_SECTIONS = ("streaming", "health", "log.level")
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else key))
        return flat
    return {prefix: data}


class Ops:
    """Streams, meters, health and metrics of one server.

    `clock` gives monotonic seconds (durations, rates), `wall` epoch seconds
    (timestamps, file ages); both default to the reactor's clock in tests that
    pass a `Clock`. `config_path` is the YAML file `reload()` re-reads.
    """

    def __init__(
        self,
        reactor: Any,
        config: Config,
        engine: Any,
        queue: Any = None,
        *,
        config_path: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        probe_interval: float = PROBE_INTERVAL_SECONDS,
        import_poll: float = IMPORT_POLL_SECONDS,
        arr_agent: Any = None,
    ) -> None:
        self.reactor = reactor
        self.config = config
        self.engine = engine
        self.queue = queue
        self.config_path = config_path
        self.clock = clock
        self.wall = wall
        self.streaming = config.streaming  #: current streaming limits (reload applies live)
        self.metrics = OpsMetrics(self)
        self.streams = StreamRegistry(clock, wall, on_first_byte=self._first_byte)
        if hasattr(engine, "count_streams"):
            engine.count_streams(lambda: self.streams.count)
        self.imports = DurationMeter(clock)
        self.heartbeat = ReactorHeartbeat(reactor, busy=lambda: self.streams.count > 0, clock=clock)
        self.health = HealthMonitor(reactor, engine, queue, probe_interval=probe_interval)
        self.health_store = HealthStore(
            os.path.join(config.metadata.root_path, "health"),
            map_size=config.metadata.map_size_mb << 20,
        )
        self.files = HealthScheduler(
            reactor, config.health, engine.store, engine.router, self.health_store, clock=wall
        )
        #: Repairs through Sonarr/Radarr; `arr_agent` (an Agent) is for tests.
        self.repair = Repairer(
            reactor, config, self.health_store, arr_agent or Agent(reactor), wall=wall
        )
        self.files.on_result = self.repair.consider
        self.queue_counts: dict[Any, int] | None = None  #: last counts read (for /metrics)
        self._import_poll = import_poll
        self._seen_imports: deque[int] = deque(maxlen=_SEEN_IMPORTS)
        self._imports_loop: LoopingCall | None = None
        self._polling: defer.Deferred | None = None

    # -- life cycle ------------------------------------------------------------

    def start(self, *, file_checks: bool = True) -> None:
        """Start the provider/database probe, the import poll and (unless another serving
        process runs them) the file health checks."""
        self.health.start()
        if file_checks:
            self.files.start()
        self.heartbeat.start()
        if self.queue is not None:
            self._imports_loop = LoopingCall(self.poll_imports)
            self._imports_loop.clock = self.reactor
            self._imports_loop.start(self._import_poll, now=True)

    @defer.inlineCallbacks
    def stop(self):
        """Stop everything started; fires when work under way has ended."""
        if self._imports_loop is not None and self._imports_loop.running:
            self._imports_loop.stop()
        self._imports_loop = None
        self.heartbeat.stop()
        polling = self._polling
        if polling is not None:
            yield defer.DeferredList([polling], consumeErrors=True)
        yield self.health.stop()
        yield self.files.stop()
        self.health_store.close()

    # -- feeds from the web layer ---------------------------------------------------

    def _first_byte(self, milliseconds: float) -> None:
        self.metrics.ttfb.observe(milliseconds / 1000)

    def is_hidden(self, path: str) -> bool:
        """Whether WebDAV listings leave `path` out (known corrupted)."""
        return path in self.files.corrupted

    def mark_for_recheck(self, path: str, reason: str) -> None:
        """A stream hit a missing article in `path`: check it again soon."""
        self.files.mark_for_recheck(path, reason)

    def deleted(self, path: str) -> None:
        """A WebDAV DELETE removed `path` (a file or a tree): forget its health records."""
        for gone in self.health_store.forget_tree(path):
            self.files.corrupted.discard(gone)

    def moved(self, src: str, dst: str) -> None:
        """A WebDAV MOVE renamed `src` to `dst`: the health records (and a repair's
        damage lines) follow the file; whatever `dst` replaced is forgotten."""
        self.deleted(dst)
        for old, new in self.health_store.move_tree(src, dst):
            if old in self.files.corrupted:
                self.files.corrupted.discard(old)
                self.files.corrupted.add(new)

    def record_hole(self, path: str, index: int, message_id: str, zero_bytes: int) -> None:
        """A stream served segment `index` of `path` as zeros (missing on every provider):
        count the bytes, and once per article log it and mark the file degraded."""
        self.health.zero_filled_bytes += zero_bytes
        if not self.health.add_hole(path, message_id):
            return
        log.warning(
            "%s: segment %d (<%s>) missing on every provider, served as zeros "
            "(streaming.missing_article_policy: zero_fill_media); the file wants a repair",
            path,
            index,
            message_id,
        )
        # No re-check is forced: a sampled check would likely miss this segment.
        if self.files.store.mark_damaged(
            path, f"segment {index} (<{message_id}>) missing on every provider", message_id
        ):
            self.repair.consider_path(path)

    def record_crc_failure(self, path: str, index: int, message_id: str) -> None:
        """Every copy of segment `index` of `path` failed its CRC and was served as decoded:
        once per article, log it and mark the file degraded."""
        if not self.health.add_crc_failure(path, message_id):
            return
        log.warning(
            "%s: segment %d (<%s>) fails its yEnc CRC on every provider; its decoded "
            "bytes were served; the file wants a repair",
            path,
            index,
            message_id,
        )
        if self.files.store.mark_damaged(
            path, f"segment {index} (<{message_id}>) fails its CRC on every provider"
        ):
            self.repair.consider_path(path)

    def record_import(self, item: Any) -> None:
        """Count one finished import (a QueueItem with started_at and completed_at), once."""
        if item.id in self._seen_imports or not item.started_at or not item.completed_at:
            return
        self._seen_imports.append(item.id)
        seconds = max(0.0, item.completed_at - item.started_at)
        self.imports.add(seconds * 1000)
        self.metrics.import_duration.observe(seconds)

    def poll_imports(self) -> defer.Deferred:
        """Read the queue counts and the latest completed imports; fires when done."""
        if self.queue is None or self._polling is not None:
            return defer.succeed(None)

        @defer.inlineCallbacks
        def poll():
            self.queue_counts = yield self.queue.counts()
            items = yield self.queue.list(
                states=[State.COMPLETED], limit=100, sort="completed_at", descending=True
            )
            for item in reversed(items):
                self.record_import(item)

        def over(result: Any) -> None:
            self._polling = None
            if hasattr(result, "getErrorMessage"):
                log.warning("ops: reading the queue failed: %s", result.getErrorMessage())

        polling = poll()
        self._polling = polling
        polling.addBoth(over)
        return polling

    # -- figures -------------------------------------------------------------------

    def download_workers(self) -> dict[str, Any]:
        """{active, max, utilization (0-1), queued} of the segment download workers."""
        fetcher = self.engine.fetcher
        stats = fetcher.stats()
        limit = fetcher.max_download_workers
        return {
            "active": stats.active,
            "max": limit,
            "utilization": min(1.0, stats.active / limit) if limit else 0.0,
            "queued": stats.queued,
        }

    # -- reload ----------------------------------------------------------------------

    def reload(self) -> dict[str, Any]:
        """Re-read the config file; apply what is safe live; report the rest.

        Raises ConfigError (the file is invalid: nothing changes) and RequestError
        (no config file known).
        """
        if not self.config_path:
            raise RequestError("altmount was started without a config file; nothing to reload", 409)
        new, warnings = load_config(self.config_path)
        old_flat = _flatten(config_as_dict(self.config, mask_secrets=False))
        new_flat = _flatten(config_as_dict(new, mask_secrets=False))
        changed = sorted(
            key
            for key in old_flat.keys() | new_flat.keys()
            if old_flat.get(key) != new_flat.get(key)
        )
        live = [k for k in changed if any(k == s or k.startswith(s + ".") for s in LIVE_SECTIONS)]
        restart = [k for k in changed if k not in live]
        reenabled = self._apply(new)
        self.config = dataclasses.replace(
            self.config,
            streaming=new.streaming,
            health=new.health,
            log=dataclasses.replace(self.config.log, level=new.log.level),
        )
        for key in changed:
            log.info(
                "config reload: %s %s",
                key,
                "applied" if key in live else "changed, takes effect after a restart",
            )
        return {
            "applied": live,
            "restart_required": restart,
            "warnings": warnings,
            "providers_reenabled": reenabled,
        }

    def _apply(self, new: Config) -> list[str]:
        """Apply what is safe live; the providers re-enabled (their names)."""
        providers = {provider.name: provider for provider in new.providers}
        reenabled = []
        for pool in getattr(self.engine, "pools", ()):
            # A provider disabled by a refused login gets another chance: the reload may
            # carry fixed credentials (used from now on, though also listed above as
            # needing a restart: the other keys of the provider do).
            fresh = providers.get(pool.name)
            if fresh is not None and fresh.enabled and not pool.enabled and pool.reenable(fresh):
                reenabled.append(pool.name)
        self.streaming = new.streaming
        self.engine.fetcher.set_max_download_workers(new.streaming.max_download_workers)
        logging.getLogger().setLevel(_LEVELS[new.log.level])
        if new.health != self.files.config:
            restart = (
                self.files.config.enabled
                and new.health.enabled
                and (new.health.check_interval_seconds != self.files.config.check_interval_seconds)
            )
            self.files.config = new.health
            if not new.health.enabled:
                self.files.pause()
            elif restart:
                self.files.pause()
                self.files.start()
            else:
                self.files.start()
        return reenabled
