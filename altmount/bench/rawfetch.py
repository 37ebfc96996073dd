"""The raw ceiling of `altmount bench stream`: articles fetched and decoded by a minimal client.

Deliberately independent of altmount's NNTP stack: N plain sockets (or stdlib `ssl`
sockets verified against `ca_file`), a fixed pipeline depth per connection,
`\\r\\n.\\r\\n` framing, sabyenc3 decode inline. Its own CPU is measured too.
Whatever altmount adds on top (HTTP, read-ahead, thread hand-offs, range
assembly) shows as the gap between its throughput and this one.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass

import sabyenc3

from altmount.malloc import tune_malloc

__all__ = ["raw_fetch"]

TERMINATOR = b"\r\n.\r\n"


@dataclass
class _Conn:
    sock: socket.socket
    buffer: bytearray
    pending: deque
    searched: int = 0
    greeted: bool = False


def _open(host: str, port: int, ca_file: str | None) -> socket.socket:
    """A connected socket; over TLS (handshake done, certificate verified) with `ca_file`."""
    sock = socket.create_connection((host, port))
    if ca_file:
        context = ssl.create_default_context(cafile=ca_file)
        sock = context.wrap_socket(sock, server_hostname="localhost")
    sock.setblocking(False)
    return sock


def _drain(sock: socket.socket) -> bytes:
    """Everything readable now (over TLS also what OpenSSL has already decrypted)."""
    parts = []
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except (BlockingIOError, ssl.SSLWantReadError):
            break
        if not chunk:
            raise ConnectionError("server closed the connection")
        parts.append(chunk)
    return b"".join(parts)


def raw_fetch(
    host: str,
    port: int,
    message_ids: list[str],
    connections: int = 20,
    depth: int = 4,
    ca_file: str | None = None,
) -> dict[str, float]:
    """Fetch and decode every article once; return bytes, seconds, MB/s and CPU-s/GiB
    of this process (over TLS to "localhost" at host:port when `ca_file` is given).

    Runs with the malloc settings of `altmount serve`, so the ceiling is not
    handicapped by glibc's defaults.
    """
    tune_malloc()
    todo = deque(message_ids)
    sel = selectors.DefaultSelector()
    conns = []
    for _ in range(min(connections, len(message_ids))):
        sock = _open(host, port, ca_file)
        conn = _Conn(sock, bytearray(), deque())
        sel.register(sock, selectors.EVENT_READ, conn)
        conns.append(conn)
    decoded_bytes = 0
    done = 0
    started, cpu = time.perf_counter(), time.process_time()

    def refill(conn: _Conn) -> None:
        out = []
        while todo and len(conn.pending) < depth:
            mid = todo.popleft()
            conn.pending.append(mid)
            out.append(f"BODY <{mid}>\r\n".encode())
        if out:
            conn.sock.sendall(b"".join(out))

    while done < len(message_ids):
        for key, _ in sel.select(timeout=30):
            conn = key.data
            conn.buffer += _drain(conn.sock)
            while True:
                if not conn.greeted:
                    end = conn.buffer.find(b"\r\n")
                    if end < 0:
                        break
                    del conn.buffer[: end + 2]
                    conn.greeted = True
                    refill(conn)
                    continue
                if not conn.pending:
                    break
                end = conn.buffer.find(TERMINATOR, max(0, conn.searched - 4))
                if end < 0:
                    conn.searched = len(conn.buffer)
                    break
                status_end = conn.buffer.find(b"\r\n")
                if conn.buffer[:3] != b"222":
                    raise RuntimeError(f"unexpected response {bytes(conn.buffer[:40])!r}")
                body = bytes(conn.buffer[status_end + 2 : end + 2])
                del conn.buffer[: end + 5]
                conn.searched = 0
                conn.pending.popleft()
                data, _name, _crc_ok = sabyenc3.decode_usenet_chunks([body])
                decoded_bytes += len(data)
                done += 1
                refill(conn)
    elapsed, used = time.perf_counter() - started, time.process_time() - cpu
    for conn in conns:
        conn.sock.close()
    return {
        "bytes": decoded_bytes,
        "seconds": elapsed,
        "mb_s": decoded_bytes / elapsed / 1e6,
        "cpu_s_per_gib": used / (decoded_bytes / (1 << 30)) if decoded_bytes else 0.0,
    }
