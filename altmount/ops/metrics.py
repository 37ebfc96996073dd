"""Prometheus metrics for `/metrics`, read from the live objects at scrape time.

Counters and gauges are not kept twice: a custom collector reads the fetcher, the
provider pools, the stream registry and the cached queue counts when Prometheus
scrapes. Only the two latency histograms (time to first byte, import duration)
are prometheus-client objects fed as events happen. Each `OpsMetrics` has its own
registry, so nothing is global.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["OpsMetrics", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_TTFB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
_IMPORT_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
_HEALTH_VALUES = {"healthy": 0, "degraded": 1, "unhealthy": 2}


class _LiveCollector(Collector):
    """Reads the Ops object's live state on every scrape."""

    def __init__(self, ops: Any) -> None:
        self._ops = ops

    def collect(self) -> Iterator[Metric]:
        ops = self._ops
        streams = ops.streams
        yield _counter(
            "altmount_bytes_served", "Bytes streamed to clients", streams.bytes_served_total
        )
        yield _gauge(
            "altmount_throughput_bytes_per_second",
            "Bytes per second streamed to clients (5 s moving average)",
            streams.current.rate(),
        )
        yield _gauge("altmount_streams_active", "Streams open now", streams.count)
        yield _counter("altmount_streams", "Streams opened since start", streams.streams_total)
        workers = ops.download_workers()
        for key in ("active", "max", "queued", "utilization"):
            yield _gauge(
                f"altmount_download_workers_{key}", f"Segment download workers: {key}", workers[key]
            )
        fetched = ops.engine.fetcher.stats()
        yield _counter(
            "altmount_fetcher_bytes_fetched",
            "Article bytes received from providers",
            fetched.bytes_fetched,
        )
        yield _counter(
            "altmount_fetcher_segments", "Segments fetched and verified", fetched.segments
        )
        yield _counter("altmount_fetcher_failures", "Segment fetches that failed", fetched.failures)
        yield _counter(
            "altmount_fetcher_crc_retries",
            "Article copies fetched again after a CRC mismatch",
            fetched.crc_retries,
        )
        yield _counter(
            "altmount_fetcher_crc_served",
            "Segments served as decoded because every copy failed its CRC",
            fetched.crc_served,
        )
        yield _counter(
            "altmount_zero_filled_bytes",
            "File bytes served as zeros for articles missing on every provider",
            ops.health.zero_filled_bytes,
        )
        yield from self._providers()
        yield from self._cache()
        counts = ops.queue_counts
        if counts is not None:
            items = GaugeMetricFamily(
                "altmount_queue_items", "Queue items by state", labels=["state"]
            )
            for state, count in sorted(counts.items()):
                items.add_metric([str(state)], count)
            yield items
        board = ops.health.board
        if board is not None:
            yield from _processes(board.snapshots(), board.role.count)
        yield _gauge(
            "altmount_health_status",
            "Overall health: 0 healthy, 1 degraded, 2 unhealthy",
            _HEALTH_VALUES[ops.health.status()],
        )

    def _providers(self) -> Iterator[Metric]:
        pools = self._ops.engine.router.providers
        families = {
            "bytes": CounterMetricFamily(
                "altmount_provider_bytes", "Article bytes received", labels=["provider"]
            ),
            "articles": CounterMetricFamily(
                "altmount_provider_articles", "Articles received", labels=["provider"]
            ),
            "missing": CounterMetricFamily(
                "altmount_provider_articles_missing",
                "430 answers (article not on this provider)",
                labels=["provider"],
            ),
            "errors": CounterMetricFamily(
                "altmount_provider_errors", "Errors by kind", labels=["provider", "kind"]
            ),
            "connections": GaugeMetricFamily(
                "altmount_provider_connections",
                "Connections by state",
                labels=["provider", "state"],
            ),
            "speed": GaugeMetricFamily(
                "altmount_provider_speed_bytes_per_second",
                "Download speed (10 s moving average)",
                labels=["provider"],
            ),
            "rtt": GaugeMetricFamily(
                "altmount_provider_rtt_milliseconds", "Last request round trip", labels=["provider"]
            ),
        }
        for pool in pools:
            stats = pool.stats
            families["bytes"].add_metric([pool.name], stats.bytes)
            families["articles"].add_metric([pool.name], stats.articles)
            families["missing"].add_metric([pool.name], stats.articles_missing)
            for kind, count in stats.errors.items():
                families["errors"].add_metric([pool.name, kind], count)
            families["connections"].add_metric([pool.name, "active"], pool.connections_busy)
            families["connections"].add_metric([pool.name, "idle"], pool.connections_idle)
            families["connections"].add_metric([pool.name, "max"], stats.max_connections)
            families["speed"].add_metric([pool.name], stats.avg_speed)
            families["rtt"].add_metric([pool.name], stats.last_rtt_ms)
        yield from families.values()


    def _cache(self) -> Iterator[Metric]:
        engine = self._ops.engine
        cache = getattr(engine, "cache", None)
        if cache is None:
            return
        stats = cache.stats()
        kinds = {
            "hits": (CounterMetricFamily, "Segment lookups answered"),
            "misses": (CounterMetricFamily, "Segment lookups not answered"),
            "bytes_served": (CounterMetricFamily, "Decoded bytes served"),
            "bytes_stored": (CounterMetricFamily, "Decoded bytes stored"),
            "evictions": (CounterMetricFamily, "Segments dropped (size, age)"),
            "errors": (CounterMetricFamily, "Damaged entries dropped, failed reads and writes"),
            "size_bytes": (GaugeMetricFamily, "Bytes held now"),
            "entries": (GaugeMetricFamily, "Segments held now"),
            "limit_bytes": (GaugeMetricFamily, "Most bytes the tier may hold now"),
        }
        families = {
            key: kind(f"altmount_cache_{key}", f"Segment cache: {doc}, by tier", labels=["tier"])
            for key, (kind, doc) in kinds.items()
        }
        for tier in ("ram", "disk"):
            figures = stats[tier]
            if figures is None:
                continue
            values = {
                "hits": figures.hits,
                "misses": figures.misses,
                "bytes_served": figures.bytes_served,
                "bytes_stored": figures.bytes_stored,
                "evictions": figures.evictions,
                "errors": figures.errors,
                "size_bytes": figures.size,
                "entries": figures.entries,
                "limit_bytes": figures.limit,
            }
            for key, value in values.items():
                families[key].add_metric([tier], value)
        yield from families.values()
        yield _counter(
            "altmount_cache_shared_fetches",
            "Segment reads that joined a fetch already in flight",
            stats["shared"],
        )
        yield _counter(
            "altmount_cache_sendfile_segments",
            "Segments sent from disk-tier files with sendfile",
            stats["files"],
        )
        budget = engine.memory.as_dict()
        memory = GaugeMetricFamily(
            "altmount_memory_budget_bytes",
            "Decoded bytes of the one streaming memory budget, by use",
            labels=["use"],
        )
        for use in ("limit", "streams", "cache", "free"):
            memory.add_metric([use], budget[use])
        yield memory


