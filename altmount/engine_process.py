"""The process decode pool (`engine.pool: process`): yEnc decode in worker processes.

No article byte is pickled. The reactor thread copies a body into a shared-memory
block (`multiprocessing.shared_memory`) and sends the worker four small values over
its pipe; the worker decodes and writes the decoded bytes back into the same block
(decoded data is never longer than the body) and answers with the yEnc header
fields. The reactor side wraps the decoded bytes as a read-only view of the block,
without copying them, and the block goes back to the free list when the last view
of that data is released (a `weakref.finalize` on the numpy array that owns the
view). The pool therefore holds as many blocks as decoded segments are alive at
once: what is in flight plus what the streams' read-ahead windows hold.

Copies per article: reactor side one (body into the block); worker side two
(sabyenc3 reads only `bytes`, and its result is copied into the block). The
thread pool has none of these, but shares one GIL with the reactor.

Replies are read in the reactor thread (each worker's pipe is a reactor reader);
with `reactor=None` the owner calls `process_replies()` itself (benchmarks, tests).
"""

from __future__ import annotations

import itertools
import logging
import mmap
import os
import socket
import subprocess
import time
import weakref
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np
from twisted.internet import defer
from twisted.python.failure import Failure

from altmount import errors
from altmount._core.types import DecodedArticle
from altmount.selfexec import python_argv

__all__ = ["BLOCK_SIZE", "ProcessDecodePool"]

log = logging.getLogger(__name__)

#: One block holds one article body: 1 MiB fits a 716,800-byte part encoded (about
#: 735 KB with yEnc's escapes and line breaks) with room to spare. Larger bodies get
#: a block of their own, unlinked as soon as its data is released.
BLOCK_SIZE = 1 << 20

#: Where Linux keeps POSIX shared memory (what `SharedMemory` creates).
_SHM_DIR = "/dev/shm"

#: A worker that exits sooner than this after its start is not replaced: it would
#: exit again (a broken build), and the pool fails loudly instead of spinning.
MIN_WORKER_LIFETIME = 5.0


def _attach(name: str) -> mmap.mmap:
    """Map a block the pool created. Not `SharedMemory(name)`: in a process that
    multiprocessing did not start, that registers the block with a resource tracker
    of the worker's own, which unlinks it when the worker exits."""
    fd = os.open(os.path.join(_SHM_DIR, name.lstrip("/")), os.O_RDWR)
    try:
        return mmap.mmap(fd, 0)
    finally:
        os.close(fd)


def worker_main(fd: int) -> None:
    """Worker loop on the pipe `fd`: map blocks by name, decode in place, answer."""
    from altmount import _core

    conn = Connection(fd)
    attached: dict[str, mmap.mmap] = {}
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if message is None:
            break
        job, name, length, oneshot = message
        block = attached.get(name)
        if block is None:
            block = attached[name] = _attach(name)
        body = memoryview(block)[:length]
        try:
            article = _core.decode_article(body)
        except errors.AltmountError as exc:
            reply: tuple[Any, ...] = (job, type(exc).__name__, str(exc))
        else:
            data = article.data
            body[: len(data)] = data
            reply = (
                job,
                None,
                (
                    len(data),
                    article.name,
                    article.part,
                    article.total,
                    article.begin,
                    article.end,
                    article.crc,
                    article.crc_ok,
                ),
            )
        body.release()
        if oneshot:
            attached.pop(name).close()
        conn.send(reply)
    for block in attached.values():
        block.close()


