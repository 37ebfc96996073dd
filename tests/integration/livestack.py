"""A live stack for the operator-guide tests: a fake NNTP provider in its own process,
`altmount serve` in another, a release imported through the queue, slow readers.

Not a test module: the tests in test_ops_guide.py, test_status_cli.py and
test_logging_live.py import it. Everything listens on 127.0.0.1, ephemeral ports.
"""

from __future__ import annotations

import base64
import http.client
import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ALTMOUNT = [sys.executable, "-m", "altmount"]
DEADLINE = 20.0
USER, PASSWORD = "operator", "webdav-Pa55word"
ARTICLE_SIZE = 128 * 1024

# The provider process: a release served by altmount.testing.nntpserver, optionally
# behind AUTHINFO and with latency per article; writes the NZB and then its port.
_PROVIDER = """
import json
import os
import random
import sys
import time
from pathlib import Path
from twisted.internet import reactor
from twisted.internet.task import LoopingCall
from altmount.testing import nntpserver
from altmount.testing.articles import post_release
ARTICLE_SIZE = int(sys.argv[6])
out, size, latency, user, password = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), \
    sys.argv[4], sys.argv[5]
# random.randbytes takes at most 256 MiB at a time; release_data() below makes the same.
rng = random.Random(5)
data = b"".join(rng.randbytes(min(1 << 26, size - at)) for at in range(0, size, 1 << 26))
release = post_release({"movie.mkv": data}, article_size=ARTICLE_SIZE, meta={"name": "Some.Movie"},
                       salt="ops-guide")
out.mkdir(parents=True, exist_ok=True)
(out / "release.nzb").write_bytes(release.nzb)
faults = nntpserver.Faults(latency=latency)
port, factory = nntpserver.listen(reactor, release.articles, faults=faults, username=user,
                                  password=password)
(out / "port").write_text(str(port.getHost().port))
def report():
    # The most connections open at once, for tests that check a shared budget; the
    # commands served so far (with the time they were read), for tests that count BODYs.
    (out / "peak").write_text(str(factory.peak_connections))
    (out / "commands.tmp").write_text(json.dumps({"at": time.time(), **factory.commands}))
    os.replace(out / "commands.tmp", out / "commands")
LoopingCall(report).start(0.05)
reactor.run()
"""


def release_data(size: int) -> bytes:
    """The bytes of the provider's movie.mkv of `size` bytes (as _PROVIDER makes them)."""
    rng = random.Random(5)
    return b"".join(rng.randbytes(min(1 << 26, size - at)) for at in range(0, size, 1 << 26))


