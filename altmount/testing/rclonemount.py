"""`rclone mount` of altmount's WebDAV root, for tests: the way Sonarr, Radarr and
players see the library (Debian rclone + fuse3, run as root).

`RcloneMount(url, user, password, mountpoint, workdir).start()` runs rclone with an
on-the-fly `:webdav:` remote (its own config file under `workdir`, never the user's),
no VFS cache (every read reaches the server, a rename is one WebDAV MOVE, a mkdir one
MKCOL) and 1 s directory caching; `stop()` unmounts and ends that rclone, by its pid.
`mount_problem()` says why no mount can be made here (None when one can).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

__all__ = ["RcloneMount", "mount_problem", "MOUNT_TIMEOUT"]

#: Seconds rclone gets to show the mount (it answers within about one here).
MOUNT_TIMEOUT = 30.0
_FLAGS = (
    "--vfs-cache-mode",
    "off",
    "--dir-cache-time",
    "1s",
    "--poll-interval",
    "0",
    "--attr-timeout",
    "1s",
)


def mount_problem() -> str | None:
    """Why `rclone mount` cannot run on this machine, or None."""
    for tool in ("rclone", "fusermount3"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/setup-peers.sh installs rclone and fuse3)"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing: this machine cannot mount FUSE file systems"
    return None


class RcloneMount:
    """One `rclone mount` of a WebDAV URL at `mountpoint`; logs to `workdir`/rclone-mount.log."""

    def __init__(
        self,
        url: str,
        user: str,
        password: str,
        mountpoint: Path,
        workdir: Path,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.url = url
        self.user = user
        self.password = password
        self.mountpoint = Path(mountpoint)
        self.workdir = Path(workdir)
        self.extra_args = extra_args
        self.log_path = self.workdir / f"rclone-mount-{self.mountpoint.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = MOUNT_TIMEOUT) -> RcloneMount:
        """Mount and wait until the mount point is one; fail with rclone's log otherwise."""
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        config = str(self.workdir / "rclone-mount.conf")
        obscured = (
            subprocess.run(
                ["rclone", "--config", config, "obscure", self.password],
                capture_output=True,
                check=True,
                timeout=30,
            )
            .stdout.decode()
            .strip()
        )
        args = [
            "rclone",
            "--config",
            config,
            "mount",
            f"--webdav-url={self.url}",
            f"--webdav-user={self.user}",
            f"--webdav-pass={obscured}",
            *_FLAGS,
            *self.extra_args,
            "--log-file",
            str(self.log_path),
            "-v",
            ":webdav:",
            str(self.mountpoint),
        ]
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while not os.path.ismount(self.mountpoint):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"rclone mount of {self.url} failed:\n{self.log_tail()}")
            time.sleep(0.05)
        return self

    def path(self, virtual: str) -> Path:
        """The local path of a path in altmount's tree (`/complete/tv/...`)."""
        return self.mountpoint / virtual.lstrip("/")

    def log_tail(self, lines: int = 60) -> str:
        """The end of rclone's log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """Unmount (lazily if busy) and end the rclone this started."""
        if os.path.ismount(self.mountpoint):
            done = subprocess.run(
                ["fusermount3", "-u", str(self.mountpoint)], capture_output=True, timeout=30
            )
            if done.returncode != 0:
                subprocess.run(
                    ["fusermount3", "-uz", str(self.mountpoint)], capture_output=True, timeout=30
                )
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
