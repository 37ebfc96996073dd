"""ProviderStats counters and the moving average of the speed."""

from __future__ import annotations

from twisted.internet.task import Clock

from altmount.nntp.stats import ProviderStats


def test_avg_speed_over_window():
    """Speed is bytes over the last ten seconds, divided by the time covered."""
    clock = Clock()
    stats = ProviderStats("p", clock.seconds)
    assert stats.avg_speed == 0.0
    for _ in range(20):
        stats.record_article(1000, 5.0)
        clock.advance(1)
    assert stats.avg_speed == 10_000 / 10
    clock.advance(30)
    assert stats.avg_speed == 0.0


def test_young_provider_speed_not_diluted():
    """A provider downloading for two seconds is averaged over two seconds, not ten."""
    clock = Clock()
    stats = ProviderStats("p", clock.seconds)
    stats.record_article(4000, 1.0)
    clock.advance(2)
    assert stats.avg_speed == 2000


def test_counters_and_dict():
    """Errors, misses and connections are counted and exported as plain data."""
    stats = ProviderStats("p", Clock().seconds, max_connections=5)
    stats.record_error("timeout", "provider p: no answer")
    stats.record_missing()
    stats.set_connections(3)
    stats.set_connections(1)
    data = stats.as_dict()
    assert data["errors"]["timeout"] == 1 and data["last_error"] == "provider p: no answer"
    assert data["articles_missing"] == 1
    assert (data["current_connections"], data["peak_connections"]) == (1, 3)
