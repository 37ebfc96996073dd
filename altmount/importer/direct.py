"""Import an NZB (plain files and stored archives) into the metadata store.

`DirectImporter.import_nzb` runs the default pipeline (pipeline.py): parse →
sample → probe → par2 → names → archive → select → validate → write. Provider requests of a stage
are all issued at once, so an import costs a handful of round trips whatever
the file count. Everything is written in one metadata transaction: an import
is all or nothing, and nothing is written when it fails.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from twisted.internet import defer

from altmount.config import Config
from altmount.errors import ImportFailed, MetadataError, NZBParseError, PathError
from altmount.importer.layout import name_password, release_dir, release_name
from altmount.importer.names import choose_name
from altmount.importer.par2names import Par2Stage
from altmount.importer.pipeline import (
    ArticleFetcher,
    ImportJob,
    ImportResult,
    Stage,
    StatChecker,
    ThreadRunner,
    run_stages,
)
from altmount.importer.probe import ProbeStage, part_header
from altmount.importer.select import SelectStage
from altmount.importer.validate import SampleStage, ValidateStage
from altmount.metadata import FileRecord, MetadataStore
from altmount.nzb import MAX_NZB_BYTES, parse_nzb

__all__ = [
    "DirectImporter",
    "ImportResult",
    "part_header",
    "default_stages",
    "ParseStage",
    "NameStage",
    "WriteStage",
]

log = logging.getLogger(__name__)


def _inline(fn: Callable, *args: object) -> defer.Deferred:
    return defer.maybeDeferred(fn, *args)


def _shown(job: ImportJob) -> str:
    """The NZB's name for an error a person reads: its `{{password}}` left out (the error
    is shown in the queue, the SABnzbd history and the log)."""
    return name_password(job.nzb_filename)[0]


class ParseStage:
    """Parses the NZB (off the reactor: a big one takes seconds) and places the release."""

    name = "parse"

    def __init__(self, config: Config, run_in_thread: ThreadRunner) -> None:
        self._config = config
        self._run = run_in_thread

    def run(self, job: ImportJob) -> ImportJob | defer.Deferred[ImportJob]:
        """The job with the parsed NZB, the release name and its folder."""
        if len(job.data) > MAX_NZB_BYTES:
            raise ImportFailed(
                f"{_shown(job)}: NZB is {len(job.data) >> 20} MiB, larger "
                f"than the {MAX_NZB_BYTES >> 20} MiB accepted"
            )

        def parsed(nzb):
            release = release_name(job.nzb_filename, nzb.name, from_file=job.name_from_file)
            folder = release_dir(
                self._config.sabnzbd.complete_dir, self._config.category(job.category).dir, release
            )
            password = nzb.password or name_password(job.nzb_filename)[1]
            return replace(
                job, data=b"", nzb=nzb, release=release, folder=folder, password=password
            )

        def failed(failure):
            failure.trap(NZBParseError)
            raise ImportFailed(f"{_shown(job)}: {failure.getErrorMessage()}")

        return self._run(parse_nzb, job.data).addCallbacks(parsed, failed)


class NameStage:
    """Turns every probed file into a named candidate (PAR2, yEnc, subject, magic bytes)."""

    name = "names"

    def __init__(self, extra_extensions: Sequence[str]) -> None:
        self._extra = tuple(extra_extensions)

    def run(self, job: ImportJob) -> ImportJob:
        """The job with one candidate per probed file."""
        par2 = dict(job.par2_names)
        candidates = tuple(choose_name(f, par2.get(f.index), self._extra) for f in job.files)
        return replace(job, candidates=candidates)


class WriteStage:
    """Writes the candidates as file records, in one metadata transaction."""

    name = "write"

    def __init__(self, store: MetadataStore, wall_clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._wall_clock = wall_clock

    def run(self, job: ImportJob) -> ImportJob:
        """The job with the records written."""
        now = self._wall_clock()
        try:
            records = tuple(
                FileRecord(
                    f"{job.folder}/{c.name}",
                    c.size,
                    now,
                    "ok",
                    c.table,
                    job.release,
                    job.password,
                    c.cipher,
                )
                for c in job.candidates
            )
            self._store.put_files(records)
        except (MetadataError, PathError) as exc:
            raise ImportFailed(f"{_shown(job)}: cannot store the release: {exc}") from exc
        return replace(job, records=records)


def default_stages(
    fetch_article: ArticleFetcher,
    stat: StatChecker,
    store: MetadataStore,
    config: Config,
    run_in_thread: ThreadRunner = _inline,
) -> tuple[Stage, ...]:
    """The stages of an import, in order (the archive stage goes before select)."""
    # The archive stage builds on this package's modules: imported here, not at the
    # top, so that importing either package first works.
    from altmount.archive.stage import ArchiveStage

    options = config.import_
    extensions = tuple(options.allowed_file_extensions)
    return (
        ParseStage(config, run_in_thread),
        SampleStage(stat, options.segment_sample_percentage),
        ProbeStage(fetch_article, extensions),
        Par2Stage(fetch_article, extensions),
        NameStage(extensions),
        ArchiveStage(fetch_article, extensions),
        SelectStage(extensions, options.rename_to_nzb_name),
        ValidateStage(
            stat, options.segment_sample_percentage, options.acceptable_missing_segments_percentage
        ),
        WriteStage(store),
    )


class DirectImporter:
    """Turns NZB bytes into metadata records for the media files they post.

    `fetch_article` fetches and decodes one article (fires with a DecodedArticle),
    `stat` asks whether one exists; `run_in_thread` runs CPU-heavy work (parsing
    a big NZB) off the reactor thread.
    """

    def __init__(
        self,
        fetch_article: ArticleFetcher,
        stat: StatChecker,
        store: MetadataStore,
        config: Config,
        *,
        run_in_thread: ThreadRunner = _inline,
        stages: Sequence[Stage] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.stages = tuple(
            stages or default_stages(fetch_article, stat, store, config, run_in_thread)
        )
        self._clock = clock

    def import_nzb(
        self,
        data: bytes,
        nzb_filename: str,
        category: str | None = None,
        progress: Callable[[float], object] | None = None,
        name_from_file: bool = False,
    ) -> defer.Deferred[ImportResult]:
        """Parse, learn every file's layout from the providers, and write the release.

        `progress(share)` hears the share of pipeline stages done after each stage;
        `name_from_file` names the release after the NZB's file name as SABnzbd does.

        Fires with an ImportResult, or fails with ImportFailed carrying a message a
        person can act on; provider connectivity errors (NNTPTimeout,
        NoProvidersAvailable, ...) pass through unchanged, so a queue can retry.
        """
        started = self._clock()
        job = ImportJob(nzb_filename, category, data, name_from_file=name_from_file)

        def done(job: ImportJob) -> ImportResult:
            elapsed = (self._clock() - started) * 1000
            log.info(
                "imported %s: %d file(s) into %s in %.0f ms (%s)",
                nzb_filename,
                len(job.records),
                job.folder,
                elapsed,
                ", ".join(f"{name} {ms:.0f}" for name, ms in job.timings),
            )
            for warning in job.warnings:
                log.warning("%s: %s", nzb_filename, warning)
            return ImportResult(
                job.folder, job.records, job.skipped, elapsed, job.warnings, job.timings
            )

        return run_stages(self.stages, job, self._clock, progress).addCallback(done)
