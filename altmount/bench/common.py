"""Shared pieces of `altmount bench`: statistics, /proc accounting, output.

The statistics are pure functions; the /proc readers are Linux-only on purpose
(benchmarks charge CPU and memory to altmount's processes, which needs /proc).
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

__all__ = [
    "ProcessTree",
    "RssSampler",
    "emit",
    "free_port",
    "percentile",
    "wait_for",
    "windowed_rates",
]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def windowed_rates(
    samples: Iterable[tuple[float, int]], start: float, window: float = 1.0
) -> list[float]:
    """MB/s in each full `window` of one transfer, from (time, bytes read) samples.

    The partial window at the end is left out (it would read as a stall); a transfer
    shorter than one window gives no rate at all.
    """
    totals: dict[int, int] = {}
    last = start
    for when, count in samples:
        slot = int((when - start) // window)
        totals[slot] = totals.get(slot, 0) + count
        last = max(last, when)
    full = int((last - start) // window)
    return [totals.get(slot, 0) / window / 1e6 for slot in range(full)]


def free_port() -> int:
    """An ephemeral port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `predicate` every 20 ms; TimeoutError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


class ProcessTree:
    """CPU and memory of a process and its descendants (decode workers), from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def pids(self) -> list[int]:
        """The process and every live descendant."""
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                try:
                    todo.extend(int(child) for child in task.read_text().split())
                except OSError:
                    continue
        return found

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the tree (live processes)."""
        total = 0.0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        return total

    def _status(self, pid: int, key: str) -> float:
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            return 0.0
        for line in lines:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
        return 0.0

    def peak_rss_mib(self) -> float:
        """Peak resident set (VmHWM) of the main process, MiB."""
        return self._status(self.pid, "VmHWM:")

    def reset_peak_rss(self) -> bool:
        """Restart the main process's peak (VmHWM) from its RSS now (Linux clear_refs);
        False when not allowed (another user's process)."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def rss_mib(self) -> tuple[float, float]:
        """(main process RSS, sum over the tree) now, MiB. The sum counts shared
        memory once per process that maps it, so it is an upper bound."""
        main = self._status(self.pid, "VmRSS:")
        others = sum(self._status(pid, "VmRSS:") for pid in self.pids() if pid != self.pid)
        return main, main + others


class RssSampler:
    """Samples a ProcessTree's RSS every `interval` s in a thread (for the RSS plot)."""

    def __init__(self, tree: ProcessTree, interval: float = 0.25) -> None:
        self.tree = tree
        self.interval = interval
        self.samples: list[tuple[float, float, float]] = []
        self.peak_tree_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._start = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            main, tree = self.tree.rss_mib()
            self.peak_tree_mib = max(self.peak_tree_mib, tree)
            self.samples.append((round(time.monotonic() - self._start, 2), main, tree))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _flatten(result: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in result.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows.extend(_flatten(value, name + "."))
        elif isinstance(value, list) and value and isinstance(value[0], (list, tuple, dict)):
            continue  # series (RSS samples, sweeps) go to the JSON and the plots only
        else:
            rows.append((name, value))
    return rows


def emit(result: Mapping[str, Any], as_json: bool) -> None:
    """Print a result as one JSON document or as an aligned two-column table."""
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    rows = _flatten(result)
    width = max((len(name) for name, _ in rows), default=0)
    for name, value in rows:
        if isinstance(value, float):
            value = f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
        click.echo(f"{name:<{width}}  {'-' if value is None else value}")
