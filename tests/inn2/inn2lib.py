"""Helpers of the INN2 integration suite: the real peers, test media, and `altmount serve`.

Everything here talks to real programs on 127.0.0.1: INN2 (set up by
scripts/setup-peers.sh), nyuu (tools/poster), ffmpeg, curl and the altmount CLI
run as a subprocess.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import wave
import xml.etree.ElementTree as ET
from base64 import b64encode
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
NEWSBIN = Path("/usr/lib/news/bin")
INN2_HOST = "127.0.0.1"
READER_PORT = 1119
AUTH_PORT = 1120
#: INN2's reader behind TLS (nnrpd -S), its certificate for localhost signed by this CA.
TLS_PORT = 1563
TLS_CA_FILE = Path("/etc/news/altmount-tls/ca.pem")
AUTH_USER = "altmount"
AUTH_PASSWORD = "secret"
GROUP = "alt.binaries.test"
NYUU = Path(os.environ.get("ALTMOUNT_NYUU", REPO / "tools/poster/node_modules/.bin/nyuu"))
DAV_USER = "tester"
DAV_PASSWORD = "pw-for-tests"
# nyuu's default article size ("700K"): the decoded bytes in every part but the last.
DEFAULT_ARTICLE_SIZE = 716_800
STARTUP_TIMEOUT = 60.0
COMMAND_TIMEOUT = 180.0
_DAV = "{DAV:}"


def nntp_greeting(port: int, host: str = INN2_HOST, timeout: float = 3.0) -> str | None:
    """The server's greeting line on host:port, or None when nothing answers."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            return sock.makefile("rb").readline().decode("latin-1").strip()
    except OSError:
        return None


@functools.cache
def peers_problem() -> str | None:
    """Why the suite cannot run here (INN2 readers or nyuu missing), or None when it can."""
    setup = "run scripts/setup-peers.sh as root"
    for port in (READER_PORT, AUTH_PORT):
        greeting = nntp_greeting(port)
        if greeting is None or not greeting.startswith("200"):
            return (
                f"INN2 is not reachable on {INN2_HOST}:{port} ({greeting or 'no answer'}): {setup}"
            )
    if not NYUU.exists():
        return f"nyuu is not installed at {NYUU}: {setup}"
    for tool in ("ffmpeg", "ffprobe", "curl", "rclone"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed: {setup}"
    return None


def skip_without_peers() -> None:
    """Skip the calling test module when the peers are missing, unless under CI.

    Called at module level: one skip line per module. Under CI the autouse fixture in
    conftest.py fails the tests instead.
    """
    problem = peers_problem()
    if problem is not None and not os.environ.get("CI"):
        pytest.skip(problem, allow_module_level=True)


def nntp_stat(message_id: str, port: int = READER_PORT) -> int:
    """The status code INN2 answers to `STAT <message_id>` (223 present, 430 missing)."""
    with socket.create_connection((INN2_HOST, port), timeout=10) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(f"STAT <{message_id}>\r\n".encode())
        return int(reader.readline()[:3])


def cancel_article(message_id: str) -> None:
    """Remove one article from INN2 (`ctlinnd cancel`), so readers get 430 for it."""
    run([str(NEWSBIN / "ctlinnd"), "-t", "10", "cancel", f"<{message_id}>"], timeout=30)


def run(
    args: list[str], *, timeout: float = COMMAND_TIMEOUT, check: bool = True, **kwargs
) -> subprocess.CompletedProcess[bytes]:
    """Run a command, capturing output; a failure message shows the command and its output."""
    done = subprocess.run(args, capture_output=True, timeout=timeout, **kwargs)
    if check and done.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {done.returncode}\n"
            f"stdout: {done.stdout.decode(errors='replace')[-4000:]}\n"
            f"stderr: {done.stderr.decode(errors='replace')[-4000:]}"
        )
    return done


def run_nyuu(args: list[str]) -> subprocess.CompletedProcess[bytes]:
    """Run nyuu with `args`, once more if it fails: nyuu 0.4 now and then crashes on its
    own timers ("Timer already set") under load, which says nothing about altmount.
    With -O a second run overwrites the NZB; INN2 takes the re-posted articles under
    new message-ids."""
    first = run([str(NYUU), *args], check=False)
    if first.returncode == 0:
        return first
    return run([str(NYUU), *args])


# --- test media ---------------------------------------------------------------------------


def make_movie(path: Path, seconds: int = 40) -> Path:
    """A 720p H.264 + AAC Matroska file (~12 MB), keyframes every 2 s so seeks are real."""
    args = (
        "-v error -y -f lavfi -i testsrc2=size=1280x720:rate=24 -f lavfi -i sine=sample_rate=48000"
        f" -t {seconds} -c:v libx264 -preset ultrafast -crf 36 -g 48 -c:a aac -b:a 96k"
    )
    run(["ffmpeg", *args.split(), str(path)])
    return path


