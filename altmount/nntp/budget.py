"""One provider's `max_connections`, shared by every process on this host that uses the
same database: a lock file per connection slot.

A connection holds an exclusive `flock` on one slot file for as long as its socket is
open. The kernel drops the lock when the descriptor closes, so a process that dies
(`kill -9` included) frees its slots at once, with nothing to clean up. A process that
wants a connection and finds every slot taken says so with a `want` file; holders that
see a waiter give back connections beyond their fair share (the limit divided among the
processes using the provider), so two instances behind a load balancer split it.

Membership and want files are locked under a temporary name and renamed into place, so
a scanner never mistakes a file that is being created for one left by a dead process.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import math
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from altmount.errors import ConfigError

__all__ = [
    "ConnectionBudget",
    "Lease",
    "SlotBudget",
    "UnlimitedBudget",
    "budget_dir",
    "provider_key",
]

log = logging.getLogger(__name__)

#: How long a scan of the other processes' files is reused: a pool asks on every
#: connection attempt, and the answer only needs to be as fresh as a poll.
PEERS_TTL_SECONDS = 0.1
#: How often a pool that wants a slot looks for a free one.
WAITING_POLL_SECONDS = 0.05
#: How often a pool that holds slots looks for other processes waiting for one.
HOLDING_POLL_SECONDS = 0.5
#: How old the lease folder's mtime must be before a scan may be skipped on it (1 s).
STAMP_SETTLED_NS = 1_000_000_000


def budget_dir(database_path: str) -> Path:
    """Where the slot files of the processes sharing `database_path` live."""
    db = Path(database_path)
    return db.with_name(db.name + ".leases")


def provider_key(host: str, port: int, username: str) -> str:
    """A file-name-safe key for one provider account (host, port and user)."""
    readable = re.sub(r"[^A-Za-z0-9.-]+", "_", host)[:48] or "provider"
    digest = hashlib.sha1(f"{host}:{port}:{username}".encode()).hexdigest()[:10]
    return f"{readable}-{port}-{digest}"


class Lease:
    """One held connection slot; `release()` gives it back (idempotent)."""

    __slots__ = ("slot", "_give_back")

    def __init__(self, slot: int, give_back: Callable[[Lease], None]) -> None:
        self.slot = slot
        self._give_back: Callable[[Lease], None] | None = give_back

    @property
    def held(self) -> bool:
        return self._give_back is not None

    def release(self) -> None:
        give_back, self._give_back = self._give_back, None
        if give_back is not None:
            give_back(self)


class ConnectionBudget:
    """What a provider pool asks before it opens a connection."""

    limit: int

    def try_acquire(self) -> Lease | None:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def held(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def set_waiting(self, waiting: bool) -> None:
        """Tell the other processes whether this one wants a slot it cannot get."""

    def excess(self) -> int:
        """Connections this process should give back now (others wait, it holds more
        than its share)."""
        return 0

    def poll_delay(self) -> float | None:
        """When the pool should next call `excess()` and retry, or None: no need."""
        return None

    def close(self) -> None:
        """Drop every slot and file of this process."""


class UnlimitedBudget(ConnectionBudget):
    """No other process to share with (unit tests, tools): every slot is ours."""

    def __init__(self, limit: int = 1 << 30) -> None:
        self.limit = limit
        self._held = 0

    def try_acquire(self) -> Lease | None:
        if self._held >= self.limit:
            return None
        self._held += 1
        return Lease(self._held, self._released)

    def _released(self, _: Lease) -> None:
        self._held -= 1

    @property
    def held(self) -> int:
        return self._held


class SlotBudget(ConnectionBudget):
    """`limit` slot files in `directory/key/`, shared by every process that opens them."""

    def __init__(
        self,
        directory: Path,
        key: str,
        limit: int,
        *,
        clock: Callable[[], float],
        pid: int | None = None,
    ) -> None:
        self.limit = limit
        self.path = Path(directory) / key
        self._clock = clock
        self._pid = os.getpid() if pid is None else pid
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"database.path: cannot create the connection lease folder {self.path}: "
                f"{exc.strerror}"
            ) from None
        self._leases: set[Lease] = set()
        self._fds: dict[int, int] = {}  # slot -> descriptor holding its lock
        self._member_fd = -1
        self._want_fd = -1
        self._peers_at = -math.inf
        self._peers: tuple[int, int] = (1, 0)
        self._peers_stamp: int | None = None  # the folder's mtime when a scan found no waiter

    # -- slots -------------------------------------------------------------------------

    @property
    def held(self) -> int:
        return len(self._leases)

    def try_acquire(self) -> Lease | None:
        """A free slot, or None when every slot is held (or this process is at its fair
        share while another one waits)."""
        if self._leases and self._over_share_while_others_wait(extra=1):
            return None
        taken = {lease.slot for lease in self._leases}
        for slot in range(self.limit):
            if slot in taken:
                continue
            fd = self._try_lock(self.path / f"slot-{slot}")
            if fd >= 0:
                self._fds[slot] = fd
                lease = Lease(slot, self._released)
                self._leases.add(lease)
                self._update_membership()
                return lease
        return None

    def _released(self, lease: Lease) -> None:
        os.close(self._fds.pop(lease.slot))  # closing the descriptor drops the flock
        self._leases.discard(lease)
        self._update_membership()

    # -- fairness ----------------------------------------------------------------------

    def set_waiting(self, waiting: bool) -> None:
        if waiting and self._want_fd < 0:
            self._want_fd = self._publish(f"want-{self._pid}")
        elif not waiting and self._want_fd >= 0:
            self._withdraw(f"want-{self._pid}", self._want_fd)
            self._want_fd = -1
        self._update_membership()

    def poll_delay(self) -> float | None:
        if self._want_fd >= 0:
            return WAITING_POLL_SECONDS
        return HOLDING_POLL_SECONDS if self._leases else None

    def excess(self) -> int:
        members, waiting = self._scan_peers()
        if not waiting:
            return 0
        return max(0, len(self._leases) - self._share(members))

    def _over_share_while_others_wait(self, extra: int) -> bool:
        members, waiting = self._scan_peers()
        return waiting > 0 and len(self._leases) + extra > self._share(members)

    def _share(self, members: int) -> int:
        return max(1, math.ceil(self.limit / max(1, members)))

    def _update_membership(self) -> None:
        member = bool(self._leases) or self._want_fd >= 0
        if member and self._member_fd < 0:
            self._member_fd = self._publish(f"member-{self._pid}")
        elif not member and self._member_fd >= 0:
            self._withdraw(f"member-{self._pid}", self._member_fd)
            self._member_fd = -1

    def _scan_peers(self) -> tuple[int, int]:
        """(processes using the provider, this one included; other processes waiting)."""
        now = self._clock()
        if now - self._peers_at < PEERS_TTL_SECONDS:
            return self._peers
        try:
            stamp: int | None = os.stat(self.path).st_mtime_ns
        except OSError:
            stamp = None
        if stamp is not None and stamp == self._peers_stamp:
            # No file came or went since a scan that found nobody waiting: a waiter
            # publishes a new want file, so nobody waits now either (an idle holder's
            # poll is then one stat, not a listing and a lock test per file).
            self._peers_at = now
            return self._peers
        members, waiting = 1, 0
        try:
            names = os.listdir(self.path)
        except OSError:
            names = []
        for name in names:
            kind, _, pid = name.partition("-")
            if kind not in ("member", "want") or pid == str(self._pid) or not pid.isdigit():
                continue
            if not self._alive(self.path / name):
                continue
            if kind == "member":
                members += 1
            else:
                waiting += 1
        self._peers_at, self._peers = now, (members, waiting)
        # File times are coarse: trust the stamp only once it is clearly in the past, so
        # that a want file published in the same tick as this scan still changes it.
        settled = stamp is not None and time.time_ns() - stamp > STAMP_SETTLED_NS
        self._peers_stamp = stamp if settled and waiting == 0 else None
        return self._peers

    # -- files -------------------------------------------------------------------------

    @staticmethod
    def _try_lock(path: Path) -> int:
        """An open descriptor holding an exclusive lock on `path`, or -1 if it is held."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return -1
            raise
        return fd

    def _publish(self, name: str) -> int:
        """Create `name` already locked (locked under a temporary name, then renamed)."""
        temporary = self.path / f".{name}.tmp"
        temporary.unlink(missing_ok=True)  # a leftover of a dead process with our pid
        fd = self._try_lock(temporary)
        if fd < 0:
            raise OSError(errno.EWOULDBLOCK, f"{temporary} is locked by another process")
        os.rename(temporary, self.path / name)
        self._peers_at = -math.inf
        return fd

    def _withdraw(self, name: str, fd: int) -> None:
        try:
            (self.path / name).unlink(missing_ok=True)
        finally:
            os.close(fd)
        self._peers_at = -math.inf

    @staticmethod
    def _alive(path: Path) -> bool:
        """Whether the process that published `path` still holds it; removes it if not."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return True
            raise
        else:
            path.unlink(missing_ok=True)  # its owner died: the lock went with it
            return False
        finally:
            os.close(fd)

    def close(self) -> None:
        for lease in list(self._leases):
            lease.release()
        self.set_waiting(False)