class _Blocks:
    """Shared-memory blocks of the pool: a free list of standard ones, one-offs for big bodies."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.free: list[SharedMemory] = []
        self.owned: dict[str, SharedMemory] = {}
        # Blocks unlinked while a view was alive: closing them then raises BufferError,
        # and so would their __del__, so they are kept until the process ends.
        self.orphans: list[SharedMemory] = []

    def take(self, need: int) -> tuple[SharedMemory, bool]:
        """A block of at least `need` bytes and whether it is a one-off."""
        if need > self.size:
            block = SharedMemory(create=True, size=need)
            self.owned[block.name] = block
            return block, True
        if self.free:
            return self.free.pop(), False
        block = SharedMemory(create=True, size=self.size)
        self.owned[block.name] = block
        return block, False

    def give(self, block: SharedMemory, oneshot: bool) -> None:
        """Return a block whose data nobody holds any more."""
        if oneshot:
            self.owned.pop(block.name, None)
            self._dispose(block)
        elif block.name in self.owned:
            self.free.append(block)
        else:
            self.orphans.append(block)  # the pool stopped while this data was in use

    def close(self) -> None:
        """Unlink every block; mappings still viewed by a stream stay valid until released."""
        for block in self.owned.values():
            self._dispose(block)
        self.owned.clear()
        self.free.clear()

    def _dispose(self, block: SharedMemory) -> None:
        try:
            block.close()
        except BufferError:
            self.orphans.append(block)
        try:
            block.unlink()
        except FileNotFoundError:
            pass


@dataclass(slots=True)
class _Worker:
    process: subprocess.Popen[bytes]
    conn: Connection
    started: float
    jobs: set[int] = field(default_factory=set)
    reader: Any = None


@dataclass(slots=True)
class _Job:
    deferred: defer.Deferred[DecodedArticle]
    block: SharedMemory
    oneshot: bool
    copy: bool
    worker: _Worker


class _PipeReader:
    """Makes one worker's pipe a reactor reader (IReadDescriptor)."""

    def __init__(self, pool: ProcessDecodePool, worker: _Worker) -> None:
        self._pool = pool
        self._worker = worker

    def fileno(self) -> int:
        return self._worker.conn.fileno()

    def doRead(self) -> None:
        self._pool._drain(self._worker)

    def connectionLost(self, reason: Failure) -> None:
        pass

    def logPrefix(self) -> str:
        return "altmount-decode-process"


