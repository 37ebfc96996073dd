"""The watch folder (`import.watch_dir`): NZB files dropped there are enqueued.

Every `import.watch_interval_seconds` the folder and its sub-folders (one level:
the sub-folder name is the category) are scanned for `.nzb` / `.nzb.gz` files.
A file is taken once its size and mtime are the same in two scans in a row (a
copy in progress is left alone), checked with the NZB parser, enqueued, then
moved to `<watch_dir>/.processed/`. A file that cannot be read or is not an NZB
goes to `<watch_dir>/failed/` with `<name>.error` beside it saying why. A file that
cannot be moved (a read-only folder, `.processed` taken by a file) is reported once and
left alone while it stays unchanged, so it is not queued again at every scan.
`FolderScanner` does the (blocking) file work; `WatchFolder` runs it in a thread.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool

from altmount.config import Config
from altmount.errors import AltmountError
from altmount.nzb import parse_nzb
from altmount.queue.model import gunzip_nzb
from altmount.queue.service import QueueService

__all__ = ["Candidate", "FolderScanner", "WatchFolder", "PROCESSED_DIR", "FAILED_DIR"]

log = logging.getLogger(__name__)

PROCESSED_DIR = ".processed"
FAILED_DIR = "failed"
_SUFFIXES = (".nzb", ".nzb.gz")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A file in the watch folder that has stopped changing."""

    path: Path
    #: The sub-folder's name, or None for a file at the top level.
    category: str | None

    @property
    def nzb_name(self) -> str:
        """The name the item gets in the queue: the file name without `.gz`."""
        name = self.path.name
        return name[: -len(".gz")] if name.lower().endswith(".gz") else name


