"""The health store's map grows on demand up to metadata.map_size_mb, then says so."""

from __future__ import annotations

import pytest

from altmount.errors import MetadataError
from altmount.ops.healthstore import FileHealth, HealthStore

SMALL_MAP = 256 << 10


def record(n: int) -> FileHealth:
    """A health record of about 10 KB (100 missing message-ids)."""
    missing = tuple(f"<{n}-{i}-{'x' * 80}@test>" for i in range(100))
    return FileHealth(f"/f/{n:05d}.mkv", "degraded", missing=missing, missing_count=100)


def test_health_map_grows_on_demand(tmp_path):
    """Records past the first map fit after it grew; all of them read back."""
    store = HealthStore(tmp_path / "h", map_size=64 << 20, initial_map_size=SMALL_MAP)
    try:
        for n in range(100):
            store.put(record(n))
        assert store._map.map_size > SMALL_MAP
        assert store.count() == 100
        assert store.get("/f/00042.mkv") == record(42)
    finally:
        store.close()


def test_health_map_full_at_the_limit_names_the_setting(tmp_path):
    """At the limit a write fails with a MetadataError naming metadata.map_size_mb; the
    records stored before stay."""
    store = HealthStore(tmp_path / "h", map_size=1 << 20, initial_map_size=SMALL_MAP)
    try:
        stored = 0
        with pytest.raises(MetadataError, match=r"reached metadata\.map_size_mb \(1 MiB\)"):
            for n in range(1000):
                store.put(record(n))
                stored += 1
        assert stored > 20 and store.count() == stored
    finally:
        store.close()