class ProcessDecodePool:
    """`workers` decode processes fed through shared-memory blocks.

    `decode(body)` fires with a DecodedArticle whose `data` is a read-only
    memoryview of a block (zero copies on this side); `decode(body, copy=True)`
    gives `bytes` and frees the block at once (for callers that keep the data), as
    do bodies larger than a block.
    """

    def __init__(self, reactor: Any, workers: int, *, block_size: int = BLOCK_SIZE) -> None:
        if workers < 1:
            raise ValueError("a process pool needs at least one worker")
        self._reactor = reactor
        self._count = workers
        self._blocks = _Blocks(block_size)
        self._workers: list[_Worker] = []
        self._jobs: dict[int, _Job] = {}
        self._ids = itertools.count()
        self.started = False
        self.joined = False

    @property
    def workers(self) -> int:
        """Worker processes running now."""
        return len(self._workers)

    @property
    def in_flight(self) -> int:
        """Decodes sent to a worker and not answered yet."""
        return len(self._jobs)

    @property
    def blocks(self) -> tuple[int, int]:
        """(blocks owned, blocks free): what the pool holds in shared memory."""
        return len(self._blocks.owned), len(self._blocks.free)

    def worker_pids(self) -> list[int]:
        """Process ids of the workers (for CPU and memory accounting)."""
        return [w.process.pid for w in self._workers]

    def start(self) -> None:
        """Start the worker processes (each imports altmount._core once)."""
        for _ in range(self._count):
            self._workers.append(self._spawn())
        self.started = True

    def _spawn(self) -> _Worker:
        # A fresh interpreter, not fork (the parent runs a reactor and threads) and not
        # multiprocessing's spawn (it re-imports the parent's __main__, a CLI here).
        ours, theirs = socket.socketpair()
        process = subprocess.Popen(
            python_argv(
                "-c",
                "import sys; from altmount.engine_process import worker_main;"
                " worker_main(int(sys.argv[1]))",
                str(theirs.fileno()),
            ),
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        worker = _Worker(process, Connection(ours.detach()), time.monotonic())
        if self._reactor is not None:
            worker.reader = _PipeReader(self, worker)
            self._reactor.addReader(worker.reader)
        return worker

    def decode(self, body: bytes, copy: bool = False) -> defer.Deferred[DecodedArticle]:
        """Decode one article body in a worker; fires with a DecodedArticle or fails
        with YencError (invalid yEnc) or DecodePoolError (the worker died)."""
        if not self._workers:
            return defer.fail(errors.DecodePoolError("the process decode pool is not running"))
        block, oneshot = self._blocks.take(len(body))
        block.buf[: len(body)] = body
        worker = min(self._workers, key=lambda w: len(w.jobs))
        job = next(self._ids)
        deferred: defer.Deferred[DecodedArticle] = defer.Deferred()
        self._jobs[job] = _Job(deferred, block, oneshot, copy, worker)
        worker.jobs.add(job)
        try:
            worker.conn.send((job, block.name, len(body), oneshot))
        except OSError:
            self._lost(worker)
        return deferred

    def process_replies(self, timeout: float | None = None) -> int:
        """Handle the replies that arrive within `timeout` (no reactor); returns how many."""
        ready = wait([w.conn for w in self._workers], timeout)
        handled = 0
        for worker in [w for w in self._workers if w.conn in ready]:
            handled += self._drain(worker)
        return handled

    def _drain(self, worker: _Worker) -> int:
        handled = 0
        try:
            while worker.conn.poll():
                self._reply(worker, worker.conn.recv())
                handled += 1
        except (EOFError, OSError):
            self._lost(worker)
        return handled

    def _reply(self, worker: _Worker, reply: tuple[Any, ...]) -> None:
        job_id, error, payload = reply
        worker.jobs.discard(job_id)
        job = self._jobs.pop(job_id)
        if error is not None:
            self._blocks.give(job.block, job.oneshot)
            cls = getattr(errors, error, None)
            if not (isinstance(cls, type) and issubclass(cls, errors.YencError)):
                cls = errors.YencError
            job.deferred.errback(cls(payload))
            return
        length, *header = payload
        if job.copy or job.oneshot:
            # One-off blocks are copied out: unlinking one from a finalizer would race
            # with the array that still exports it.
            data: Any = bytes(job.block.buf[:length])
            self._blocks.give(job.block, job.oneshot)
        else:
            data = self._wrap(job.block, length)
        job.deferred.callback(DecodedArticle(data, *header))

    def _wrap(self, block: SharedMemory, length: int) -> memoryview:
        # The array owns the view of the block; every memoryview or slice made from
        # it keeps it alive, so the finalizer runs exactly when the data is unused.
        array = np.frombuffer(block.buf, dtype=np.uint8, count=length)
        array.flags.writeable = False
        weakref.finalize(array, self._blocks.give, block, False)
        return memoryview(array)

    def _lost(self, worker: _Worker) -> None:
        if worker not in self._workers:
            return
        self._workers.remove(worker)
        self._forget(worker)
        failed = [self._jobs.pop(job) for job in sorted(worker.jobs)]
        worker.jobs.clear()
        code = worker.process.poll()
        if self.joined:
            pass
        elif time.monotonic() - worker.started >= MIN_WORKER_LIFETIME:
            log.warning(
                "decode worker %s exited (code %s); starting another", worker.process.pid, code
            )
            self._workers.append(self._spawn())
        else:
            log.error(
                "decode worker %s exited (code %s) right after its start; not replacing it",
                worker.process.pid,
                code,
            )
        for job in failed:
            self._blocks.give(job.block, job.oneshot)
            job.deferred.errback(
                errors.DecodePoolError(
                    f"decode worker {worker.process.pid} exited while decoding an article"
                )
            )

    def _forget(self, worker: _Worker) -> None:
        if worker.reader is not None:
            self._reactor.removeReader(worker.reader)
            worker.reader = None
        worker.conn.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the workers, fail what is in flight, unlink the shared memory."""
        if self.joined:
            return
        self.joined = True
        workers, self._workers = self._workers, []
        for worker in workers:
            try:
                worker.conn.send(None)
            except OSError:
                pass
        for worker in workers:
            try:
                worker.process.wait(timeout)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(timeout)
            self._forget(worker)
        jobs, self._jobs = self._jobs, {}
        self._blocks.close()
        for job in jobs.values():
            job.deferred.errback(errors.DecodePoolError("the process decode pool was stopped"))
