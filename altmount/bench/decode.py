"""`altmount bench decode`: yEnc decode throughput, our `_core` path vs sabyenc3 vs memcpy.

Each cell decodes (or copies) one generated article over and over for a fixed time,
on 1 and on all cores, in threads (the GIL is released by sabyenc3 and our kernels)
and through the process pool (`altmount.engine_process`, bodies in shared memory).
Throughput is MB/s of decoded article data (10^6 bytes per second).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import sabyenc3

from altmount import _core
from altmount.engine_process import ProcessDecodePool
from altmount.testing.articles import yenc_article

__all__ = ["ARTICLE_SIZES", "run_decode_bench"]

#: The two usual part sizes: 384 KB (older posters) and 700 KiB (nyuu's default).
ARTICLE_SIZES = (384_000, 716_800)


def make_article(size: int, seed: int = 1) -> bytes:
    """The dot-stuffed body of one yEnc part of `size` random bytes."""
    data = random.Random(seed).randbytes(size)
    return yenc_article(
        data, name="bench.mkv", part=2, total_parts=3, begin=size, file_size=3 * size
    )


def _kernels(body: bytes, size: int) -> dict[str, Callable[[], Any]]:
    source = np.frombuffer(body, dtype=np.uint8, count=size)
    target = np.empty(size, dtype=np.uint8)
    return {
        "memcpy": lambda: np.copyto(target, source),
        "sabyenc3": lambda: sabyenc3.decode_usenet_chunks([body]),
        "core": lambda: _core.decode_article(body),
    }


def _threads(fn: Callable[[], Any], threads: int, seconds: float) -> int:
    """Calls of `fn` completed by `threads` threads in `seconds`."""
    counts = [0] * threads
    start = threading.Barrier(threads + 1)
    deadline = [0.0]

    def loop(slot: int) -> None:
        start.wait()
        done = 0
        while time.perf_counter() < deadline[0]:
            fn()
            done += 1
        counts[slot] = done

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    deadline[0] = time.perf_counter() + seconds
    start.wait()
    for worker in workers:
        worker.join()
    return sum(counts)


def _processes(pool: ProcessDecodePool, body: bytes, seconds: float, depth: int) -> int:
    """Articles decoded by the process pool in `seconds`, `depth` kept in flight."""
    done = [0]

    def count(article: Any) -> None:
        done[0] += 1

    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        while pool.in_flight < depth:
            pool.decode(body).addCallback(count)
        pool.process_replies(1.0)
    while pool.in_flight:
        pool.process_replies(1.0)
    return done[0]


def run_decode_bench(
    sizes: tuple[int, ...] = ARTICLE_SIZES,
    seconds: float = 1.0,
    cores: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure every cell; returns {"cores", "seconds", "rows": [...]} with one row
    per (article size, method, pool, workers) and its MB/s."""
    cores = cores or os.cpu_count() or 1
    counts = sorted({1, cores})
    rows: list[dict[str, Any]] = []

    def record(size: int, method: str, pool: str, workers: int, calls: int, elapsed: float) -> None:
        rows.append(
            {
                "article_size": size,
                "method": method,
                "pool": pool,
                "workers": workers,
                "mb_s": round(calls * size / elapsed / 1e6, 1),
            }
        )
        if progress:
            progress(f"{size} B {method} {pool}×{workers}")

    for size in sizes:
        body = make_article(size)
        for method, fn in _kernels(body, size).items():
            for workers in counts:
                started = time.perf_counter()
                calls = _threads(fn, workers, seconds)
                record(size, method, "thread", workers, calls, time.perf_counter() - started)
    for workers in counts:
        pool = ProcessDecodePool(None, workers)
        pool.start()
        try:
            for size in sizes:
                body = make_article(size)
                _processes(pool, body, min(seconds, 0.2), 2 * workers)  # warm the blocks
                started = time.perf_counter()
                calls = _processes(pool, body, seconds, 2 * workers)
                record(size, "core", "process", workers, calls, time.perf_counter() - started)
        finally:
            pool.stop()
    return {"cores": cores, "seconds": seconds, "rows": rows}


def decode_table(result: dict[str, Any]) -> list[str]:
    """The decode result as a text table (one line per cell)."""
    lines = [f"{'article':>9} {'method':<9} {'pool':<8} {'workers':>7} {'MB/s':>9}"]
    for row in result["rows"]:
        lines.append(
            f"{row['article_size']:>9} {row['method']:<9} {row['pool']:<8} "
            f"{row['workers']:>7} {row['mb_s']:>9,.0f}"
        )
    return lines
