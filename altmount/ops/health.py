"""Overall health for `GET /api/health`: providers, metadata store, database, workers.

`report()` is cheap (no network, one LMDB read) so load balancers may call it every
second. What it cannot learn cheaply it takes from a background probe run every
`probe_interval` seconds: a DATE round trip through each provider's pool (inside
`max_connections`) and one database query. Between probes, a provider whose
connect attempts fail with no connection open counts as unreachable at once.

Status: `unhealthy` when the metadata store or the database fails or no provider
is usable at all (none configured, or all disabled, e.g. by a refused login);
`degraded` when a provider is unreachable, the download workers are saturated or
a stream served a missing segment as zeros (`media_holes`) or an article whose CRC
failed on every provider (`crc_failures`); else `healthy`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.task import LoopingCall

from altmount.nntp.schedule import BACKGROUND_PRIORITY
from altmount.workers import processes_report

__all__ = ["HealthMonitor", "PROBE_INTERVAL_SECONDS", "STATUS_ORDER", "worst"]

log = logging.getLogger(__name__)

#: Seconds between background probes of providers and database.
PROBE_INTERVAL_SECONDS = 30.0
#: Pool priority of the DATE probe: background work, before health STATs.
PROBE_PRIORITY = BACKGROUND_PRIORITY
STATUS_ORDER = ("healthy", "degraded", "unhealthy")


def worst(statuses: list[str]) -> str:
    """The worst of some statuses ('healthy' for none)."""
    return max(statuses, key=STATUS_ORDER.index, default="healthy")


@dataclass(slots=True)
class _ProviderState:
    """What the last probe said about one provider."""

    reachable: bool | None = None  #: None: not probed yet
    reason: str = "not probed yet"
    failures_seen: int = 0  #: connect+auth errors counted at the last successful probe


def _failures(pool: Any) -> int:
    errors = pool.stats.errors
    return errors.get("connect", 0) + errors.get("auth", 0)


class HealthMonitor:
    """Components' health from the engine (and the queue, when given)."""

    def __init__(
        self,
        reactor: Any,
        engine: Any,
        queue: Any = None,
        *,
        probe_interval: float = PROBE_INTERVAL_SECONDS,
    ) -> None:
        self._reactor = reactor
        self._engine = engine
        self._queue = queue
        self._interval = probe_interval
        self._providers: dict[str, _ProviderState] = {
            pool.name: _ProviderState() for pool in engine.router.providers
        }
        self._database: tuple[bool, str] = (True, "not probed yet")
        #: path -> message-ids served as zeros since start (missing_article_policy)
        self.holes: dict[str, set[str]] = {}
        #: path -> message-ids whose every copy failed its CRC, served as decoded
        self.crc_failures: dict[str, set[str]] = {}
        #: File bytes served as zeros since start (the holes' share of each range)
        self.zero_filled_bytes = 0
        #: The open-files limit the server set at start (altmount.oslimits), if it did.
        self.file_limit: Any = None
        #: With several serving processes, where they publish their figures (workers.py).
        self.board: Any = None
        self._loop: LoopingCall | None = None
        self._probing: defer.Deferred | None = None

    def start(self) -> None:
        """Probe now and every `probe_interval` seconds."""
        self._loop = LoopingCall(self.probe)
        self._loop.clock = self._reactor
        self._loop.start(self._interval, now=True)

    @defer.inlineCallbacks
    def stop(self):
        """Stop probing; fires once a probe under way has ended."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        probing = self._probing
        if probing is not None:
            probing.cancel()
            yield defer.DeferredList([probing], consumeErrors=True)

    def probe(self) -> defer.Deferred:
        """Probe providers and database once; fires when every answer is in."""
        if self._probing is not None:
            return defer.succeed(None)
        work = [self._probe_pool(pool) for pool in self._engine.router.providers if pool.enabled]
        if self._queue is not None:
            work.append(self._probe_database())
        probing = defer.DeferredList(work, consumeErrors=True)
        self._probing = probing

        def over(_: Any) -> None:
            self._probing = None

        probing.addBoth(over)
        return probing

    def _probe_pool(self, pool: Any) -> defer.Deferred:
        state = self._providers.setdefault(pool.name, _ProviderState())
        before = _failures(pool)

        def ok(rtt_ms: float) -> None:
            state.reachable, state.reason = True, f"DATE answered in {rtt_ms:.0f} ms"
            state.failures_seen = max(before, _failures(pool))

        def failed(failure: Any) -> None:
            if failure.check(defer.CancelledError):
                return
            if state.reachable:  # a change: the start-up probe reported never-reachable ones
                log.warning(
                    "health: provider %s unreachable: %s", pool.name, failure.getErrorMessage()
                )
            state.reachable, state.reason = False, failure.getErrorMessage()

        return pool.date(PROBE_PRIORITY).addCallbacks(ok, failed)

    def _probe_database(self) -> defer.Deferred:
        def ok(_: Any) -> None:
            self._database = (True, "queue database answers")

        def failed(failure: Any) -> None:
            if not failure.check(defer.CancelledError):
                self._database = (False, f"queue database error: {failure.getErrorMessage()}")

        return defer.maybeDeferred(self._queue.counts).addCallbacks(ok, failed)

    # -- report ------------------------------------------------------------------

    def provider_status(self, pool: Any) -> tuple[str, str]:
        """(status, reason) of one provider pool."""
        if not pool.enabled:
            return "unhealthy", pool.disabled_reason or "disabled"
        state = self._providers.setdefault(pool.name, _ProviderState())
        if getattr(pool, "circuit_open", False):
            # The provider's outage, not this server's: an instance behind a balancer stays
            # in (it still serves cached data, and every instance shares the provider).
            return "degraded", f"circuit open: {pool.circuit['last_failure']}"
        if pool.connections_open:
            return "healthy", f"{pool.connections_open} connection(s) open"
        if _failures(pool) > state.failures_seen:
            return "degraded", f"unreachable: {pool.stats.last_error}"
        if state.reachable is False:
            return "degraded", f"unreachable: {state.reason}"
        return "healthy", state.reason

    def report(self) -> dict[str, Any]:
        """{'status': ..., 'components': {name: {'status', 'reason', ...}}}."""
        components = {
            "providers": self._providers_component(),
            "metadata": self._metadata_component(),
            "workers": self._workers_component(),
            "media_holes": self._holes_component(),
            "crc_failures": self._crc_component(),
        }
        if self.file_limit is not None:
            components["system"] = self._system_component()
        if self.board is not None:
            components["processes"] = processes_report(self.board)
        if self._queue is not None:
            ok, reason = self._database
            components["database"] = {"status": "healthy" if ok else "unhealthy", "reason": reason}
        status = worst([c["status"] for c in components.values()])
        return {"status": status, "components": components}

    def status(self) -> str:
        """Only the overall status (what anonymous callers get)."""
        return self.report()["status"]

    def _providers_component(self) -> dict[str, Any]:
        pools = self._engine.router.providers
        entries = []
        for pool in pools:
            status, reason = self.provider_status(pool)
            entries.append({"name": pool.name, "status": status, "reason": reason})
        usable = [e for e in entries if e["status"] != "unhealthy"]
        reachable = [e for e in entries if e["status"] == "healthy"]
        if not pools:
            status, reason = "unhealthy", "no NNTP provider configured"
        elif not usable:
            status, reason = "unhealthy", "every provider is disabled"
        elif len(reachable) < len(entries):
            status = "degraded"
            reason = f"{len(reachable)} of {len(entries)} provider(s) reachable"
        else:
            status, reason = "healthy", f"{len(entries)} provider(s) reachable"
        return {"status": status, "reason": reason, "providers": entries}

    def _system_component(self) -> dict[str, Any]:
        limit = self.file_limit
        if limit.sufficient:
            status = "healthy"
            reason = f"open-files limit {limit.soft} ({limit.needed} needed)"
        else:
            status = "degraded"
            reason = (
                f"open-files limit {limit.soft} is below the {limit.needed} needed; "
                "raise the hard limit (LimitNOFILE=)"
            )
        return {"status": status, "reason": reason, "open_files": limit.as_dict()}

    def _metadata_component(self) -> dict[str, Any]:
        try:
            self._engine.store.stat("/")
        except Exception as exc:  # any failure here means files cannot be served
            return {"status": "unhealthy", "reason": f"metadata store error: {exc}"}
        return {"status": "healthy", "reason": "metadata store readable"}

    def add_hole(self, path: str, message_id: str) -> bool:
        """Note a segment of `path` served as zeros; False if that article was noted before."""
        seen = self.holes.setdefault(path, set())
        if message_id in seen:
            return False
        seen.add(message_id)
        return True

    def add_crc_failure(self, path: str, message_id: str) -> bool:
        """Note an article of `path` served despite a CRC mismatch; False if noted before."""
        seen = self.crc_failures.setdefault(path, set())
        if message_id in seen:
            return False
        seen.add(message_id)
        return True

    def _crc_component(self) -> dict[str, Any]:
        if not self.crc_failures:
            return {
                "status": "healthy",
                "reason": "no article failed its CRC everywhere",
                "files": [],
            }
        count = sum(len(ids) for ids in self.crc_failures.values())
        return {
            "status": "degraded",
            "reason": f"{count} article(s) in {len(self.crc_failures)} file(s) failed their "
            "CRC on every provider and were served as decoded",
            "files": [
                {"path": path, "segments": len(ids)}
                for path, ids in sorted(self.crc_failures.items())
            ],
        }

    def _holes_component(self) -> dict[str, Any]:
        if not self.holes:
            return {"status": "healthy", "reason": "no segment served as zeros", "files": []}
        count = sum(len(ids) for ids in self.holes.values())
        return {
            "status": "degraded",
            "reason": f"{count} missing segment(s) in {len(self.holes)} file(s) served as zeros",
            "files": [
                {"path": path, "segments": len(ids)} for path, ids in sorted(self.holes.items())
            ],
        }

    def _workers_component(self) -> dict[str, Any]:
        fetcher = self._engine.fetcher
        pool = self._engine.decode_pool
        if not pool.started or pool.joined:
            return {"status": "unhealthy", "reason": "decode thread pool is not running"}
        stats = fetcher.stats()
        limit = fetcher.max_download_workers
        if stats.queued and stats.active >= limit:
            return {
                "status": "degraded",
                "reason": f"download workers saturated: {stats.active}/{limit} busy, "
                f"{stats.queued} waiting",
            }
        return {"status": "healthy", "reason": f"{stats.active}/{limit} download workers busy"}
