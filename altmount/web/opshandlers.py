"""The handlers behind the operations routes (`altmount.web.opsapi`).

Each takes the request (plus the route's parameters) and returns a JSON-able dict,
a `(status, dict)` pair, or a Deferred of either; errors are raised as `ApiError`
or AltmountError and turned into JSON by the router.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.web.server import Request

from altmount.config import Config, config_as_dict
from altmount.errors import AltmountError
from altmount.importer.layout import name_password
from altmount.ops.healthstore import FILE_STATES
from altmount.ops.meters import human_rate
from altmount.ops.providertest import ProviderTests
from altmount.ops.streams import AVERAGE_WINDOW_SECONDS, CURRENT_WINDOW_SECONDS
from altmount.queue.model import State

__all__ = ["ApiError", "Handlers", "queue_item_json"]

#: Largest page of queue items or file health records.
MAX_LIMIT = 500


class ApiError(AltmountError):
    """A request the API refuses: `http_status` and a short machine `code`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.http_status = status
        self.code = code


def _error(status: int, code: str, message: str) -> ApiError:
    return ApiError(status, code, message)


def _arg(request: Request, name: str, default: str | None = None) -> str | None:
    values = (request.args or {}).get(name.encode())
    return values[0].decode("utf-8", "replace") if values else default


