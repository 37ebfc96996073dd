"""Ops building blocks: meters, file health sampling and checks, the health store, routes."""

from __future__ import annotations

import random

from twisted.internet import defer, task

from altmount.config import HealthConfig
from altmount.metadata import FileRecord, SegmentTable
from altmount.ops.filehealth import check_file, classify, next_interval, sample_indices
from altmount.ops.healthstore import FileHealth, HealthStore
from altmount.ops.meters import DurationMeter, RateMeter, human_rate
from altmount.web.opsapi import Route, build_ops_routes


def test_rate_meter_window():
    """A rate is the bytes of the last window over the time covered, and decays to zero."""
    clock = task.Clock()
    meter = RateMeter(clock.seconds, window=5)
    for _ in range(5):
        meter.add(1000)
        clock.advance(1)
    assert meter.rate() == 1000
    assert meter.total == 5000
    clock.advance(10)
    assert meter.rate() == 0


def test_duration_meter_average():
    """The average duration is that of the window's records."""
    clock = task.Clock()
    meter = DurationMeter(clock.seconds, window=60)
    meter.add(100)
    meter.add(300)
    assert meter.average() == 200
    assert meter.count == 2


def test_human_rate():
    """Rates read as B/s, KiB/s, MiB/s."""
    assert human_rate(12) == "12 B/s"
    assert human_rate(2048) == "2.0 KiB/s"
    assert human_rate(5 * 1024 * 1024) == "5.0 MiB/s"


def test_sample_always_first_and_last():
    """The sample holds the first and last segment and the asked share, distinct, sorted."""
    picked = sample_indices(200, 10, random.Random(1))
    assert picked[0] == 0 and picked[-1] == 199
    assert len(picked) == 20 == len(set(picked))
    assert sample_indices(1, 50, random.Random(1)) == [0]
    assert sample_indices(0, 50, random.Random(1)) == []


def test_classify_and_interval():
    """Missing within tolerance is degraded, beyond it corrupted; intervals grow with age."""
    assert classify(0, 10, 0) == "healthy"
    assert classify(1, 10, 10) == "degraded"
    assert classify(2, 10, 10) == "corrupted"
    config = HealthConfig(min_recheck_interval_hours=1, max_recheck_interval_hours=10)
    assert next_interval(60, config) == 3600
    assert next_interval(5 * 3600, config) == 5 * 3600
    assert next_interval(99 * 3600, config) == 36000


class _Router:
    """STAT answers from a set of missing ids; counts the requests."""

    def __init__(self, missing: set[str]) -> None:
        self.missing = missing
        self.asked: list[str] = []

    def stat(self, message_id: str, priority: int = 0) -> defer.Deferred:
        self.asked.append(message_id)
        return defer.succeed(message_id not in self.missing)


def _record(count: int) -> FileRecord:
    ids = [f"seg{i}@test" for i in range(count)]
    table = SegmentTable.uniform(ids, 100, 100 * count)
    return FileRecord("/a/f.mkv", 100 * count, 0.0, "ok", table, "rel")


def test_check_file_healthy_and_corrupted_fails_fast():
    """All found → healthy; a missing first segment with no tolerance → corrupted, early stop."""
    config = HealthConfig(segment_sample_percentage=100, max_connections_for_health_checks=1)
    healthy = check_file(_Router(set()), _record(10), config, random.Random(0), 5.0)
    result = healthy.result
    assert (result.status, result.sampled, result.missing_count) == ("healthy", 10, 0)
    router = _Router({"seg0@test"})
    bad = check_file(router, _record(50), config, random.Random(0), 5.0).result
    assert bad.status == "corrupted"
    assert bad.missing == ("seg0@test",)
    assert len(router.asked) < 50


def test_health_store_due_order(tmp_path):
    """Due records come most overdue first; replacing a record moves it in the index."""
    store = HealthStore(tmp_path / "h")
    store.put(FileHealth("/b", next_check=20.0))
    store.put(FileHealth("/a", next_check=10.0))
    store.put(FileHealth("/c", next_check=99.0))
    assert [h.path for h in store.due(50.0, 10)] == ["/a", "/b"]
    store.put(FileHealth("/a", status="healthy", next_check=200.0))
    assert [h.path for h in store.due(50.0, 10)] == ["/b"]
    store.delete("/b")
    assert store.due(50.0, 10) == []
    assert store.count() == 2
    store.close()


