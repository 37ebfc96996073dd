"""The import pipeline: an NZB goes through a sequence of stages to become metadata.

Each stage takes the immutable `ImportJob` and returns (or fires with) the next
one; the runner times every stage. The default stages (see `direct.py`) are:
parse → sample (send the STATs of a sample) → probe (first/last article of
every file) → par2 names → names → select (what to expose) → validate (read the
STAT answers) → write. The archive stage
plugs in before `select`: it replaces archive-volume candidates by the inner
files, whose segment tables point into the volumes' articles.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from twisted.internet import defer
from twisted.python.failure import Failure

from altmount.importer.layout import PartHeader
from altmount.metadata import Cipher, FileRecord, SegmentTable
from altmount.nzb import NZB, NZBFile

__all__ = [
    "ArticleFetcher",
    "StatChecker",
    "ThreadRunner",
    "Head",
    "ImportFile",
    "LostFile",
    "Candidate",
    "ImportJob",
    "ImportResult",
    "Stage",
    "run_stages",
]

#: Fetches and decodes one article: fires with a `DecodedArticle`.
ArticleFetcher = Callable[[str], defer.Deferred]
#: Asks the providers whether an article exists: fires with a bool (RFC 3977 6.2.4 STAT).
StatChecker = Callable[[str], defer.Deferred]
#: Runs `fn(*args)` off the reactor thread: fires with its result.
ThreadRunner = Callable[..., defer.Deferred]


@dataclass(frozen=True, slots=True)
class Head:
    """What the first article tells about a file's content, kept small.

    `md5_16k` is the MD5 of the file's first 16 KiB (PAR2's "hash of the first
    16k"), None when the first article holds less than that of a larger file.
    `prefix` is the start of the data: 16 KiB for a PAR2 file (its packet index
    usually sits there), 1 KiB otherwise (enough for every magic number we test).
    """

    md5_16k: bytes | None
    prefix: bytes


@dataclass(frozen=True, slots=True)
class ImportFile:
    """One posted file whose first (and last) article was read."""

    index: int
    label: str
    nzb_file: NZBFile
    first: PartHeader
    table: SegmentTable
    head: Head


@dataclass(frozen=True, slots=True)
class LostFile:
    """A posted file whose first or last article no provider has."""

    label: str
    missing: tuple[str, ...]
    #: False when the subject names a file we would not expose anyway (.par2, .nfo, ...).
    counts: bool


@dataclass(frozen=True, slots=True)
class Candidate:
    """A file the release may expose: its name, where its bytes are, and how it was named.

    With a `cipher` (a member of an encrypted archive) the table holds ciphertext.
    """

    name: str
    table: SegmentTable
    origin: str
    cipher: Cipher | None = None

    @property
    def size(self) -> int:
        """The file's size (the plaintext's, when encrypted)."""
        return self.cipher.size if self.cipher is not None else self.table.size


@dataclass(frozen=True, slots=True)
class ImportJob:
    """Everything the pipeline knows about one NZB so far."""

    nzb_filename: str
    category: str | None
    data: bytes = b""
    #: Name the release after the NZB's file name first (a SABnzbd job), not its meta name.
    name_from_file: bool = False
    nzb: NZB | None = None
    release: str = ""
    folder: str = ""
    #: The release's archive password: the NZB's <meta type="password">, else the
    #: `{{password}}` in its file name, else "".
    password: str = ""
    files: tuple[ImportFile, ...] = ()
    lost: tuple[LostFile, ...] = ()
    #: Message-ids whose BODY was read, so STATting them again proves nothing.
    verified: frozenset[str] = frozenset()
    #: STATs sent early (a `validate.StatSample`), answered while other stages run.
    stats: Any = None
    #: Decoded first and last articles of archive volumes, by message-id: read by the
    #: probe, reused by the archive stage (which empties this).
    archive_articles: Mapping[str, bytes] = field(default_factory=dict)
    #: Names from PAR2 FileDesc packets, by `ImportFile.index`.
    par2_names: tuple[tuple[int, str], ...] = ()
    candidates: tuple[Candidate, ...] = ()
    skipped: tuple[str, ...] = ()
    records: tuple[FileRecord, ...] = ()
    warnings: tuple[str, ...] = ()
    timings: tuple[tuple[str, float], ...] = ()

    def warn(self, message: str) -> ImportJob:
        """This job with one more warning."""
        return replace(self, warnings=(*self.warnings, message))

    def abandon(self) -> None:
        """The import failed: withdraw provider requests still waiting for an answer."""
        if self.stats is not None:
            self.stats.cancel()


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import wrote: the release folder and its files.

    `warnings` are problems that did not stop the import (a damaged PAR2, a
    missing article in a file that is not exposed); `stage_ms` times each stage.
    """

    release_dir: str
    files: tuple[FileRecord, ...]
    skipped: tuple[str, ...]
    elapsed_ms: float
    warnings: tuple[str, ...] = ()
    stage_ms: tuple[tuple[str, float], ...] = ()


class Stage(Protocol):
    """One step of the pipeline."""

    name: str

    def run(self, job: ImportJob) -> ImportJob | defer.Deferred[ImportJob]:
        """The job with what this stage learned or decided."""


def run_stages(
    stages: Sequence[Stage],
    job: ImportJob,
    clock: Callable[[], float] = time.perf_counter,
    progress: Callable[[float], object] | None = None,
) -> defer.Deferred[ImportJob]:
    """Run the stages in order; fires with the last job or fails with the first error.

    `progress(share)` hears the share of stages finished after each one. On
    failure the last job reached is abandoned (its early requests withdrawn).
    """
    latest = [job]

    def timed(job: ImportJob, stage: Stage) -> Any:
        started = clock()

        def done(next_job: ImportJob) -> ImportJob:
            elapsed = (clock() - started) * 1000
            latest[0] = replace(next_job, timings=(*next_job.timings, (stage.name, elapsed)))
            if progress is not None:
                progress(len(latest[0].timings) / len(stages))
            return latest[0]

        running: defer.Deferred[ImportJob] = defer.maybeDeferred(stage.run, job)  # type: ignore[call-overload]
        return running.addCallback(done)

    def abandon(failure: Failure) -> Failure:
        latest[0].abandon()
        return failure

    result: defer.Deferred[ImportJob] = defer.succeed(job)
    for stage in stages:
        result.addCallback(timed, stage)
    return result.addErrback(abandon)