def _int_arg(request: Request, name: str, default: int, high: int | None = None) -> int:
    text = _arg(request, name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise _error(400, "bad_request", f"{name} must be a whole number, got {text!r}") from None
    if value < 0 or (high is not None and value > high):
        bound = f"between 0 and {high}" if high is not None else "at least 0"
        raise _error(400, "bad_request", f"{name} must be {bound}, got {value}")
    return value


def _states(request: Request) -> list[State] | None:
    text = _arg(request, "state") or _arg(request, "status")
    if not text:
        return None
    try:
        return [State(part.strip().lower()) for part in text.split(",") if part.strip()]
    except ValueError:
        names = ", ".join(s.value for s in State)
        raise _error(400, "bad_request", f"state must be among {names}, got {text!r}") from None


def queue_item_json(item: Any) -> dict[str, Any]:
    """A queue item as the REST API shows it (a release password in the name left out)."""
    return {
        "id": item.id,
        "nzo_id": item.nzo_id,
        "nzb_name": name_password(item.nzb_name)[0],
        "has_password": bool(name_password(item.nzb_name)[1]),
        "category": item.category,
        "priority": item.priority.name.lower(),
        "state": str(item.state),
        "attempts": item.attempts,
        "error": item.error,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
        "started_at": item.started_at,
        "completed_at": item.completed_at,
        "target_path": item.target_path,
        "size": item.size,
        "source": item.source,
    }


def _counts_json(counts: dict[Any, int]) -> dict[str, int]:
    data = {str(state): int(count) for state, count in counts.items()}
    data["total"] = sum(int(c) for c in counts.values())
    return data


class Handlers:
    """Route handlers over the engine, the Ops object and (optionally) the queue."""

    def __init__(self, config: Config, engine: Any, ops: Any, queue: Any = None) -> None:
        self._config = config
        self._engine = engine
        self._ops = ops
        self._queue = queue
        self._provider_tests = ProviderTests()  # one test at a time per provider

    # -- health -----------------------------------------------------------------

    def health(self, request: Request, authorized: bool) -> tuple[int, dict[str, Any]]:
        """Overall status; the components too for an authorized caller; 503 when unhealthy."""
        report = self._ops.health.report()
        status = 503 if report["status"] == "unhealthy" else 200
        if not authorized:
            return status, {"status": report["status"]}
        return status, {**report, "repairs": self._ops.repair.summary()}

    def streaming(self, request: Request) -> dict[str, Any]:
        """Download workers, active streams and totals."""
        streams = self._ops.streams
        fetched = self._engine.fetcher.stats()
        return {
            "workers": self._ops.download_workers(),
            "active_streams": streams.count,
            "streams": [s.as_dict() for s in streams.active()],
            "totals": {
                "bytes_served_total": streams.bytes_served_total,
                "streams_total": streams.streams_total,
                "outcomes": dict(streams.outcomes),
                "current_speed": streams.current.rate(),
                "avg_speed": streams.average.rate(),
                "bytes_fetched_total": fetched.bytes_fetched,
                "segments_total": fetched.segments,
                "fetch_failures_total": fetched.failures,
                "crc_retries_total": fetched.crc_retries,
                "crc_served_total": fetched.crc_served,
            },
            "reactor": self._ops.heartbeat.as_dict(),
            **self._cache_report(),
            "window_seconds": {
                "current_speed": CURRENT_WINDOW_SECONDS,
                "avg_speed": AVERAGE_WINDOW_SECONDS,
            },
        }

    def _cache_report(self) -> dict[str, Any]:
        """The segment cache's tiers and the memory budget (engines without them: none)."""
        cache = getattr(self._engine, "cache", None)
        if cache is None:
            return {}
        return {"cache": cache.report(), "memory": self._engine.memory.as_dict()}

    def clear_cache(self, request: Request) -> defer.Deferred:
        """Empty the segment cache, both tiers; the bytes freed per tier."""
        cache = getattr(self._engine, "cache", None)
        if cache is None:
            raise _error(503, "unavailable", "this server has no segment cache")
        return cache.clear().addCallback(lambda freed: {"freed": freed})

    def active_streams(self, request: Request) -> dict[str, Any]:
        """The open streams."""
        streams = self._ops.streams.active()
        return {"count": len(streams), "streams": [s.as_dict() for s in streams]}

    def files(self, request: Request) -> dict[str, Any]:
        """File health records, filtered by `status`, paged by `offset`/`limit`."""
        wanted = _arg(request, "status")
        if wanted and wanted not in FILE_STATES:
            raise _error(
                400,
                "bad_request",
                f"status must be one of {', '.join(FILE_STATES)}, got {wanted!r}",
            )
        offset = _int_arg(request, "offset", 0)
        limit = _int_arg(request, "limit", 100, MAX_LIMIT)
        records = list(self._ops.health_store.all())
        summary = dict.fromkeys(FILE_STATES, 0)
        for record in records:
            summary[record.status] = summary.get(record.status, 0) + 1
        chosen = [r for r in records if not wanted or r.status == wanted]
        return {
            "enabled": self._ops.files.config.enabled,
            "summary": summary,
            "total": len(chosen),
            "files": [r.as_dict() for r in chosen[offset : offset + limit]],
        }

    def _file_path(self, target: str) -> str:
        """The path of a file given by path or id; 404 ApiError when there is none."""
        if target.startswith("/"):
            return target
        found = self._ops.files.find(target)
        if found is not None:
            return found.path
        if self._engine.store.get_file("/" + target) is not None:
            return "/" + target
        raise _error(404, "not_found", f"no file with id or path {target!r}")

    def repair_file(self, request: Request, target: str) -> tuple[int, dict[str, Any]]:
        """Start a repair through Sonarr/Radarr now (by id or path): 202 with the record,
        its repair_state `running`; it ends as requested, not_found or failed."""
        if target.startswith("files/"):
            target = target[len("files/") :]
        path = self._file_path(target)
        if self._engine.store.get_file(path) is None:
            raise _error(404, "not_found", f"{path}: no such file")
        self._ops.repair.start(path).addErrback(lambda _: None)
        return 202, self._ops.health_store.get(path).as_dict()

    @defer.inlineCallbacks
    def check_file(self, request: Request, target: str):
        """Check one file now (by path or id); fires with its new record."""
        path = self._file_path(target)
        health = yield self._ops.files.check_now(path)
        if health is None:
            raise _error(404, "not_found", f"{path}: no such file")
        return health.as_dict()

    # -- providers ----------------------------------------------------------------

    def _provider_configs(self) -> dict[str, Any]:
        providers = getattr(self._engine.config, "providers", self._config.providers)
        return {p.name or p.host: p for p in providers}

    def providers(self, request: Request) -> dict[str, Any]:
        """Every provider with its connections and statistics (never its password)."""
        pools = {pool.name: pool for pool in self._engine.router.providers}
        answer = []
        for name, provider in self._provider_configs().items():
            pool = pools.get(name)
            entry: dict[str, Any] = {
                "name": name,
                "host": provider.host,
                "port": provider.port,
                "tls": provider.tls,
                "is_backup_provider": provider.is_backup_provider,
                "enabled": bool(pool is not None and pool.enabled),
                "disabled_reason": pool.disabled_reason
                if pool is not None
                else "disabled in the configuration",
            }
            if pool is None:
                entry["connections"] = {"active": 0, "idle": 0, "max": provider.max_connections}
                entry["statistics"] = None
            else:
                status, reason = self._ops.health.provider_status(pool)
                stats = pool.stats
                entry["status"], entry["reason"] = status, reason
                # closed / open / half_open, and why; "disabled" waits for a config reload.
                entry["circuit"] = pool.circuit
                entry["state"] = entry["circuit"]["state"] if pool.enabled else "disabled"
                entry["connections"] = {
                    "active": pool.connections_busy,
                    "idle": pool.connections_idle,
                    "connecting": pool.connections_connecting,
                    "max": provider.max_connections,
                    "peak": stats.peak_connections,
                    "queued_requests": pool.queued,
                    # Streams first: what imports and health checks may hold now.
                    "background": pool.background_connections,
                    "background_limit": pool.background_limit,
                }
                entry["statistics"] = {
                    "bytes": stats.bytes,
                    "articles": stats.articles,
                    "articles_missing": stats.articles_missing,
                    "errors": dict(stats.errors),
                    "avg_speed": stats.avg_speed,
                    "avg_speed_human": human_rate(stats.avg_speed),
                    "last_error": stats.last_error,
                    "last_rtt_ms": stats.last_rtt_ms,
                }
            answer.append(entry)
        return {"providers": answer}

    def test_provider(self, request: Request, name: str) -> defer.Deferred:
        """Fresh-connection test of one provider (see altmount.ops.providertest)."""
        provider = self._provider_configs().get(name)
        if provider is None:
            raise _error(404, "not_found", f"no provider named {name!r}")
        pool = next((p for p in self._engine.router.providers if p.name == name), None)
        return self._provider_tests.run(
            self._engine.reactor, provider, self._config.nntp, self._engine.store, pool
        )

    # -- config -------------------------------------------------------------------

    def config(self, request: Request) -> dict[str, Any]:
        """The effective configuration, secrets masked."""
        return config_as_dict(self._ops.config)

    def reload(self, request: Request) -> dict[str, Any]:
        """Re-read the config file; what applied live, what needs a restart."""
        return self._ops.reload()

    # -- queue --------------------------------------------------------------------

    def _need_queue(self) -> Any:
        if self._queue is None:
            raise _error(503, "unavailable", "the import queue is not running")
        return self._queue

    @defer.inlineCallbacks
    def queue_stats(self, request: Request):
        """Counts by state, throughput and import latency, worker use."""
        queue = self._need_queue()
        counts = yield queue.counts()
        self._ops.queue_counts = counts
        streams = self._ops.streams
        average, current = streams.average.rate(), streams.current.rate()
        downloads = self._ops.download_workers()
        return {
            "counts": _counts_json(counts),
            "performance": {
                "avg_speed": average,
                "avg_speed_human": human_rate(average),
                "current_speed": current,
                "current_speed_human": human_rate(current),
                "window_seconds": {
                    "avg_speed": AVERAGE_WINDOW_SECONDS,
                    "current_speed": CURRENT_WINDOW_SECONDS,
                },
                "bytes_served_total": streams.bytes_served_total,
                "avg_import_ms": self._ops.imports.average(),
                "imports_counted": self._ops.imports.count,
            },
            "workers": {
                "utilization": downloads["utilization"],
                "download": downloads,
                "processor": {
                    "busy": len(getattr(queue, "running", ())),
                    "max": self._config.import_.max_processor_workers,
                    "paused": bool(getattr(queue, "processing_paused", False)),
                },
            },
        }

    @defer.inlineCallbacks
    def queue_list(self, request: Request):
        """A filtered, sorted page of items with a summary of counts by state."""
        queue = self._need_queue()
        states = _states(request)
        search = _arg(request, "search") or None
        category = _arg(request, "category") or None
        offset = _int_arg(request, "offset", 0)
        limit = _int_arg(request, "limit", 50, MAX_LIMIT)
        sort = _arg(request, "sort", "created_at") or "created_at"
        order = (_arg(request, "order", "desc") or "desc").lower()
        if order not in ("asc", "desc"):
            raise _error(400, "bad_request", f"order must be asc or desc, got {order!r}")
        items = yield queue.list(
            states=states,
            search=search,
            category=category,
            offset=offset,
            limit=limit,
            sort=sort,
            descending=order == "desc",
        )
        total = yield queue.count(states=states, search=search, category=category)
        counts = yield queue.counts()
        self._ops.queue_counts = counts
        return {
            "summary": _counts_json(counts),
            "total": total,
            "offset": offset,
            "limit": limit,
            "items": [queue_item_json(i) for i in items],
        }

    @defer.inlineCallbacks
    def queue_get(self, request: Request, item_id: str):
        """One item."""
        item = yield self._need_queue().get(int(item_id))
        return queue_item_json(item)

    @defer.inlineCallbacks
    def queue_delete(self, request: Request, item_id: str):
        """Remove one item (a running import is stopped)."""
        yield self._need_queue().delete(int(item_id))
        return {"deleted": [int(item_id)]}

    @defer.inlineCallbacks
    def queue_retry(self, request: Request, item_id: str):
        """Queue a failed or cancelled item again."""
        item = yield self._need_queue().retry(int(item_id))
        return queue_item_json(item)

    @defer.inlineCallbacks
    def queue_bulk_delete(self, request: Request):
        """Delete every item in the given finished states (default completed and failed)."""
        queue = self._need_queue()
        states = _states(request) or [State.COMPLETED, State.FAILED]
        if any(state not in (State.COMPLETED, State.FAILED, State.CANCELLED) for state in states):
            raise _error(400, "bad_request", "bulk delete takes completed, failed or cancelled")
        deleted: list[int] = []
        while True:
            items = yield queue.list(states=states, limit=MAX_LIMIT, sort="id", descending=False)
            if not items:
                break
            for item in items:
                yield queue.delete(item.id)
                deleted.append(item.id)
        return {"deleted": deleted}
