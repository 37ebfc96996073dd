"""Helpers of the browser suite: what it needs, the fake provider and altmount as processes.

The suite needs Debian's chromium, Node.js and playwright-core installed by
scripts/ui-setup.sh. Without them the browser test skips itself with the reason,
except under CI (CI=true), where a missing piece is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools" / "ui-test"
CHROMIUM = Path("/usr/bin/chromium")
SCENARIO = Path(__file__).with_name("scenario.cjs")
ARTIFACTS = ROOT / "test-artifacts" / "ui"
STARTUP_TIMEOUT = 30.0
PROVIDER_USER = "ui-reader"
#: Must never reach the browser (the config page shows secrets masked).
PROVIDER_PASSWORD = "provider-secret-7"


def browser_problem() -> str | None:
    """Why the browser test cannot run here, or None when it can."""
    setup = "run scripts/ui-setup.sh as root"
    if not CHROMIUM.exists():
        return f"chromium is not installed at {CHROMIUM}: {setup}"
    if shutil.which("node") is None:
        return f"node is not installed: {setup}"
    if not (TOOLS / "node_modules" / "playwright-core" / "package.json").exists():
        return f"playwright-core is not installed in {TOOLS}: {setup}"
    if shutil.which("curl") is None:
        return "curl is not installed (apt-get install curl)"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(condition, timeout: float, what: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited {process.returncode}\n{log.read_text()[-3000:]}")
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not ready after {timeout:.0f} s\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(15)


@dataclass
class FakeProvider:
    """fakeprovider.py in its own process: one generated release and its NZB."""

    folder: Path
    media_name: str = "ui-test.mkv"
    size_mb: int = 24
    #: Article numbers (0-based, comma-separated) the provider answers 430 for.
    missing: str = ""
    process: subprocess.Popen | None = None
    port: int = 0

    def start(self) -> None:
        """Generate the release, serve it and wait for its port."""
        self.folder.mkdir(parents=True, exist_ok=True)
        log = self.folder / "fakeprovider.log"
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).with_name("fakeprovider.py")),
                    str(self.folder),
                    self.media_name,
                    str(self.size_mb),
                    PROVIDER_USER,
                    PROVIDER_PASSWORD,
                    *([self.missing] if self.missing else []),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
            )
        port_file = self.folder / "port"
        _wait(port_file.exists, STARTUP_TIMEOUT, "fakeprovider.py", self.process, log)
        self.port = int(port_file.read_text())
        shutil.copyfile(self.folder / "release.nzb", self.nzb)

    @property
    def nzb(self) -> Path:
        """The release's NZB, under the name an operator would upload."""
        return self.folder / "UI.Test.Release.nzb"

    def stop(self) -> None:
        """Stop the server."""
        _stop(self.process)


@dataclass
class Altmount:
    """`altmount serve` over `provider_port`, with a user and password, in `folder`."""

    folder: Path
    provider_port: int
    user: str = "operator"
    password: str = "s3cret-ui"
    provider: str = "fake"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        """The YAML config: demo off, one provider, fast queue polling."""
        config = yaml.safe_load((ROOT / "config.example.yaml").read_text())
        config["webdav"].update(port=self.port, user=self.user, password=self.password)
        config["database"]["path"] = str(self.folder / "altmount.db")
        config["metadata"]["root_path"] = str(self.folder / "metadata")
        config["import"]["queue_processing_interval_seconds"] = 0.5
        config["demo"]["enabled"] = False
        config["providers"] = [
            {
                "name": self.provider,
                "host": "127.0.0.1",
                "port": self.provider_port,
                "username": PROVIDER_USER,
                "password": PROVIDER_PASSWORD,
                "max_connections": 4,
                "tls": False,
            }
        ]
        path = self.folder / "altmount.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def start(self) -> None:
        """Start the server and wait until /live answers."""
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.write_config()
        log = self.folder / "altmount.log"
        command = [
            str(Path(sys.executable).with_name("altmount")),
            "serve",
            "--config",
            str(config),
        ]
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.folder,
            )
        _wait(self._live, STARTUP_TIMEOUT, "altmount serve", self.process, log)

    def _live(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/live", timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def log_tail(self) -> str:
        """The end of the server's log."""
        return (self.folder / "altmount.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """Stop the server."""
        _stop(self.process)


def run_scenario(
    server: Altmount, provider: FakeProvider, timeout: float = 90.0, script: Path = SCENARIO
) -> dict:
    """Run `script` (scenario.cjs) against `server`; its JSON report (raises with it on failure)."""
    env = dict(
        os.environ,
        UI_TOOLS=str(TOOLS),
        CHROMIUM=str(CHROMIUM),
        BASE_URL=server.base_url,
        UI_USER=server.user,
        UI_PASSWORD=server.password,
        NZB=str(provider.nzb),
        MEDIA_NAME=provider.media_name,
        PROVIDER=server.provider,
        PROVIDER_PASSWORD=PROVIDER_PASSWORD,
        ARTIFACTS=str(ARTIFACTS),
    )
    done = subprocess.run(
        ["node", str(script)], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    report = json.loads(lines[-1]) if lines else {"ok": False, "error": done.stdout}
    if done.returncode != 0 or not report.get("ok"):
        raise AssertionError(
            "browser scenario failed:\n"
            + json.dumps(report, indent=2)
            + f"\nstderr:\n{done.stderr[-3000:]}\naltmount log:\n{server.log_tail()}"
        )
    return report
