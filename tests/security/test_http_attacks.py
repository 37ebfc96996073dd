"""Hostile HTTP against the real site on 127.0.0.1, over raw sockets so every byte is ours.

The server (tests/security/_siteserver.py) runs in a child process with a 2 s idle
timeout. Path traversal, oversized heads and bodies, request smuggling, slowloris,
and the login rate limit; the child's log is checked for leaked secrets at the end.
"""

from __future__ import annotations

import base64
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _siteserver import BODY_TIMEOUT, FILE_DATA, KEY, MAX_PER_ADDRESS, PASSWORD, USER

IDLE_TIMEOUT = 2.0
GOOD = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
WRONG_PASSWORD = "hunter2-wrong"
BAD = "Basic " + base64.b64encode(f"{USER}:{WRONG_PASSWORD}".encode()).decode()


class Child:
    """The server process: its port and everything it logged."""

    def __init__(self, process: subprocess.Popen, port: int) -> None:
        self.process = process
        self.port = port
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line.decode("utf-8", "replace"))


@pytest.fixture(scope="module")
def child(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Child]:
    """The site in a child process, torn down after the module."""
    folder = tmp_path_factory.mktemp("site")
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("_siteserver.py")),
            str(folder),
            str(IDLE_TIMEOUT),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=root,
        env={**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, "test server did not start"
    server = Child(process, int(line))
    try:
        yield server
    finally:
        process.kill()  # its queue thread pool would make a clean stop slow
        process.wait(timeout=10)


def exchange(port: int, raw: bytes, source: str = "127.0.0.1") -> bytes:
    """Send `raw` from `source` and return all the server sends until it closes.

    No half-close: Twisted takes a client's FIN as the end of the connection.
    """
    with socket.socket() as sock:
        sock.bind((source, 0))
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        sock.sendall(raw)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def statuses(answer: bytes) -> list[int]:
    """The status codes of every response in `answer`."""
    return [int(code) for code in re.findall(rb"(?:^|\r\n)HTTP/1\.[01] (\d{3}) ", answer)]


def get(path: bytes, *headers: bytes, method: bytes = b"GET") -> bytes:
    head = [method + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    return b"\r\n".join(head + list(headers)) + b"\r\n\r\n"


AUTH = b"Authorization: " + GOOD.encode()

TRAVERSALS = [
    b"/../../../../etc/passwd",
    b"/complete/../../etc/passwd",
    b"/%2e%2e/%2e%2e/etc/passwd",
    b"/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    b"/complete/movies/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    b"/webdav/..%2f..%2fetc/passwd",
    b"/complete/movies/film.mkv%00.txt",
    b"/complete/movies/film.mkv%00",
    b"/..\\..\\etc\\passwd",
    b"/%5c..%5c..%5cetc%5cpasswd",
    b"/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
    b"/%c0%af..%c0%afetc%c0%afpasswd",
    b"/%252e%252e/%252e%252e/etc/passwd",
    b"http://evil.example/../../etc/passwd",
    b"http://127.0.0.1/%2e%2e/etc/passwd",
    b"//etc/passwd",
    b"/ui/../../../etc/passwd",
    b"/ui/%2e%2e/%2e%2e/etc/passwd",
    b"/ui/static/..%2f..%2f..%2fsite.py",
    b"/webdav/%2e%2e/%2e%2e/",
]


@pytest.mark.parametrize("target", TRAVERSALS)
@pytest.mark.parametrize("method", [b"GET", b"PROPFIND"])
def test_traversal_never_leaves_the_tree(child: Child, target: bytes, method: bytes) -> None:
    """Every traversal form is a 4xx, and no host file's bytes come back."""
    extra = [AUTH, b"Depth: 0"] if method == b"PROPFIND" else [AUTH]
    answer = exchange(child.port, get(target, *extra, method=method))
    assert statuses(answer), answer[:200]
    assert 400 <= statuses(answer)[0] < 500, answer[:300]
    assert b"root:" not in answer and b"import " not in answer


def test_the_file_itself_is_served(child: Child) -> None:
    """The same server does serve a real file (the battery above is not vacuous)."""
    answer = exchange(child.port, get(b"/complete/movies/film.mkv", AUTH))
    assert statuses(answer) == [200]
    assert answer.endswith(FILE_DATA[-1000:])


def test_100k_header_line_is_431(child: Child) -> None:
    """One header line of 100 KB gets 431 and the connection closed, not a silent drop."""
    answer = exchange(child.port, get(b"/live", b"X-Big: " + b"a" * 100_000))
    assert statuses(answer) == [431]


def test_many_headers_are_refused(child: Child) -> None:
    """Two thousand small headers (past Twisted's 16 KiB head total) get a 400."""
    headers = [b"X-H%d: v" % i for i in range(2000)]
    assert statuses(exchange(child.port, get(b"/live", *headers))) == [400]


def test_oversized_body_is_413(child: Child) -> None:
    """A body announced over the cap is refused with 413 before any of it is read."""
    head = get(b"/api/queue/upload", AUTH, b"Content-Length: 99999999999", method=b"POST")
    assert statuses(exchange(child.port, head)) == [413]


def test_oversized_chunked_body_is_413(child: Child) -> None:
    """A chunked body passing the cap while it arrives is cut off with 413."""
    head = get(b"/api/queue/upload", AUTH, b"Transfer-Encoding: chunked", method=b"POST")
    with socket.create_connection(("127.0.0.1", child.port), timeout=10) as sock:
        sock.sendall(head)
        chunk = b"%x\r\n" % (1 << 20) + b"x" * (1 << 20) + b"\r\n"
        answer = b""
        try:
            for _ in range(80):
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            answer = sock.recv(4096)
        except ConnectionResetError:
            pass
    assert statuses(answer) == [413]


@pytest.mark.parametrize(
    "headers",
    [
        [b"Content-Length: 5", b"Transfer-Encoding: chunked"],
        [b"Transfer-Encoding: chunked", b"Content-Length: 5"],
        [b"Content-Length: 5", b"Content-Length: 6"],
        [b"Content-Length: 5", b"Content-Length: 5"],
        [b"Content-Length: 5, 5"],
        [b"Content-Length: +5"],
        [b"Content-Length: -1"],
        [b"Transfer-Encoding: gzip, chunked"],
        [b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"],
        [b"Transfer-Encoding : chunked"],
        [b"Content-Length: 0x5"],
    ],
    ids=lambda h: " | ".join(x.decode() for x in h),
)
def test_smuggling_is_refused(child: Child, headers: list[bytes]) -> None:
    """Conflicting or malformed framing headers end in 400 and nothing smuggled is served."""
    smuggled = get(b"/complete/movies/film.mkv", AUTH)
    raw = (
        b"\r\n".join([b"POST /live HTTP/1.1", b"Host: 127.0.0.1", *headers])
        + b"\r\n\r\n0\r\n\r\n"
        + smuggled
    )
    answer = exchange(child.port, raw)
    codes = statuses(answer)
    assert codes and codes[0] == 400, answer[:300]
    assert 200 not in codes[1:] and FILE_DATA[:64] not in answer


def test_slowloris_times_out_without_starving_others(child: Child) -> None:
    """Clients trickling a header byte every 0.2 s are cut off near the idle timeout while
    a normal client is answered at once throughout."""
    cut_after: list[float] = []

    def slow_client() -> None:
        with socket.create_connection(("127.0.0.1", child.port), timeout=10) as sock:
            started = time.monotonic()
            sock.sendall(b"GET /live HTTP/1.1\r\n")
            try:
                for byte in b"X-Slow: " + b"a" * 200:
                    sock.sendall(bytes([byte]))
                    time.sleep(0.2)  # the attack is the slowness; this is a real-socket test
                    if sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b"":
                        break
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                pass
            finally:
                cut_after.append(time.monotonic() - started)

    def still_alive() -> None:
        while len(cut_after) < 10:
            started = time.monotonic()
            assert statuses(exchange(child.port, get(b"/live"))) == [200]
            assert time.monotonic() - started < 0.5
            time.sleep(0.1)

    slow = [threading.Thread(target=slow_client) for _ in range(10)]
    for thread in slow:
        thread.start()
    still_alive()
    for thread in slow:
        thread.join()
    assert len(cut_after) == 10
    assert IDLE_TIMEOUT - 0.5 < min(cut_after) and max(cut_after) < IDLE_TIMEOUT + 2.0, cut_after


def test_trickled_body_is_cut_at_the_body_deadline(child: Child) -> None:
    """A body trickled a byte every 0.2 s (each byte restarting the idle timer) is answered
    408 and cut near the body deadline, not held open."""
    head = get(b"/api/queue/upload", AUTH, b"Content-Length: 1000", method=b"POST")
    with socket.create_connection(("127.0.0.1", child.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(head)
        answer = b""
        for _ in range(100):
            # A byte every 0.2 s unless the server has answered (the slowness is the attack).
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                break
            sock.sendall(b"x")
        elapsed = time.monotonic() - started
        try:
            answer = sock.recv(4096)
        except OSError:
            pass
    assert statuses(answer) == [408], answer[:200]
    assert BODY_TIMEOUT - 0.5 < elapsed < BODY_TIMEOUT + 2.0


def test_unauthenticated_large_body_refused_before_it_is_sent(child: Child) -> None:
    """A 50 MB upload without credentials is answered 401 after its head alone."""
    head = get(b"/api/queue/upload", b"Content-Length: 50000000", method=b"POST")
    assert statuses(exchange(child.port, head)) == [401]


def test_connections_capped_per_address(child: Child) -> None:
    """One address holding its cap of idle connections gets 503 for the next, while another
    address is served."""
    held = []
    try:
        for _ in range(MAX_PER_ADDRESS):
            sock = socket.socket()
            sock.bind(("127.0.0.4", 0))
            sock.connect(("127.0.0.1", child.port))
            held.append(sock)
        time.sleep(0.2)  # let the server accept them all
        assert statuses(exchange(child.port, get(b"/live"), "127.0.0.4")) == [503]
        assert statuses(exchange(child.port, get(b"/live"), "127.0.0.5")) == [200]
    finally:
        for sock in held:
            sock.close()


def test_idle_connection_is_closed(child: Child) -> None:
    """A connection that sends nothing is closed after the idle timeout."""
    with socket.create_connection(("127.0.0.1", child.port), timeout=10) as sock:
        started = time.monotonic()
        assert sock.recv(1) == b""
        assert IDLE_TIMEOUT - 0.5 < time.monotonic() - started < IDLE_TIMEOUT + 2.0


def test_stale_credentials_limited_without_locking_out_good_ones(child: Child) -> None:
    """Ten tries of one wrong password and of one wrong SABnzbd key from an address make the
    next tries of those 429 with Retry-After, while the right credentials from the same
    address are still answered."""
    client = "127.0.0.2"
    wrong = b"Authorization: " + BAD.encode()
    codes = [statuses(exchange(child.port, get(b"/complete/", wrong), client))[0] for _ in range(11)]
    assert codes == [401] * 10 + [429]
    stale_key = b"/sabnzbd/api?mode=queue&apikey=stale"
    codes = [statuses(exchange(child.port, get(stale_key), client))[0] for _ in range(11)]
    assert codes == [200] * 10 + [429]  # SABnzbd says "API Key Incorrect" with a 200
    answer = exchange(child.port, get(b"/complete/", wrong), client)
    assert statuses(answer) == [429] and re.search(rb"\r\nRetry-After: \d+\r\n", answer)
    good = exchange(child.port, get(b"/complete/", AUTH, b"Depth: 0", method=b"PROPFIND"), client)
    assert statuses(good) == [207]
    keyed = exchange(child.port, get(b"/sabnzbd/api?mode=queue&apikey=" + KEY.encode()), client)
    assert statuses(keyed) == [200] and b'"queue"' in keyed
    assert statuses(exchange(child.port, get(b"/live"), client)) == [200]


def test_no_secret_in_the_log(child: Child) -> None:
    """After every request above (right and wrong credentials, keys in URLs), the debug log
    holds neither the password, nor the wrong password, nor the API key."""
    exchange(child.port, get(b"/sabnzbd/api?mode=queue&apikey=" + KEY.encode()))
    exchange(
        child.port,
        get(b"/sabnzbd/api?mode=queue&apikey=wrongkey123&ma_password=" + WRONG_PASSWORD.encode()),
    )
    time.sleep(0.3)  # let the child's log lines reach the reader thread
    text = "".join(child.log)
    assert "GET /complete/movies/film.mkv" in text  # the log is really captured
    for secret in (PASSWORD, WRONG_PASSWORD, KEY, "wrongkey123", GOOD[6:], BAD[6:]):
        assert secret not in text, secret
