"""The PAR2 stage: real names of obfuscated files from the release's PAR2 index.

The smallest PAR2 file of the release is the index (no recovery slices); its
FileDesc packets record every protected file's name, size and 16 KiB MD5.
par2cmdline and ParPar write the Main and FileDesc packets first, so the 16 KiB
the probe kept usually hold them all and this stage costs no round trip; only
when some file is still unnamed is the rest of the index fetched (one round
trip, all its articles at once, at most `MAX_INDEX_BYTES`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from twisted.internet import defer
from twisted.python.failure import Failure

from altmount.errors import ArticleNotFound, Par2Error
from altmount.importer.names import has_known_extension, is_par2, match_par2
from altmount.importer.pipeline import ArticleFetcher, ImportFile, ImportJob
from altmount.importer.probe import first_failure
from altmount.par2 import Par2Parser, Par2Set

__all__ = ["Par2Stage", "MAX_INDEX_BYTES"]

#: An index lists ~150 bytes per file plus 20 per slice; 8 MiB covers releases of
#: thousands of files. A bigger "smallest PAR2" is a recovery volume: its prefix
#: holds the same FileDesc packets, so a prefix of this size is enough.
MAX_INDEX_BYTES = 8 << 20


class Par2Stage:
    """Finds PAR2 FileDesc names for the release's files."""

    name = "par2"

    def __init__(self, fetch: ArticleFetcher, extra_extensions: tuple[str, ...] = ()) -> None:
        self._fetch = fetch
        self._extra = extra_extensions

    def run(self, job: ImportJob) -> ImportJob | defer.Deferred[ImportJob]:
        """The job with `par2_names` for every file a FileDesc packet describes."""
        indexes = [f for f in job.files if is_par2(f)]
        data_files = [f for f in job.files if not is_par2(f)]
        if not indexes or not data_files:
            return job
        index = min(indexes, key=lambda f: (f.table.size, f.index))
        prefix = index.head.prefix
        parsed, problem = _parse([prefix])
        names = match_par2(data_files, parsed) if parsed else {}
        unnamed = [f for f in data_files if f.index not in names and not self._named(f)]
        if not unnamed or index.table.size <= len(prefix):
            return _finish(job, index, names, problem if not names else None)
        return self._fetch_index(index).addCallback(self._parsed, job, index, data_files)

    def _named(self, file: ImportFile) -> bool:
        """True when the file has a real-looking name even without PAR2."""
        return any(
            has_known_extension(name, self._extra)
            for name in (file.first.name, file.nzb_file.filename)
        )

    def _fetch_index(self, index: ImportFile) -> defer.Deferred[list[bytes]]:
        offsets = index.table.offsets
        count = max(1, int(np.searchsorted(offsets, MAX_INDEX_BYTES, side="left")))
        ids = index.table.message_ids[:count]

        def missing(failure: Failure) -> Any:
            failure.trap(ArticleNotFound)
            return b""  # parse around the hole: packets after it still count

        calls = [self._fetch(mid).addCallback(lambda a: a.data).addErrback(missing) for mid in ids]
        return defer.gatherResults(calls, consumeErrors=True).addErrback(first_failure)

    def _parsed(
        self, chunks: list[bytes], job: ImportJob, index: ImportFile, data_files: list[ImportFile]
    ) -> ImportJob:
        parsed, problem = _parse(chunks)
        names = match_par2(data_files, parsed) if parsed else {}
        if b"" in chunks:
            problem = problem or "some of its articles are missing on every provider"
        return _finish(job, index, names, problem)


def _parse(chunks: list[bytes]) -> tuple[Par2Set | None, str | None]:
    parser = Par2Parser()
    try:
        for chunk in chunks:
            parser.feed(chunk)
        parsed = parser.close()
    except Par2Error as exc:
        return None, str(exc)
    damaged = f"{parsed.bad_packets} damaged packet(s) skipped" if parsed.bad_packets else None
    return parsed, damaged


def _finish(
    job: ImportJob, index: ImportFile, names: dict[int, str], problem: str | None
) -> ImportJob:
    if problem:
        job = job.warn(
            f"PAR2 index {index.label}: {problem}; names of unmatched files come "
            "from their yEnc headers, subjects or contents"
        )
    return replace(job, par2_names=tuple(sorted(names.items())))
