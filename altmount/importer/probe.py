"""The probe stage: the first and last article of every file, all files at once.

Their yEnc headers give the decoded size and the offset table (see layout.py);
the first article's data gives the 16 KiB hash and the magic bytes for naming.
All requests are issued together, so the stage costs one provider round trip
whatever the file count. A file cut into uneven parts gets a sparse table (its
middle offsets are learned when it is read), except an archive volume or a PAR2
file: the next stages read those at arbitrary offsets, so every header of such a
file is read (one more round trip).

The decoded first and last article of a file that starts with a RAR or 7z
signature, and the last article of a file named like a split 7z volume, are handed
on in `ImportJob.archive_articles`: an archive's headers usually sit there, and the
archive stage would otherwise fetch them again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from altmount.errors import ArticleNotFound, ImportFailed, YencError
from altmount.importer.layout import (
    PartHeader,
    is_allowed,
    missing_numbers,
    sparse_table,
    table_from_parts,
    uniform_table,
)
from altmount.importer.magic import sniff_extension
from altmount.importer.names import has_known_extension, head_of
from altmount.importer.pipeline import ArticleFetcher, ImportFile, ImportJob, LostFile
from altmount.nzb import NZBFile
from altmount.par2 import MAGIC as PAR2_MAGIC

__all__ = ["ProbeStage", "part_header", "first_failure"]

#: Message-ids quoted in an error message; the rest are counted.
SHOWN_IDS = 5

#: Decoded archive articles one import hands from the probe to the archive stage, at
#: most; past this the archive stage fetches them again, so memory stays bounded.
KEPT_ARCHIVE_BYTES = 48 << 20

#: What a file's first bytes show when it is a volume of an archive set.
_ARCHIVE_EXTENSIONS = (".rar", ".7z")
#: The name of a volume of a split 7z set (`.7z.001`, ...), whose first bytes show nothing
#: after the first volume.
_SEVENZIP_VOLUME = re.compile(r"\.7z\.\d{3,5}$", re.IGNORECASE)


def part_header(article: Any) -> PartHeader:
    """The placement fields of a DecodedArticle."""
    return PartHeader(article.name, article.total, article.begin, article.end, article.part)


def first_failure(failure: Failure) -> Failure:
    """gatherResults wraps the first error in FirstError; hand on the error itself."""
    failure.trap(defer.FirstError)
    return failure.value.subFailure


def quote_ids(message_ids: Sequence[str]) -> str:
    """`<a>, <b>, … (+N more)` for an error message."""
    shown = ", ".join(f"<{mid}>" for mid in message_ids[:SHOWN_IDS])
    more = len(message_ids) - SHOWN_IDS
    return f"{shown} (+{more} more)" if more > 0 else shown


class _Missing:
    """Marks an article every provider answered 430 for."""

    __slots__ = ("message_id",)

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id


class _Broken:
    """A file whose yEnc headers contradict the NZB (segments missing from it, mixed files)."""

    __slots__ = ("error", "counts")

    def __init__(self, error: ImportFailed, counts: bool) -> None:
        self.error = error
        self.counts = counts


class _Fragment:
    """An NZB entry that does not hold its whole file: a piece of a file the indexer
    split over several <file> entries (joined in `_merge`) or an incomplete NZB."""

    __slots__ = ("index", "label", "nzb_file", "first", "last", "head")

    def __init__(
        self,
        index: int,
        label: str,
        nzb_file: NZBFile,
        first: PartHeader,
        last: PartHeader,
        head: Any,
    ) -> None:
        self.index = index
        self.label = label
        self.nzb_file = nzb_file
        self.first = first
        self.last = last
        self.head = head


class _KeptArticles:
    """Decoded articles of archive volumes, kept for the archive stage up to a budget."""

    __slots__ = ("articles", "room")

    def __init__(self, budget: int) -> None:
        self.articles: dict[str, bytes] = {}
        self.room = budget

    def keep(self, message_id: str, data: bytes) -> None:
        if len(data) <= self.room and message_id not in self.articles:
            self.articles[message_id] = data
            self.room -= len(data)


class ProbeStage:
    """Reads the first and last article of every file; fails at once on a dead post."""

    name = "probe"

    def __init__(self, fetch: ArticleFetcher, allowed_extensions: Sequence[str]) -> None:
        self._fetch = fetch
        self._allowed = allowed_extensions

    def run(self, job: ImportJob) -> defer.Deferred[ImportJob]:
        """The job with an ImportFile (or a LostFile) for every posted file."""
        assert job.nzb is not None
        kept = _KeptArticles(KEPT_ARCHIVE_BYTES)
        calls = [self._probe(index, nzb_file, kept) for index, nzb_file in enumerate(job.nzb.files)]
        gathered = defer.gatherResults(calls, consumeErrors=True)
        return (
            gathered.addErrback(first_failure)
            .addCallback(self._merge)
            .addCallback(self._collect, job, kept)
        )

    @defer.inlineCallbacks
    def _merge(self, probed: list[Any]):
        """Join the pieces of a file split over several entries (same yEnc name and size).

        A group joins when exactly one piece starts at byte 0; its table comes from every
        article's own header, since the NZB's order of the pieces cannot be trusted.
        """
        groups: dict[tuple[str, int], list[_Fragment]] = {}
        result: list[Any] = []
        for item in probed:
            if isinstance(item, _Fragment):
                groups.setdefault((item.first.name, item.first.total), []).append(item)
            else:
                result.append(item)
        for pieces in groups.values():
            starts = [piece for piece in pieces if piece.first.begin == 0]
            if len(starts) == 1 and len(pieces) > 1:
                result.append((yield self._joined(starts[0], pieces)))
            else:
                result.extend(self._unjoinable(piece) for piece in pieces)
        return result

    def _unjoinable(self, piece: _Fragment) -> _Broken:
        if piece.first.begin == 0:
            ids = [segment.message_id for segment in piece.nzb_file.segments]
            try:
                uniform_table(piece.label, ids, piece.first, piece.last)
                reason = f"{piece.label}: its articles end at byte {piece.last.end} of {piece.first.total}"
            except ImportFailed as exc:
                reason = str(exc)
        else:
            reason = (
                f"{piece.label}: its first article starts at byte {piece.first.begin} and no "
                "entry of the NZB holds the start of that file"
            )
        return _Broken(ImportFailed(reason), self._may_be_media(piece.nzb_file))

    @defer.inlineCallbacks
    def _joined(self, start: _Fragment, pieces: list[_Fragment]):
        entries = [start.nzb_file, *(piece.nzb_file for piece in pieces if piece is not start)]
        ids = [segment.message_id for entry in entries for segment in entry.segments]
        answers = yield self._read(start.label, ids, keep_head=False)
        missing = [a.message_id for a in answers if isinstance(a, _Missing)]
        if missing:
            return LostFile(start.label, tuple(missing), self._may_be_media(start.nzb_file))
        groups = start.nzb_file.groups
        try:
            table = table_from_parts(start.label, ids, [a[0] for a in answers], groups)
        except ImportFailed as exc:
            return _Broken(exc, self._may_be_media(start.nzb_file))
        return ImportFile(start.index, start.label, start.nzb_file, start.first, table, start.head)

    def _collect(self, probed: list[Any], job: ImportJob, kept: _KeptArticles) -> ImportJob:
        files = tuple(item for item in probed if isinstance(item, ImportFile))
        lost = tuple(item for item in probed if isinstance(item, LostFile))
        broken = [item for item in probed if isinstance(item, _Broken)]
        for damaged in broken:
            if damaged.counts:
                raise damaged.error
            job = job.warn(f"{damaged.error}; the file is left out")
        if not files and lost:
            missing = [mid for item in lost for mid in item.missing]
            raise ImportFailed(
                f"dead post: articles of all {len(lost)} file(s) are missing on every provider "
                f"({quote_ids(missing)}); the release has expired or was taken down"
            )
        if not files:
            raise ImportFailed("no file of the release could be read: " + str(broken[0].error))
        verified = frozenset(mid for file in files for mid in _probed_ids(file.table.message_ids))
        for item in lost:
            job = job.warn(
                f"{item.label}: article(s) missing on every provider: "
                f"{quote_ids(item.missing)}; the file is left out"
            )
        archive_articles = {mid: data for mid, data in kept.articles.items() if mid in verified}
        return replace(
            job, files=files, lost=lost, verified=verified, archive_articles=archive_articles
        )

    @defer.inlineCallbacks
    def _probe(self, index: int, nzb_file: NZBFile, kept: _KeptArticles) -> Any:
        ids = [segment.message_id for segment in nzb_file.segments]
        label = nzb_file.filename or f"file {index + 1}"
        probed = _probed_ids(ids)
        answers = yield self._read(label, probed, keep_head=True, keep_data=True)
        missing = [a.message_id for a in answers if isinstance(a, _Missing)]
        if missing:
            return LostFile(label, tuple(missing), self._may_be_media(nzb_file))
        (first, head, _), last = answers[0], answers[-1][0]
        if sniff_extension(head.prefix) in _ARCHIVE_EXTENSIONS:
            for message_id, answer in zip(probed, answers, strict=True):
                kept.keep(message_id, answer[2])
        elif _SEVENZIP_VOLUME.search(label):
            # A later 7z volume has no signature; the last one ends with the set's header.
            kept.keep(probed[-1], answers[-1][2])
        if first.begin != 0 or last.end != first.total:
            return _Fragment(index, label, nzb_file, first, last, head)
        try:
            table = uniform_table(
                label, ids, first, last if len(ids) > 1 else None, nzb_file.groups
            )
            if table is None and not _read_whole(label, first, head):
                # Without part numbers in the headers, only the NZB's own numbers
                # can show that a segment is missing from it.
                gaps = missing_numbers([segment.number for segment in nzb_file.segments])
                if gaps and not last.part:
                    raise ImportFailed(
                        f"{label}: the NZB has no segment {_numbers(gaps)} "
                        f"(it lists {len(ids)} segments numbered "
                        f"{nzb_file.segments[0].number}-{nzb_file.segments[-1].number}); "
                        "the NZB is incomplete"
                    )
                table = sparse_table(label, ids, first, last, nzb_file.groups)
            if table is None:
                answers = yield self._read(label, ids, keep_head=False)
                missing = [a.message_id for a in answers if isinstance(a, _Missing)]
                if missing:
                    return LostFile(label, tuple(missing), self._may_be_media(nzb_file))
                table = table_from_parts(label, ids, [a[0] for a in answers], nzb_file.groups)
        except ImportFailed as exc:
            return _Broken(exc, self._may_be_media(nzb_file))
        return ImportFile(index, label, nzb_file, first, table, head)

    def _may_be_media(self, nzb_file: NZBFile) -> bool:
        """False only when the subject names a file that would not be exposed (.par2, .nfo)."""
        name = nzb_file.filename
        return not has_known_extension(name, self._allowed) or is_allowed(name, self._allowed)

    def _read(
        self, label: str, message_ids: Sequence[str], keep_head: bool, keep_data: bool = False
    ) -> defer.Deferred:
        """Fetch the articles at once; each answer is (PartHeader, Head, data) or a _Missing.

        Head is of the first article, when `keep_head`; data is the decoded bytes, when
        `keep_data`; None otherwise.
        """

        def summarise(article: Any, keep: bool) -> Any:
            whole = article.begin == 0 and article.end == article.total
            head = head_of(article.data, whole) if keep else None
            return part_header(article), head, bytes(article.data) if keep_data else None

        def missing(failure: Failure, message_id: str) -> Any:
            if failure.check(ArticleNotFound):
                return _Missing(message_id)
            if failure.check(YencError):
                raise ImportFailed(
                    f"{label}: article <{message_id}> is not valid yEnc "
                    f"({failure.getErrorMessage()}); the post is damaged"
                )
            return failure

        calls = [
            self._fetch(mid).addCallback(summarise, keep_head and i == 0).addErrback(missing, mid)
            for i, mid in enumerate(message_ids)
        ]
        return defer.gatherResults(calls, consumeErrors=True).addErrback(first_failure)


#: Names of files a later stage reads at arbitrary offsets (PAR2 packets, disc images).
_READ_AT_IMPORT = re.compile(r"\.(par2|iso|img|bin|udf)$", re.IGNORECASE)


def _read_whole(label: str, first: PartHeader, head: Any) -> bool:
    """Whether a file of uneven parts needs every offset at import: an archive volume
    (by its signature or a split 7z name), a PAR2 file or a disc image."""
    if sniff_extension(head.prefix) in _ARCHIVE_EXTENSIONS or head.prefix.startswith(PAR2_MAGIC):
        return True
    return any(
        _SEVENZIP_VOLUME.search(name) or _READ_AT_IMPORT.search(name)
        for name in (label, first.name)
    )


def _numbers(numbers: Sequence[int]) -> str:
    """`17`, `17, 18` or `17, 18, 19, ... (12 in all)` for an error message."""
    shown = ", ".join(str(n) for n in numbers[:SHOWN_IDS])
    return f"{shown}, ... ({len(numbers)} in all)" if len(numbers) > SHOWN_IDS else shown


def _probed_ids(message_ids: Sequence[str]) -> list[str]:
    return [message_ids[0]] if len(message_ids) == 1 else [message_ids[0], message_ids[-1]]