def make_wav(path: Path, size: int, seed: int) -> Path:
    """A 16-bit stereo 44.1 kHz WAV of about `size` bytes of seeded noise.

    Noise, not a tone: a periodic signal would let bytes read from a wrong offset
    compare equal.
    """
    frames = size // 4
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(44_100)
        out.writeframes(random.Random(seed).randbytes(frames * 4))
    return path


def md5(data: bytes) -> str:
    """Hex MD5 of `data`."""
    return hashlib.md5(data).hexdigest()


# --- posting ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Posted:
    """A file posted to INN2 with nyuu, with the NZB nyuu wrote and the original bytes."""

    source: Path
    nzb: Path
    data: bytes
    message_ids: tuple[str, ...]
    article_size: int

    @property
    def name(self) -> str:
        """The posted file name (what the WebDAV tree shows)."""
        return self.source.name

    @property
    def release(self) -> str:
        """The release folder altmount makes: the NZB's name without `.nzb`."""
        return self.nzb.stem


def nzb_message_ids(nzb: Path) -> tuple[str, ...]:
    """The segment message-ids of the NZB's only file, in part order (plain XML reading)."""
    root = ET.parse(nzb).getroot()
    ns = "{http://www.newzbin.com/DTD/2003/nzb}"
    files = root.findall(f"{ns}file")
    assert len(files) == 1, f"{nzb}: expected one <file>, found {len(files)}"
    segments = sorted(files[0].iter(f"{ns}segment"), key=lambda s: int(s.get("number", "0")))
    return tuple((s.text or "").strip() for s in segments)


def post(source: Path, nzb: Path, *, article_size: int = DEFAULT_ARTICLE_SIZE) -> Posted:
    """Post `source` to alt.binaries.test on the open reader with nyuu (4 connections)."""
    server = f"-h {INN2_HOST} -P {READER_PORT} -n 4 -g {GROUP} -a {article_size} -q"
    run_nyuu([*server.split(), "-o", str(nzb), "-O", str(source)])
    return Posted(
        source=source,
        nzb=nzb,
        data=source.read_bytes(),
        message_ids=nzb_message_ids(nzb),
        article_size=article_size,
    )


# --- altmount -----------------------------------------------------------------------------


def free_port() -> int:
    """An ephemeral TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def provider(
    name: str, port: int = READER_PORT, username: str = "", password: str = ""
) -> dict[str, object]:
    """One `providers[]` entry pointing at the local INN2."""
    return {
        "name": name,
        "host": INN2_HOST,
        "port": port,
        "username": username,
        "password": password,
        "max_connections": 8,
        "tls": False,
    }


def tls_provider(name: str) -> dict[str, object]:
    """A `providers[]` entry for INN2's TLS reader, verified against the test CA."""
    return {
        **provider(name, TLS_PORT),
        "host": "localhost",
        "tls": True,
        "ca_file": str(TLS_CA_FILE),
    }


def write_config(
    directory: Path, providers: list[dict[str, object]], extra: dict[str, object] | None = None
) -> Path:
    """An altmount config in `directory` (its metadata and database there too).

    `extra` adds or replaces top-level sections (e.g. `sabnzbd`, `api`).
    """
    config = {
        "webdav": {
            "port": free_port(),
            "bind_address": "127.0.0.1",
            "user": DAV_USER,
            "password": DAV_PASSWORD,
        },
        "metadata": {"root_path": str(directory / "metadata"), "map_size_mb": 256},
        "database": {"path": str(directory / "altmount.db")},
        "demo": {"enabled": False},
        "log": {"level": "info"},
        "providers": providers,
        **(extra or {}),
    }
    path = directory / "altmount.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def altmount_command(*args: str) -> list[str]:
    """The altmount CLI of the interpreter running the tests."""
    return [sys.executable, "-m", "altmount", *args]