class FolderScanner:
    """The blocking side of the watch folder; call from one thread at a time."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._seen: dict[Path, tuple[int, int]] = {}
        #: Files that could not be moved aside: (size, mtime) when they were held.
        self._held: dict[Path, tuple[int, int]] = {}

    def _files(self) -> Iterator[tuple[Path, str | None]]:
        try:
            top = list(os.scandir(self.root))
        except FileNotFoundError:
            return
        for entry in top:
            if entry.name.startswith(".") or entry.name == FAILED_DIR:
                continue  # our own folders, and hidden files still being written
            if entry.is_dir():
                try:
                    inner = list(os.scandir(entry.path))
                except OSError:
                    continue  # vanished or unreadable sub-folder: look again next scan
                for sub in inner:
                    if sub.is_file() and _is_nzb(sub.name):
                        yield Path(sub.path), entry.name
            elif entry.is_file() and _is_nzb(entry.name):
                yield Path(entry.path), None

    def ready(self) -> list[Candidate]:
        """Files whose size and mtime did not change since the previous scan."""
        seen: dict[Path, tuple[int, int]] = {}
        ready: list[Candidate] = []
        for path, category in self._files():
            try:
                stat = path.stat()
            except OSError:
                continue
            seen[path] = (stat.st_size, stat.st_mtime_ns)
            if self._held.get(path) == seen[path]:
                continue  # taken already, could not be moved: left for the user
            if self._seen.get(path) == seen[path]:
                ready.append(Candidate(path, category))
        self._seen = seen
        # A held file that is gone or changed is forgotten: a new drop is taken again.
        self._held = {path: mark for path, mark in self._held.items() if seen.get(path) == mark}
        return sorted(ready, key=lambda candidate: candidate.path)

    def read(self, candidate: Candidate) -> bytes:
        """The NZB bytes (un-gzipped), checked by the parser; raises OSError or
        NZBParseError naming the problem."""
        data = gunzip_nzb(candidate.path.read_bytes())
        parse_nzb(data)
        return data

    def accept(self, candidate: Candidate) -> Path:
        """Move an enqueued file to `.processed/` (keeping its sub-folder); return where."""
        return self._move(candidate, PROCESSED_DIR)

    def reject(self, candidate: Candidate, reason: str) -> Path:
        """Move a bad file to `failed/` and write `<name>.error` beside it; return where."""
        target = self._move(candidate, FAILED_DIR)
        target.with_name(target.name + ".error").write_text(reason + "\n", encoding="utf-8")
        return target

    def hold(self, candidate: Candidate) -> None:
        """Leave a file that could not be moved alone for as long as it stays unchanged."""
        mark = self._seen.get(candidate.path)
        if mark is not None:
            self._held[candidate.path] = mark

    def _move(self, candidate: Candidate, folder: str) -> Path:
        parent = self.root / folder
        if candidate.category is not None:
            parent = parent / candidate.category
        parent.mkdir(parents=True, exist_ok=True)
        target = parent / candidate.path.name
        counter = 1
        while target.exists():  # the same name dropped again: keep both
            target = parent / f"{counter}-{candidate.path.name}"
            counter += 1
        os.replace(candidate.path, target)
        self._seen.pop(candidate.path, None)
        return target


def _is_nzb(name: str) -> bool:
    return name.lower().endswith(_SUFFIXES)


class WatchFolder:
    """Scans `import.watch_dir` on a timer and feeds the queue; file work in a thread."""

    def __init__(
        self,
        reactor: Any,
        queue: QueueService,
        config: Config,
        *,
        in_thread: Callable[..., defer.Deferred] | None = None,
    ) -> None:
        self._reactor = reactor
        self._queue = queue
        self._interval = config.import_.watch_interval_seconds
        self.scanner = FolderScanner(Path(config.import_.watch_dir))
        self._in_thread = in_thread or self._default_thread
        self._loop: LoopingCall | None = None
        self._scanning: defer.Deferred | None = None

    def _default_thread(self, function: Callable[..., Any], *args: Any) -> defer.Deferred:
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), function, *args)

    def start(self) -> None:
        """Scan now and then every `import.watch_interval_seconds`."""
        self._loop = LoopingCall(self._scan_logged)
        self._loop.clock = self._reactor
        self._loop.start(self._interval, now=True)
        log.info("watching %s for NZB files", self.scanner.root)

    def _scan_logged(self) -> defer.Deferred:
        def failed(failure):
            log.error("watch folder %s: %s", self.scanner.root, failure.getErrorMessage())

        self._scanning = self.scan().addErrback(failed)
        return self._scanning

    @defer.inlineCallbacks
    def scan(self):
        """One scan: enqueue every stable file; fires with the items added."""
        added = []
        ready = yield self._in_thread(self.scanner.ready)
        for candidate in ready:
            try:
                data = yield self._in_thread(self.scanner.read, candidate)
                item = yield self._queue.add(
                    data, candidate.nzb_name, candidate.category, source="watch"
                )
            except (OSError, AltmountError) as exc:
                reason = f"{candidate.path.name}: {exc}"
                log.warning("watch folder: %s", reason)
                if (yield self._move_aside(self.scanner.reject, candidate, reason)):
                    log.info("watch folder: %s moved to %s/", candidate.path.name, FAILED_DIR)
                continue
            log.info(
                "watch folder: queued %s as item %d (%s)",
                candidate.nzb_name,
                item.id,
                item.category,
                extra={"nzo_id": item.nzo_id},
            )
            added.append(item)
            yield self._move_aside(self.scanner.accept, candidate)
        return added

    @defer.inlineCallbacks
    def _move_aside(self, move: Callable[..., Path], candidate: Candidate, *args: Any):
        """Run `move`; True if done, else the file is held and the problem reported once."""
        try:
            yield self._in_thread(move, candidate, *args)
            return True
        except OSError as exc:
            self.scanner.hold(candidate)
            log.warning(
                "watch folder: cannot move %s out of the way (%s); it is left where it is "
                "and not taken again while it is unchanged: move or delete it, or make %s "
                "writable",
                candidate.path,
                exc.strerror or exc,
                self.scanner.root,
            )
            return False

    @defer.inlineCallbacks
    def stop(self):
        """Stop scanning; fires once a scan in progress is done."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._scanning is not None:
            yield self._scanning
