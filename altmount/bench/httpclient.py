"""The benchmark's HTTP client: timed GETs of byte ranges, SABnzbd addfile, PROPFIND.

Plain `http.client`, one connection per transfer, reads into one reused 1 MiB
buffer so that the client costs as little CPU as it can on a shared 2-core box.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import time
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

__all__ = ["Target", "Transfer", "add_nzb", "timed_get", "wait_first_byte"]

READ_SIZE = 1 << 20


@dataclass(frozen=True, slots=True)
class Target:
    """Where altmount listens and how to log in."""

    host: str
    port: int
    user: str = ""
    password: str = ""

    @classmethod
    def from_url(cls, url: str) -> Target:
        """`http://user:pass@host:port` → Target."""
        parts = urlsplit(url)
        return cls(
            parts.hostname or "127.0.0.1",
            parts.port or 80,
            parts.username or "",
            parts.password or "",
        )

    def headers(self) -> dict[str, str]:
        """Basic auth header when a user is set."""
        if not self.user:
            return {}
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def connect(self, timeout: float = 120.0) -> http.client.HTTPConnection:
        """A new connection to the target."""
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)


@dataclass(slots=True)
class Transfer:
    """One GET: when it started, its first byte, its end, and (time, bytes) per read."""

    started: float
    ttfb: float = 0.0
    ended: float = 0.0
    size: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """Wall time of the whole transfer."""
        return self.ended - self.started


def timed_get(
    target: Target,
    path: str,
    start: int | None = None,
    length: int | None = None,
    md5: str | None = None,
) -> Transfer:
    """GET `path` (the range start..start+length-1 when given) and time every read.

    Raises RuntimeError on an unexpected status, a short body or an md5 mismatch.
    """
    headers = target.headers()
    if start is not None and length is not None:
        headers["Range"] = f"bytes={start}-{start + length - 1}"
    conn = target.connect()
    buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    digest = hashlib.md5() if md5 else None
    transfer = Transfer(time.perf_counter())
    try:
        conn.request("GET", quote(path), headers=headers)
        response = conn.getresponse()
        if response.status not in (200, 206):
            raise RuntimeError(f"GET {path}: HTTP {response.status} {response.read(200)!r}")
        while count := response.readinto(buffer):
            now = time.perf_counter()
            if not transfer.size:
                transfer.ttfb = now - transfer.started
            transfer.size += count
            transfer.samples.append((now, count))
            if digest:
                digest.update(view[:count])
        transfer.ended = time.perf_counter()
    finally:
        conn.close()
    if length is not None and transfer.size != length:
        raise RuntimeError(f"GET {path}: {transfer.size} bytes, expected {length}")
    if digest and digest.hexdigest() != md5:
        raise RuntimeError(f"GET {path}: served bytes differ from the posted file (md5)")
    return transfer


def add_nzb(target: Target, api_key: str, nzb: bytes, name: str) -> None:
    """SABnzbd `mode=addfile` with a multipart upload, as Sonarr/Radarr send it."""
    boundary = "altmount-bench-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="name"; '
            f'filename="{name}.nzb"\r\nContent-Type: application/x-nzb\r\n\r\n'
        ).encode()
        + nzb
        + f"\r\n--{boundary}--\r\n".encode()
    )
    conn = target.connect()
    try:
        conn.request(
            "POST",
            f"/sabnzbd/api?mode=addfile&output=json&apikey={api_key}&nzbname={name}",
            body=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        response = conn.getresponse()
        answer = response.read()
        try:
            accepted = json.loads(answer).get("status") is True
        except ValueError:
            accepted = False
        if response.status != 200 or not accepted:
            raise RuntimeError(f"addfile {name}: HTTP {response.status} {answer[:200]!r}")
    finally:
        conn.close()


def wait_first_byte(target: Target, path: str, timeout: float, interval: float = 0.005) -> None:
    """Poll `GET path` (first byte only) until it answers with data."""
    deadline = time.perf_counter() + timeout
    headers = {**target.headers(), "Range": "bytes=0-0"}
    conn = target.connect()
    try:
        while True:
            conn.request("GET", quote(path), headers=headers)
            response = conn.getresponse()
            data = response.read()
            if response.status in (200, 206) and data:
                return
            if time.perf_counter() > deadline:
                raise TimeoutError(
                    f"{path} gave no byte within {timeout:.0f} s "
                    f"(last answer HTTP {response.status})"
                )
            time.sleep(interval)
    finally:
        conn.close()