def test_route_patterns():
    """Route patterns match one segment, digits or the rest of the path."""
    assert Route((b"GET",), "/api/queue/{item_id:int}", print).regex().match("/api/queue/12")
    assert not Route((b"GET",), "/api/queue/{item_id:int}", print).regex().match("/api/queue/up")
    found = (
        Route((b"POST",), "/api/health/files/{t:path}/check", print)
        .regex()
        .match("/api/health/files/a/b%20c.mkv/check")
    )
    assert found.group("t") == "a/b%20c.mkv"


def test_routes_not_ours_return_none():
    """A path no route has is left to the caller (None), e.g. /api/queue/upload."""
    from altmount.config import Config

    routes = build_ops_routes(Config(), engine=None, ops=None)
    assert routes.match(b"POST", "/api/queue/upload") == (None, {}, False)
    route, params, known = routes.match(b"GET", "/api/queue/7")
    assert known and params == {"item_id": "7"}


def test_heartbeat_measures_reactor_lag():
    """A timer that runs late by 300 ms is recorded as a stall with its lag."""
    from twisted.internet.task import Clock

    from altmount.ops.heartbeat import ReactorHeartbeat

    clock = Clock()
    beat = ReactorHeartbeat(clock, interval=0.05, clock=clock.seconds)
    beat.start()
    clock.advance(0.05)
    assert beat.max_lag == 0 and beat.stalls == 0
    clock.advance(0.35)  # the reactor came back 300 ms late
    assert round(beat.max_lag, 3) == 0.3 and beat.stalls == 1
    assert beat.as_dict()["max_lag_ms"] == 300.0
    beat.stop()
    assert clock.getDelayedCalls() == []


def test_heartbeat_slows_down_while_idle():
    """Idle, the heartbeat wakes once per idle interval; busy again, every interval."""
    from twisted.internet.task import Clock

    from altmount.ops.heartbeat import ReactorHeartbeat

    clock, busy = Clock(), [False]
    beat = ReactorHeartbeat(
        clock, interval=0.05, idle_interval=1.0, busy=lambda: busy[0], clock=clock.seconds
    )
    beat.start()
    assert [call.getTime() for call in clock.getDelayedCalls()] == [1.0]
    busy[0] = True
    clock.advance(1.0)
    assert [call.getTime() for call in clock.getDelayedCalls()] == [1.05]
    clock.advance(0.35)  # 300 ms late while busy: a stall
    assert round(beat.max_lag, 3) == 0.3 and beat.stalls == 1
    beat.stop()
    assert clock.getDelayedCalls() == []


def test_health_store_move_tree_carries_damage(tmp_path):
    """move_tree renames a folder's records (damage and due time kept), nothing else."""
    store = HealthStore(tmp_path / "h")
    store.put(FileHealth("/complete/tv/Show/e1.mkv", "healthy", next_check=50.0))
    store.put(FileHealth("/complete/tv/Showroom/x.mkv", "healthy", next_check=60.0))
    store.mark_damaged("/complete/tv/Show/e1.mkv", "segment 3 (<a@b>) missing", "a@b")
    moved = store.move_tree("/complete/tv/Show", "/library/Show")
    assert moved == [("/complete/tv/Show/e1.mkv", "/library/Show/e1.mkv")]
    health = store.get("/library/Show/e1.mkv")
    assert health.damage == ("segment 3 (<a@b>) missing",) and health.wants_repair
    assert store.get("/complete/tv/Show/e1.mkv") is None
    assert store.get("/complete/tv/Showroom/x.mkv") is not None
    assert [h.path for h in store.due(55.0, 10)] == ["/library/Show/e1.mkv"]
    store.close()


def test_health_store_forget_tree(tmp_path):
    """forget_tree drops a file's record or a folder's, and their due entries."""
    store = HealthStore(tmp_path / "h")
    for path in ("/a/b/1.mkv", "/a/b/2.mkv", "/a/bc.mkv"):
        store.put(FileHealth(path, next_check=1.0))
    assert sorted(store.forget_tree("/a/b")) == ["/a/b/1.mkv", "/a/b/2.mkv"]
    assert store.forget_tree("/a/bc.mkv") == ["/a/bc.mkv"]
    assert store.count() == 0 and store.due(10.0, 10) == []
    store.close()
