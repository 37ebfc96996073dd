"""The repair loop: a corrupted or damaged file is replaced through Sonarr/Radarr.

A file qualifies when its health record is `corrupted` (a health check) or wants a
repair (a stream met damage beyond what zero-fill hides: `damage` lines). The
`Repairer` maps the file to the path the arrs see (`arrs.mount_path`, else
`sabnzbd.mount_dir`), asks the instances in order (those whose `category` names the
file's category folder first) which one owns it, and has that one delete and
blocklist the file and search again (`altmount.arrs.plan`). One repair runs at a
time; the state is kept in the file's health record (`repair_state`, `repair_detail`,
`repair_at`, `repair_attempts`), so /api/health/files and the UI show it. Automatic
repairs stop after `arrs.max_attempts` per file; a manual start
(`POST /api/health/{id}/repair`) always runs.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from twisted.internet import defer

from altmount.arrs.client import RETRY_DELAYS, ArrClient, run_plan
from altmount.arrs.plan import arr_path, radarr_plan, sonarr_plan
from altmount.config import ArrInstanceConfig, Config
from altmount.errors import ArrError, ArrFileNotFound, RequestError
from altmount.ops.healthstore import FileHealth, HealthStore

__all__ = ["Repairer", "instance_order"]

log = logging.getLogger(__name__)

_PLANS = {"sonarr": sonarr_plan, "radarr": radarr_plan}


def instance_order(config: Config, path: str) -> list[tuple[str, ArrInstanceConfig]]:
    """The enabled instances as (kind, instance), those whose category folder holds
    `path` first (`<complete_dir>/<category dir>/...`), in config order otherwise."""
    arrs = config.arrs
    every = [("sonarr", i) for i in arrs.sonarr_instances] + [
        ("radarr", i) for i in arrs.radarr_instances
    ]
    every = [(kind, i) for kind, i in every if i.enabled]
    complete = config.sabnzbd.complete_dir.rstrip("/")

    def owns(instance: ArrInstanceConfig) -> bool:
        if not instance.category:
            return False
        named = [
            c for c in config.sabnzbd.categories if c.name.lower() == instance.category.lower()
        ]
        folder = (named[0].dir or named[0].name) if named else instance.category
        return path.startswith(f"{complete}/{folder.strip('/')}/")

    return [pair for pair in every if owns(pair[1])] + [pair for pair in every if not owns(pair[1])]


class Repairer:
    """Starts and records repairs; `agent` is a twisted.web.client.Agent (or alike)."""

    def __init__(
        self,
        reactor: Any,
        config: Config,
        store: HealthStore,
        agent: Any,
        *,
        wall: Callable[[], float] | None = None,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
    ) -> None:
        self._reactor = reactor
        self.config = config
        self._store = store
        self._agent = agent
        self._wall = wall or reactor.seconds
        self._lock = defer.DeferredLock()
        self._running: dict[str, defer.Deferred] = {}
        self.repairs_total = 0
        self._retry_delays = retry_delays

    @property
    def enabled(self) -> bool:
        """Whether automatic repairs run (arrs.enabled and at least one instance)."""
        return self.config.arrs.enabled and bool(instance_order(self.config, "/"))

    def summary(self) -> dict[str, Any]:
        """For /api/health: enabled, the instances, and how many files are in each state."""
        counts = {"running": 0, "requested": 0, "not_found": 0, "failed": 0}
        for health in self._store.all():
            if health.repair_state in counts:
                counts[health.repair_state] += 1
        instances = [
            {"name": i.name, "kind": kind, "category": i.category}
            for kind, i in instance_order(self.config, "/")
        ]
        return {"enabled": self.enabled, "instances": instances, **counts}

    def consider(self, health: FileHealth) -> None:
        """Start an automatic repair of `health`'s file if it qualifies."""
        if not self.enabled or health.path in self._running:
            return
        if health.status != "corrupted" and not health.wants_repair:
            return
        if health.repair_state in ("running", "requested", "not_found"):
            return  # asked already; not_found waits for a manual start (after a fix)
        if health.repair_attempts >= self.config.arrs.max_attempts:
            return
        self.start(health.path).addErrback(lambda _: None)

    def consider_path(self, path: str) -> None:
        """`consider` by path (after a stream recorded damage)."""
        health = self._store.get(path)
        if health is not None:
            self.consider(health)

    def start(self, path: str) -> defer.Deferred:
        """Repair `path` now (queued behind one under way); fires with the final record.

        Raises RequestError (409) when no instance is configured."""
        if not instance_order(self.config, path):
            raise RequestError("no Sonarr/Radarr instance is configured (arrs section)", 409)
        if path in self._running:
            return _follow(self._running[path])
        health = self._store.get(path) or FileHealth(path)
        self._store.put(
            dataclasses.replace(
                health,
                repair_state="running",
                repair_detail="waiting for the repair before it" if self._lock.locked else "",
                repair_at=self._wall(),
                repair_attempts=health.repair_attempts + 1,
            )
        )
        running = self._lock.run(self._repair, path)
        self._running[path] = running
        running.addBoth(self._done, path)
        return _follow(running)

    def _done(self, result: Any, path: str) -> Any:
        self._running.pop(path, None)
        return result

    @defer.inlineCallbacks
    def _repair(self, path: str):
        mount = self.config.arrs.mount_path or self.config.sabnzbd.mount_dir
        seen = arr_path(mount, path)
        misses: list[str] = []
        errors: list[str] = []
        for kind, instance in instance_order(self.config, path):
            client = ArrClient(
                self._agent,
                self._reactor,
                f"{kind} {instance.name}",
                instance.url,
                instance.api_key,
                self.config.arrs.request_timeout_seconds,
                self._retry_delays,
            )
            try:
                outcome = yield run_plan(client, _PLANS[kind](instance.name, seen))
            except ArrFileNotFound as exc:
                misses.append(str(exc))
                continue
            except ArrError as exc:
                errors.append(str(exc))
                continue
            detail = f"{kind} {instance.name}: {outcome.summary()}"
            log.warning("repair of %s: %s", path, detail)
            self.repairs_total += 1
            return self._finish(path, "requested", detail)
        if errors:
            detail = "; ".join(errors + misses)
            log.error("repair of %s failed: %s", path, detail)
            return self._finish(path, "failed", detail)
        detail = f"no instance owns {seen}: " + "; ".join(misses)
        log.error("repair of %s: %s", path, detail)
        return self._finish(path, "not_found", detail)

    def _finish(self, path: str, state: str, detail: str) -> FileHealth | None:
        health = self._store.get(path)
        if health is None:
            return None  # the file went (the arr deleted it through the mount)
        done = dataclasses.replace(
            health, repair_state=state, repair_detail=detail, repair_at=self._wall()
        )
        self._store.put(done)
        return done


def _follow(running: defer.Deferred) -> defer.Deferred:
    """A Deferred with `running`'s outcome; cancelling it leaves `running` alone."""
    follower: defer.Deferred = defer.Deferred()

    def relay(result: Any) -> Any:
        if not follower.called:
            if hasattr(result, "getErrorMessage"):
                follower.errback(result)
            else:
                follower.callback(result)
        return None if hasattr(result, "getErrorMessage") else result

    running.addBoth(relay)
    return follower