def free_port() -> int:
    """A port nothing listens on now (bound and closed again)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(check, what: str, child: subprocess.Popen | None = None, deadline=DEADLINE):
    """Poll `check()` until it returns a true value; fail if the deadline passes or `child` dies."""
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        value = check()
        if value:
            return value
        if child is not None and child.poll() is not None:
            pytest.fail(f"process exited with {child.returncode} while waiting for {what}")
        time.sleep(0.05)
    pytest.fail(f"no {what} within {deadline} s")


def basic(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    """The Authorization header for `user`/`password`."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def request(port: int, method: str, path: str, headers: dict | None = None, body=None):
    """One request; returns (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def api(port: int, path: str, headers: dict | None = None):
    """GET an /api path with the WebDAV credentials; the parsed JSON."""
    status, _, body = request(port, "GET", path, basic() if headers is None else headers)
    assert status in (200, 503), (path, status, body)
    return json.loads(body)


@dataclass
class Stack:
    """The processes and ports of one live stack."""

    root: Path
    config: Path
    web_port: int = 0
    provider: subprocess.Popen | None = None
    provider_port: int = 0
    server: subprocess.Popen | None = None
    server_log: Path | None = None
    file_path: str = ""
    file_size: int = 0
    children: list[subprocess.Popen] = field(default_factory=list)

    def spawn(self, args: list[str], **options) -> subprocess.Popen:
        child = subprocess.Popen(args, cwd=ROOT, **options)
        self.children.append(child)
        return child

    def start_provider(
        self,
        size: int,
        latency: float,
        user: str,
        password: str,
        article_size: int = ARTICLE_SIZE,
    ) -> None:
        out = self.root / "provider"
        args = [sys.executable, "-c", _PROVIDER, str(out), str(size), str(latency)]
        self.provider = self.spawn(
            [*args, user, password, str(article_size)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = out / "port"
        text = wait_for(
            lambda: port_file.exists() and port_file.read_text(), "provider", self.provider
        )
        self.provider_port = int(text)
        self.file_size = size

    def commands(self) -> dict[str, int]:
        """The commands the provider has served (BODY, STAT, ...), as of a report written
        after this call began, so everything sent before it is counted."""
        asked = time.time()
        path = self.root / "provider" / "commands"

        def fresh():
            counts = json.loads(path.read_text()) if path.exists() else {}
            return counts if counts.get("at", 0) > asked + 0.06 else None

        counts = wait_for(fresh, "a fresh command count", self.provider)
        counts.pop("at")
        return counts

    def start_server(self) -> None:
        self.server_log = self.root / "serve.stderr"
        with self.server_log.open("w") as sink:
            self.server = self.spawn(
                [*ALTMOUNT, "serve", "--config", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )
        wait_for(self.live, "/live", self.server)

    def live(self) -> bool:
        try:
            return request(self.web_port, "GET", "/live")[0] == 200
        except OSError:
            return False

    def import_release(self) -> None:
        """Enqueue the provider's NZB with `altmount import` and wait for the server to import it."""
        done = subprocess.run(
            [
                *ALTMOUNT,
                "import",
                str(self.root / "provider" / "release.nzb"),
                "--config",
                str(self.config),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=DEADLINE,
        )
        assert done.returncode == 0, done.stderr

        def imported():
            items = api(self.web_port, "/api/queue")["items"]
            return items and items[0]["state"] == "completed" and items[0]["target_path"]

        target = wait_for(imported, "import", self.server)
        self.file_path = f"{target}/movie.mkv"

    def stop_server(self) -> None:
        """SIGTERM, as an init system stops it, and wait."""
        assert self.server is not None
        self.server.send_signal(signal.SIGTERM)
        self.server.wait(timeout=DEADLINE)

    def close(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait(timeout=10)


def write_config(
    root: Path,
    provider_port: int,
    *,
    user="nntp-user",
    password="nntp-Pa55word",
    extra_providers: tuple[dict, ...] = (),
    **sections,
) -> tuple[Path, int]:
    """A config for one provider on `provider_port` (plus `extra_providers`, on the same
    port unless they say otherwise); returns (path, web port)."""
    web_port = free_port()
    document = {
        "webdav": {
            "port": web_port,
            "bind_address": "127.0.0.1",
            "user": USER,
            "password": PASSWORD,
        },
        "metadata": {"root_path": "./metadata", "map_size_mb": 64},
        "nntp": {"connect_timeout_seconds": 2, "request_timeout_seconds": 5},
        "import": {"queue_processing_interval_seconds": 0.2},
        "streaming": {
            "max_download_workers": 4,
            "streaming_chunk_size": 256 * 1024,
            "max_range_size": 1024 * 1024,
        },
        "health": {"enabled": False},
        "providers": [
            {
                "name": "fake",
                "host": "127.0.0.1",
                "port": provider_port,
                "tls": False,
                "username": user,
                "password": password,
                "max_connections": 4,
            }
        ]
        if provider_port
        else [],
    }
    for extra in extra_providers:
        document["providers"].append(
            {"host": "127.0.0.1", "port": provider_port, "tls": False, **extra}
        )
    for name, values in sections.items():
        document[name] = {**document.get(name, {}), **values}
    path = root / "altmount.yaml"
    path.write_text(yaml.safe_dump(document))
    return path, web_port


def make_stack(
    root: Path,
    *,
    size: int = 12 * 1024 * 1024,
    latency: float = 0.002,
    article_size: int = ARTICLE_SIZE,
    **sections,
) -> Stack:
    """Start provider and server under `root` and import the release."""
    probe = Stack(root, root / "altmount.yaml")
    try:
        probe.start_provider(size, latency, "nntp-user", "nntp-Pa55word", article_size)
        probe.config, probe.web_port = write_config(root, probe.provider_port, **sections)
        probe.start_server()
        probe.import_release()
    except BaseException:
        probe.close()
        raise
    return probe


class SlowReader(threading.Thread):
    """Reads a file over WebDAV in small bites with pauses, so its stream stays open."""

    def __init__(self, port: int, path: str, *, bite: int = 64 * 1024, pause: float = 0.05):
        super().__init__(daemon=True)
        self.port, self.path, self.bite, self.pause = port, path, bite, pause
        self.received = 0
        self.status = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE)
        try:
            conn.request("GET", self.path, headers=basic())
            response = conn.getresponse()
            self.status = response.status
            while chunk := response.read(self.bite):
                self.received += len(chunk)
                time.sleep(self.pause)
        except BaseException as exc:  # reported by the test that started it
            self.error = exc
        finally:
            conn.close()