def altmount_env() -> dict[str, str]:
    """The test's environment, with this work tree first on the path (installed or not)."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


@dataclass(frozen=True, slots=True)
class DavEntry:
    """One PROPFIND response: its decoded path, whether it is a folder, its size."""

    path: str
    is_dir: bool
    size: int | None


@dataclass
class AltmountServer:
    """`altmount serve --config FILE` as a subprocess, with its log in a file."""

    config_path: Path
    name: str = "altmount"
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)
    port: int = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.config_path.with_suffix(".log")
        config = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        self.port = config["webdav"]["port"]

    def start(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Start the server and wait until `GET /live` answers 200 (or fail with its log)."""
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                altmount_command("serve", "--config", str(self.config_path)),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.config_path.parent,
                env=altmount_env(),
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"altmount serve exited {self.process.returncode} at start\n{self.log_tail()}"
                )
            if self._live():
                return
            time.sleep(0.1)
        self.stop()
        raise AssertionError(
            f"altmount serve: /live not ready after {timeout:.0f} s\n{self.log_tail()}"
        )

    def _live(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/live", timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `timeout`)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def log_text(self) -> str:
        """Everything the server has logged so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 200) -> str:
        """The last `lines` lines of the server's log."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT, no credentials."""
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str, *, credentials: bool = True) -> str:
        """The URL of a WebDAV path, with user:password in it for ffmpeg and friends."""
        quoted = urllib.parse.quote(path)
        if not credentials:
            return f"{self.base_url}{quoted}"
        return f"http://{DAV_USER}:{DAV_PASSWORD}@127.0.0.1:{self.port}{quoted}"

    def import_nzb(self, nzb: Path) -> subprocess.CompletedProcess[bytes]:
        """`altmount import NZB --config FILE` against this server's config."""
        return run(
            altmount_command("import", str(nzb), "--config", str(self.config_path)),
            cwd=self.config_path.parent,
            env=altmount_env(),
        )

    def propfind(self, path: str) -> list[DavEntry]:
        """PROPFIND `path` with Depth: 1; the entries below it (itself excluded)."""
        connection = HTTPConnection("127.0.0.1", self.port, timeout=30)
        token = b64encode(f"{DAV_USER}:{DAV_PASSWORD}".encode()).decode()
        body = (
            '<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop>'
            "<D:resourcetype/><D:getcontentlength/></D:prop></D:propfind>"
        )
        try:
            connection.request(
                "PROPFIND",
                urllib.parse.quote(path),
                body=body,
                headers={
                    "Depth": "1",
                    "Authorization": f"Basic {token}",
                    "Content-Type": "application/xml",
                },
            )
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        if response.status == 404:
            return []
        assert response.status == 207, f"PROPFIND {path}: {response.status} {payload[:500]!r}"
        entries = [_dav_entry(node) for node in ET.fromstring(payload).iter(f"{_DAV}response")]
        return [e for e in entries if e.path.rstrip("/") != path.rstrip("/")]

    def walk(self, root: str = "/", limit: int = 500) -> Iterator[DavEntry]:
        """Every entry under `root`, breadth first, at most `limit` PROPFINDs."""
        pending = [root]
        while pending and limit > 0:
            limit -= 1
            for entry in self.propfind(pending.pop(0)):
                yield entry
                if entry.is_dir:
                    pending.append(entry.path)

    def find_file(self, release: str, name: str, timeout: float = 30.0) -> DavEntry:
        """The WebDAV entry of `name` in a folder called `release` (waits for it to appear)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [
                e
                for e in self.walk("/complete/")
                if not e.is_dir and e.path.rstrip("/").split("/")[-2:] == [release, name]
            ]
            if len(found) == 1:
                return found[0]
            assert len(found) == 0, f"{release}/{name} found more than once: {found}"
            if time.monotonic() > deadline:
                tree = "\n".join(e.path for e in self.walk("/"))
                raise AssertionError(f"{release}/{name} not in the WebDAV tree:\n{tree}")
            time.sleep(0.2)

    def curl(
        self, path: str, byte_range: str | None = None, max_time: float = 60.0
    ) -> tuple[int, int, bytes, float]:
        """GET with curl: (curl exit code, HTTP status, body, seconds taken)."""
        args = ["curl", "-sS", "-u", f"{DAV_USER}:{DAV_PASSWORD}", "--max-time", str(max_time)]
        args += ["-o", "-", "-w", "\n%{http_code}"]
        if byte_range is not None:
            args += ["-r", byte_range]
        started = time.monotonic()
        done = run([*args, self.url(path, credentials=False)], timeout=max_time + 30, check=False)
        elapsed = time.monotonic() - started
        body, _, status = done.stdout.rpartition(b"\n")
        return done.returncode, int(status or 0), body, elapsed


def _dav_entry(node: ET.Element) -> DavEntry:
    href = (node.findtext(f"{_DAV}href") or "").strip()
    path = urllib.parse.unquote(urllib.parse.urlsplit(href).path)
    is_dir = node.find(f".//{_DAV}resourcetype/{_DAV}collection") is not None
    length = node.findtext(f".//{_DAV}getcontentlength")
    return DavEntry(path=path, is_dir=is_dir, size=int(length) if length else None)


def rclone(*args: str, port: int, config_dir: Path) -> bytes:
    """Run rclone against the server's WebDAV with an on-the-fly `:webdav:` remote."""
    obscured = run(["rclone", "obscure", DAV_PASSWORD]).stdout.decode().strip()
    remote = f"--webdav-url http://127.0.0.1:{port} --webdav-user {DAV_USER} --webdav-pass"
    config = str(config_dir / "rclone.conf")
    done = run(["rclone", "--config", config, *remote.split(), obscured, *args], timeout=120)
    return done.stdout
