"""Import an NZB of plain (non-archive) files into the metadata store.

For each file the first and last articles are fetched — all files at once, so
an import costs a couple of provider round trips whatever the file count — and
their yEnc headers give the real name, the decoded size and the offset table.
Everything is written in one metadata transaction: an import is all or nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twisted.internet import defer

from altmount.config import Config
from altmount.errors import AltmountError, ArticleNotFound, ImportFailed, NZBParseError
from altmount.importer.layout import (
    PartHeader,
    dedupe_names,
    is_allowed,
    release_dir,
    release_name,
    safe_name,
    table_from_parts,
    uniform_table,
)
from altmount.metadata import FileRecord, MetadataStore, SegmentTable
from altmount.nzb import NZB, NZBFile, parse_nzb

__all__ = ["ImportResult", "DirectImporter", "HeaderFetcher", "part_header"]

log = logging.getLogger(__name__)

#: Fetches one article and fires with its PartHeader (see `part_header`).
HeaderFetcher = Callable[[str], defer.Deferred]


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import wrote: the release folder and its files."""

    release_dir: str
    files: tuple[FileRecord, ...]
    skipped: tuple[str, ...]
    elapsed_ms: float


@dataclass(frozen=True, slots=True)
class _Learned:
    name: str
    table: SegmentTable


class DirectImporter:
    """Turns NZB bytes into metadata records for the media files they post."""

    def __init__(self, fetch_header: HeaderFetcher, store: MetadataStore, config: Config) -> None:
        self._fetch_header = fetch_header
        self._store = store
        self._config = config

    @defer.inlineCallbacks
    def import_nzb(self, data: bytes, nzb_filename: str, category: str | None = None):
        """Parse, learn every file's layout from the providers, and write the release.

        Fires with an ImportResult, or fails with ImportFailed / NZBParseError
        carrying a message a person can act on.
        """
        started = time.perf_counter()
        try:
            nzb = parse_nzb(data)
        except NZBParseError as exc:
            raise ImportFailed(f"{nzb_filename}: {exc}") from exc
        release = release_name(nzb_filename, nzb.name)
        folder = release_dir(self._config.sabnzbd.complete_dir,
                             self._config.category(category).dir, release)
        learned = yield defer.gatherResults(
            [self._learn(nzb_file, index) for index, nzb_file in enumerate(nzb.files)],
            consumeErrors=True,
        ).addErrback(_first_failure)
        records, skipped = self._records(nzb, folder, release, learned)
        self._store.put_files(records)
        elapsed = (time.perf_counter() - started) * 1000
        log.info("imported %s: %d file(s) into %s in %.0f ms", nzb_filename, len(records),
                 folder, elapsed)
        return ImportResult(folder, tuple(records), tuple(skipped), elapsed)

    def _records(self, nzb: NZB, folder: str, release: str,
                 learned: Sequence[_Learned]) -> tuple[list[FileRecord], list[str]]:
        allowed = self._config.import_.allowed_file_extensions
        kept = [item for item in learned if is_allowed(item.name, allowed)]
        skipped = [item.name for item in learned if not is_allowed(item.name, allowed)]
        if not kept:
            names = ", ".join(sorted(skipped)[:10]) or "none"
            raise ImportFailed(f"no streamable media file in the release (files: {names}); "
                               "allowed extensions are import.allowed_file_extensions")
        now = time.time()
        names = dedupe_names([item.name for item in kept])
        records = [
            FileRecord(f"{folder}/{name}", int(item.table.offsets[-1]), now, "ok",
                       item.table, release, nzb.password or "")
            for name, item in zip(names, kept, strict=True)
        ]
        return records, skipped

    @defer.inlineCallbacks
    def _learn(self, nzb_file: NZBFile, index: int):
        ids = [segment.message_id for segment in nzb_file.segments]
        label = nzb_file.filename or f"file {index + 1}"
        wanted = [ids[0]] if len(ids) == 1 else [ids[0], ids[-1]]
        headers = yield self._headers(label, wanted)
        first, last = headers[0], headers[-1] if len(headers) > 1 else None
        table = uniform_table(label, ids, first, last, nzb_file.groups)
        if table is None:
            log.info("%s: parts of uneven size, reading all %d article headers", label, len(ids))
            headers = yield self._headers(label, ids)
            table = table_from_parts(label, ids, headers, nzb_file.groups)
        name = safe_name(first.name, "") or safe_name(nzb_file.filename, f"file{index + 1}")
        return _Learned(name, table)

    def _headers(self, label: str, message_ids: Sequence[str]) -> defer.Deferred:
        def describe(failure):
            exc = failure.value
            if isinstance(exc, ArticleNotFound):
                raise ImportFailed(f"{label}: article <{exc.message_id}> is missing on every "
                                   "provider (the post is incomplete or expired)")
            if isinstance(exc, AltmountError):
                raise ImportFailed(f"{label}: {exc}")
            return failure

        calls = [self._fetch_header(mid).addErrback(describe) for mid in message_ids]
        return defer.gatherResults(calls, consumeErrors=True).addErrback(_first_failure)


def _first_failure(failure):
    """gatherResults wraps the first error in FirstError; hand on the error itself."""
    failure.trap(defer.FirstError)
    return failure.value.subFailure


def part_header(article) -> PartHeader:
    """The placement fields of a DecodedArticle."""
    return PartHeader(article.name, article.total, article.begin, article.end)
