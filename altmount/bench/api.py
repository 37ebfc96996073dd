"""`altmount bench api`: requests/s and latency of `/api/health` and PROPFIND.

Like `ab -n 1000 -c 50`: `concurrency` client threads, each on its own keep-alive
connection, share `requests` requests of one kind; a request counts when its whole
answer has been read. Statuses are reported, not judged: a 404 or 401 shows as such.
"""

from __future__ import annotations

import http.client
import itertools
import posixpath
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any
from urllib.parse import quote

from altmount.bench.common import percentile
from altmount.bench.httpclient import Target
from altmount.bench.stream import StreamOptions, local_altmount, remote_altmount

__all__ = ["load", "run_api_bench"]

PROPFIND_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?><propfind xmlns="DAV:"><allprop/></propfind>'
)


def load(
    target: Target,
    method: str,
    path: str,
    requests: int,
    concurrency: int,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> dict[str, Any]:
    """Send `requests` requests at `concurrency`; requests/s, latency percentiles, statuses."""
    tickets = itertools.count()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    send_headers = {**target.headers(), **(headers or {})}

    def client() -> None:
        conn: http.client.HTTPConnection | None = None
        mine: list[float] = []
        codes: Counter[int] = Counter()
        while next(tickets) < requests:
            if conn is None:
                conn = target.connect(30)
            started = time.perf_counter()
            try:
                conn.request(method, quote(path), body=body, headers=send_headers)
                response = conn.getresponse()
                response.read()
                codes[response.status] += 1
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                codes[0] += 1  # connection error
                conn.close() if conn else None
                conn = None
            mine.append(time.perf_counter() - started)
        if conn is not None:
            conn.close()
        with lock:
            latencies.extend(mine)
            statuses.update(codes)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started

    def ms(q: float) -> float | None:
        value = percentile(latencies, q)
        return None if value is None else round(value * 1000, 2)

    return {
        "requests": len(latencies),
        "concurrency": concurrency,
        "requests_per_s": round(len(latencies) / wall, 1) if wall else None,
        "latency_p50_ms": ms(50),
        "latency_p95_ms": ms(95),
        "latency_p99_ms": ms(99),
        "statuses": {str(code): count for code, count in sorted(statuses.items())},
    }


def run_api_bench(
    requests: int = 1000,
    concurrency: int = 50,
    server: str | None = None,
    path: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Load `/api/health` and a Depth-1 PROPFIND of a release folder; one row each."""
    log = progress or (lambda message: None)
    opts = StreamOptions(size_mb=8, click_size_mb=1, clicks=0, server=server, path=path)
    with local_altmount(opts, log) if server is None else nullcontext(remote_altmount(opts)) as env:
        target: Target = env["target"]
        folder = posixpath.dirname(env["path"]) + "/"
        log(f"GET /api/health × {requests}")
        health = load(target, "GET", "/api/health", requests, concurrency)
        log(f"PROPFIND {folder} × {requests}")
        propfind = load(
            target,
            "PROPFIND",
            folder,
            requests,
            concurrency,
            {"Depth": "1", "Content-Type": "application/xml"},
            PROPFIND_BODY,
        )
    return {"health": health, "propfind": propfind, "propfind_path": folder}
