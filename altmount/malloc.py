"""glibc malloc settings for a process that churns article-sized buffers.

Every socket read (up to 1 MiB) and every decoded article (about 700 KB) is a fresh
allocation freed moments later. By default glibc serves blocks above its (dynamic)
mmap threshold with mmap, and gives a free heap top above its trim threshold back to
the kernel, so a server that sleeps between answers, as it does when the provider
has latency, keeps returning pages and faulting them in again. Measured with
`altmount bench stream --latency-ms 50` (10 users, 1.2 GiB served): 530,000 minor
page faults and 3.95 CPU s/GiB with glibc's defaults, 22,000 and 2.41 with these
settings; at 0 ms 2.10 → 1.96 CPU s/GiB. Peak RSS does not change: what is kept is
what the streams' windows already needed.
"""

from __future__ import annotations

import ctypes
import logging
import os

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "tune_malloc"]

log = logging.getLogger(__name__)

#: Blocks below this come from the heap (glibc's largest allowed value on 64-bit).
MMAP_THRESHOLD = 32 << 20
#: Free memory at the heap top kept for reuse before any is returned to the kernel.
TRIM_THRESHOLD = 64 << 20

# mallopt(3) parameter numbers, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: Environment variables through which a user sets glibc's malloc themselves.
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def tune_malloc() -> bool:
    """Set glibc's mmap and trim thresholds for article-sized buffers.

    Does nothing (and returns False) when the C library is not glibc or the user
    set malloc's thresholds in the environment (GLIBC_TUNABLES, MALLOC_*_).
    """
    try:
        libc_version = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        return False
    if not libc_version or not libc_version.startswith("glibc"):
        return False
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "") or any(
        name in os.environ for name in _USER_SETTINGS
    ):
        return False
    libc = ctypes.CDLL(None)
    applied = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    applied = libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and applied
    if not applied:
        log.warning("glibc refused the malloc thresholds; running with its defaults")
    return applied
