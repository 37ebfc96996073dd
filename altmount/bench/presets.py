"""The streaming presets of AltMount's operator guide and its memory estimate.

From the guide's "Performance Optimization" page (docs/docs/5. Troubleshooting/
performance.md of the AltMount repository, the revision that still tuned
`max_range_size`, `streaming_chunk_size` and `max_download_workers`; later ones tune
`max_prefetch` only). `altmount bench stream --preset NAME` runs with them.
"""

from __future__ import annotations

__all__ = ["GUIDE_WORKER_MIB", "PRESETS", "guide_estimate_mib"]

#: max_range_size MiB, streaming_chunk_size MiB, max_download_workers.
PRESETS: dict[str, tuple[int, int, int]] = {
    "constrained": (16, 4, 12),
    "balanced": (64, 16, 25),
    "high-performance": (128, 32, 35),
    "4k": (256, 64, 40),
}
#: The guide's memory per download worker, MiB ("~25MB per worker").
GUIDE_WORKER_MIB = 25


def guide_estimate_mib(max_range_mib: int, workers: int, active_ranges: int) -> int:
    """The guide's estimate: (range_size × active_ranges) + workers × 25 MB, in MiB."""
    return max_range_mib * active_ranges + workers * GUIDE_WORKER_MIB