def _processes(snapshots: list[dict[str, Any]], expected: int) -> Iterator[Metric]:
    """Every serving process's figures, labelled by its index (several processes)."""
    yield _gauge("altmount_processes_expected", "Serving processes configured", expected)
    yield _gauge("altmount_processes_up", "Serving processes publishing figures", len(snapshots))
    streams = GaugeMetricFamily(
        "altmount_process_streams_active", "Streams open now, per process", labels=["process"]
    )
    served = CounterMetricFamily(
        "altmount_process_bytes_served", "Bytes streamed to clients, per process",
        labels=["process"],
    )
    for snapshot in snapshots:
        label = [str(snapshot.get("index"))]
        streams.add_metric(label, int(snapshot.get("streams_active", 0)))
        served.add_metric(label, int(snapshot.get("bytes_served", 0)))
    yield streams
    yield served


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class OpsMetrics:
    """The registry behind `/metrics` for one Ops object."""

    def __init__(self, ops: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.ttfb = Histogram(
            "altmount_time_to_first_byte_seconds",
            "Stream start to first byte written",
            buckets=_TTFB_BUCKETS,
            registry=self.registry,
        )
        self.import_duration = Histogram(
            "altmount_import_duration_seconds",
            "Time to import one NZB",
            buckets=_IMPORT_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_LiveCollector(ops))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
