"""The sans-IO scheduling rules (streams first) and the circuit breaker state machine."""

from __future__ import annotations

import pytest

from altmount.nntp.breaker import BreakerState, CircuitBreaker
from altmount.nntp.schedule import (
    ClassQueue,
    RequestClass,
    background_limit,
    choose_class,
    request_class,
)

S, IMP, B = RequestClass.STREAM, RequestClass.IMPORT, RequestClass.BACKGROUND


def test_priority_numbers_map_to_classes():
    """Streams 0, imports 2, health/provider tests 5 and 10 fall in their classes."""
    assert [request_class(p) for p in (0, 2, 5, 10)] == [S, IMP, B, B]


@pytest.mark.parametrize(
    ("capacity", "headroom", "streams", "limit"),
    [(20, 2, 0, 20), (20, 2, 1, 18), (20, 2, 3, 14), (20, 2, 50, 1), (1, 2, 1, 1)],
)
def test_background_limit_follows_altmount(capacity, headroom, streams, limit):
    """capacity - min(headroom x streams, capacity - 1): never below one connection."""
    assert background_limit(capacity, headroom, streams) == limit


def test_streams_go_first_but_no_class_starves():
    """A stream job wins over imports already in flight; an idle class gets its turn."""
    assert choose_class({S: 3, IMP: 5}, {S: 1, IMP: 2}, True) is S
    assert choose_class({S: 3, IMP: 5}, {S: 4, IMP: 0}, True) is IMP
    assert choose_class({S: 0, IMP: 5, B: 1}, {IMP: 1, B: 1}, True) is IMP
    assert choose_class({S: 0, IMP: 5}, {}, False) is None


def test_class_queue_orders_by_priority_then_arrival():
    """Within a class, lower priority first, FIFO among equals; removal keeps order."""
    queue: ClassQueue[str] = ClassQueue()
    for item, priority in (("h1", 10), ("p1", 5), ("h2", 10), ("p2", 5)):
        queue.push(item, priority)
    assert queue.remove(lambda item: item == "p1") == ["p1"]
    assert [queue.pop(B) for _ in range(3)] == ["p2", "h1", "h2"] and not len(queue)


def test_breaker_opens_probes_and_closes():
    """Closed -> open after the threshold -> half open -> closed on an answer."""
    breaker = CircuitBreaker(threshold=3, first_pause=5, max_pause=40)
    delays = []
    for n in range(2):
        assert not breaker.failure(float(n), "refused")
        delays.append(breaker.reconnect_delay())
    assert delays == [0.5, 1.0] and breaker.failure(2.0, "refused")
    assert breaker.state is BreakerState.OPEN and breaker.reopen_at == 7.0
    breaker.pause_over()
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.success(8.0) and breaker.closed and breaker.failures == 0


def test_breaker_pause_grows_on_failed_probes_and_is_capped():
    """Each failed half-open probe doubles the pause, up to max_pause."""
    breaker = CircuitBreaker(threshold=1, first_pause=5, max_pause=30)
    breaker.failure(0.0, "timeout")
    pauses = [breaker.pause]
    for n in range(4):
        breaker.pause_over()
        assert breaker.failure(10.0 * (n + 1), "timeout")
        pauses.append(breaker.pause)
    assert pauses == [5, 10, 20, 30, 30]
    assert breaker.as_dict(40.0)["state"] == "open" and breaker.times_opened == 5
