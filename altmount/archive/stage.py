"""The archive stage: stored RAR members replace their volumes among the candidates.

Every posted file whose first bytes are a RAR signature is walked header by
header over NNTP: the first and last article of every volume are asked for at
once (they hold the headers of a typical release), deeper articles only when a
header lies there (many small files before the media). The volumes are then
grouped into ordered sets (grouping.py) and each stored member becomes a
candidate whose segment table points into the volumes' articles, slice by slice.
Encrypted members (and encrypted headers) are opened with the release's
password and stream through a `Cipher`. Compressed and incomplete sets, and
encrypted ones without the right password, are refused with the reason; the
release fails only when no media file is left to stream.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from twisted.internet import defer
from twisted.python.failure import Failure

from altmount.archive import nested, sevenzip_stage
from altmount.archive.grouping import ArchiveSet, Volume, group_volumes, name_ordinal, set_members
from altmount.archive.model import ArchiveMember, MemberFile
from altmount.archive.rar import detect
from altmount.archive.rarcrypto import RarKeys
from altmount.archive.scan import VolumeScan
from altmount.errors import ArchiveError, ArticleNotFound, ImportFailed, YencError
from altmount.importer.layout import is_allowed, safe_name
from altmount.importer.magic import MAGIC_PREFIX, sniff_extension
from altmount.importer.names import has_known_extension
from altmount.importer.pipeline import ArticleFetcher, Candidate, ImportFile, ImportJob
from altmount.importer.probe import first_failure
from altmount.metadata import Cipher, SegmentTable
from altmount.stream.cbc import cipher_span, decrypt_range

__all__ = ["ArchiveStage", "member_table", "read_member"]


#: Decoded articles the stage keeps for re-reading (least recently used go first). A
#: release of many volumes fetches two articles per volume at once; past this the
#: oldest are dropped and fetched again if asked, so memory stays bounded.
ARTICLE_CACHE_BYTES = 48 << 20


class _Articles:
    """Decoded article data by message-id: fetched once while it stays in the bounded
    cache, however often it is asked."""

    def __init__(self, fetch: ArticleFetcher, budget: int = ARTICLE_CACHE_BYTES) -> None:
        self._fetch = fetch
        self._budget = budget
        self._known: OrderedDict[str, bytes | Failure] = OrderedDict()
        self._bytes = 0
        self._read: set[str] = set()
        self._waiting: dict[str, list[defer.Deferred[bytes]]] = {}

    @property
    def read(self) -> frozenset[str]:
        """Message-ids whose body arrived."""
        return frozenset(self._read)

    @property
    def held(self) -> int:
        """Decoded bytes in the cache now."""
        return self._bytes

    def get(self, message_id: str) -> defer.Deferred[bytes]:
        """Fires with the article's decoded data."""
        known = self._known.get(message_id)
        if known is not None:
            self._known.move_to_end(message_id)
            return defer.fail(known) if isinstance(known, Failure) else defer.succeed(known)
        waiter: defer.Deferred[bytes] = defer.Deferred()
        first = message_id not in self._waiting
        self._waiting.setdefault(message_id, []).append(waiter)
        if first:
            self._fetch(message_id).addBoth(self._arrived, message_id)
        return waiter

    def _arrived(self, result: Any, message_id: str) -> None:
        known = result if isinstance(result, Failure) else bytes(result.data)
        if isinstance(known, bytes):
            self._read.add(message_id)
            self._bytes += len(known)
        self._known[message_id] = known
        for waiter in self._waiting.pop(message_id, []):
            if isinstance(known, Failure):
                waiter.errback(known)
            else:
                waiter.callback(known)
        while self._bytes > self._budget and len(self._known) > 1:
            _, dropped = self._known.popitem(last=False)
            if isinstance(dropped, bytes):
                self._bytes -= len(dropped)


class _Broken:
    """A volume whose headers could not be read."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


def _segment_bytes(articles: _Articles, table: SegmentTable, index: int) -> defer.Deferred[bytes]:
    """The file bytes segment `index` contributes, from its decoded article."""
    skip = int(table.skips[index])
    length = int(table.offsets[index + 1] - table.offsets[index])
    return articles.get(table.message_ids[index]).addCallback(
        lambda data: data[skip : skip + length]
    )


def _read(
    articles: _Articles, table: SegmentTable, start: int, size: int
) -> defer.Deferred[tuple[int, bytes]]:
    """(offset of the first article, bytes) covering file bytes [start, start + size)."""
    end = min(start + size, table.size)
    first, last = table.segment_at(start), table.segment_at(end - 1)
    reads = [_segment_bytes(articles, table, j) for j in range(first, last + 1)]
    gathered = defer.gatherResults(reads, consumeErrors=True).addErrback(first_failure)
    return gathered.addCallback(lambda parts: (int(table.offsets[first]), b"".join(parts)))


def read_member(
    articles: _Articles, member: MemberFile, start: int, size: int
) -> defer.Deferred[bytes]:
    """Member bytes [start, start + size) (clipped to its end), decrypted when encrypted."""
    end = min(start + size, member.size)
    if start >= end:
        return defer.succeed(b"")
    cipher = member.cipher
    if cipher is None:
        return _read(articles, member.table, start, end - start).addCallback(
            lambda got: got[1][start - got[0] : end - got[0]]
        )
    span = cipher_span(cipher, start, end)
    return _read(articles, member.table, span.start, span.end - span.start).addCallback(
        lambda got: decrypt_range(cipher, start, end, got[1][span.start - got[0] :])
    )


def member_table(member: ArchiveMember, volumes: Sequence[SegmentTable]) -> SegmentTable:
    """The segment table of a stored member: slices of its volumes' segments, in order."""
    ids: list[str] = []
    skips: list[int] = []
    begins: list[int] = []
    ends: list[int] = [0]
    groups: dict[str, None] = {}
    for piece in member.pieces:
        table = volumes[piece.volume]
        groups.update(dict.fromkeys(table.groups))
        start, stop = piece.offset, piece.offset + piece.length
        index = table.segment_at(start) if piece.length else len(table)
        while start < stop:
            segment_end = int(table.offsets[index + 1])
            take = min(stop, segment_end) - start
            if take > 0:
                ids.append(table.message_ids[index])
                skips.append(int(table.skips[index]) + start - int(table.offsets[index]))
                begins.append(int(table.part_begins[index]))
                ends.append(ends[-1] + take)
                start += take
            index += 1
    return SegmentTable(
        tuple(ids),
        np.array(ends, dtype=np.int64),
        np.array(skips, dtype=np.int64),
        np.array(begins, dtype=np.int64),
        tuple(groups),
    )


def _safe_path(path: str) -> str:
    parts = [safe_name(part, "_") for part in path.split("/") if part not in ("", ".", "..")]
    return "/".join(parts) or "_"


class ArchiveStage:
    """Replaces RAR volumes among the candidates by their stored members."""

    name = "archive"

    def __init__(self, fetch: ArticleFetcher, allowed_extensions: Sequence[str]) -> None:
        self._fetch = fetch
        self._allowed = tuple(allowed_extensions)

    def run(self, job: ImportJob) -> ImportJob | defer.Deferred[ImportJob]:
        """The job with archive members as candidates, or ImportFailed when none can stream."""
        rars = [(file, version) for file in job.files if (version := detect(file.head.prefix))]
        names = {c.table.message_ids[0]: c.name for c in job.candidates}
        sevenzip = sevenzip_stage.SevenZipSets(job.files, names, self._allowed)
        if not rars and not sevenzip.sets:
            return job
        articles = _Articles(self._fetch)
        keys = RarKeys(job.password)
        scans = [
            self._scan(
                articles, keys, file, version, names.get(file.table.message_ids[0], file.label)
            )
            for file, version in rars
        ]
        scans.append(sevenzip.read(articles, job.password))
        gathered = defer.gatherResults(scans, consumeErrors=True).addErrback(first_failure)
        volume_files = [file for file, _ in rars] + sevenzip.files
        return gathered.addCallback(self._expose, job, volume_files, articles, keys)

    @defer.inlineCallbacks
    def _scan(self, articles: _Articles, keys: RarKeys, file: ImportFile, version: int, name: str):
        table = file.table
        for index in {0, len(table) - 1}:
            articles.get(table.message_ids[index]).addErrback(lambda _: None)
        scan = VolumeScan(version, table.size, name, keys)
        try:
            while (wanted := scan.want()) is not None:
                start, data = yield _read(articles, table, *wanted)
                scan.feed(start, data)
        except ArchiveError as exc:
            return _Broken(str(exc))
        except (ArticleNotFound, YencError) as exc:
            return _Broken(f"{name}: cannot read its headers: {exc}")
        return Volume(file.index, name, version, table.size, tuple(scan.blocks), scan.locked)

    @defer.inlineCallbacks
    def _expose(
        self,
        scanned: list[Any],
        job: ImportJob,
        volume_files: list[ImportFile],
        articles: _Articles,
        keys: RarKeys,
    ):
        reasons = [item.error for item in scanned if isinstance(item, _Broken)]
        # Why non-media members were left out: told only when nothing else explains a failure.
        minor: list[str] = []
        tables = {file.index: file.table for file in volume_files}
        found: list[MemberFile] = []
        for archive in group_volumes([item for item in scanned if isinstance(item, Volume)]):
            found += yield self._members(archive, tables, articles, keys, reasons, minor)
        for item in scanned:
            if isinstance(item, sevenzip_stage.SevenZipFound):
                found += item.members
                reasons += item.reasons
                minor += item.minor
        # Archives and disc images stored inside: their members replace them.
        opened = yield nested.expand(self, articles, found, job.password, keys)
        found = list(opened.members)
        reasons, minor = reasons + [*opened.reasons], minor + [*opened.minor]
        named = []
        for member in found:
            path = member.path
            if not has_known_extension(path, self._allowed):
                head = yield read_member(articles, member, 0, MAGIC_PREFIX)
                extension = sniff_extension(head)
                path = path + extension if extension else path
            named.append(Candidate(path, member.table, "archive", member.cipher))
        volume_ids = {file.table.message_ids[0] for file in volume_files}
        kept = [c for c in job.candidates if c.table.message_ids[0] not in volume_ids]
        candidates = (*kept, *named)
        reasons = list(dict.fromkeys(reasons))
        if not any(is_allowed(c.name, self._allowed) for c in candidates) and (reasons or minor):
            raise ImportFailed("; ".join(reasons or list(dict.fromkeys(minor))))
        for reason in reasons:
            job = job.warn(reason)
        return replace(job, candidates=candidates, verified=job.verified | articles.read)

    @defer.inlineCallbacks
    def _members(
        self,
        archive: ArchiveSet,
        tables: dict[int, SegmentTable],
        articles: _Articles,
        keys: RarKeys,
        reasons: list[str],
        minor: list[str],
    ):
        """Fires with every stored member of a set, encrypted ones with their `Cipher`; why
        media members are left out goes to `reasons`, why other members are to `minor`."""
        if archive.problem is not None:
            reasons.append(archive.problem)
            return []
        if any(volume.locked for volume in archive.volumes):
            named = name_ordinal(archive.name)
            reasons.append(
                f"{named[0] if named else archive.name}: encrypted archive, no/wrong password"
            )
            return []
        try:
            members = set_members(archive)
        except ArchiveError as exc:
            reasons.append(str(exc))
            return []
        volumes = [tables[volume.key] for volume in archive.volumes]
        # Decrypted headers (a check value or their CRCs) prove the password for the data too.
        proven = any(volume.headers_decrypted for volume in archive.volumes)
        found: list[MemberFile] = []
        unproven: list[tuple[MemberFile, str, list[str]]] = []
        for item in members:
            member = item.member
            media = is_allowed(member.path, self._allowed) or not has_known_extension(
                member.path, self._allowed
            )
            refused = reasons if media else minor
            if not member.stored:
                refused.append(
                    f"compressed archive: {member.path} uses method {member.method}, not streamable"
                )
                continue
            if member.size == 0:
                continue
            path = _safe_path(member.path)
            if not member.encrypted:
                found.append(MemberFile(path, member_table(member, volumes)))
                continue
            if item.crypt is None:
                refused.append(
                    f"{archive.name}: {member.path} uses the encryption of RAR 2, not supported"
                )
                continue
            try:
                key = keys.data_key(item.crypt, archive.name)
            except ArchiveError as exc:
                refused.append(str(exc))
                continue
            if key is None:
                refused.append(_wrong_password(archive.name, member.path))
                continue
            cipher = Cipher(key[0], key[1], 0, member.size)
            file = MemberFile(path, member_table(member, volumes), cipher)
            if proven or item.crypt.check is not None:
                found.append(file)
            else:
                unproven.append((file, member.path, refused))
        if unproven:
            found += yield _proved(archive.name, articles, unproven)
        return found


def _wrong_password(archive: str, path: str) -> str:
    return f"{archive}: encrypted archive, no/wrong password ({path})"


def _shows_magic(head: bytes) -> bool:
    """True when decrypted bytes start like a known container (altmount.importer.magic).

    A wrong key decrypts to random bytes, which show a 4-byte magic once in 2^32;
    the bare MPEG audio frame sync (2 bytes, random data shows it once in 8192) is
    no proof, so MP3 counts only with its ID3 tag.
    """
    extension = sniff_extension(head)
    return extension is not None and (extension != ".mp3" or head.startswith(b"ID3"))


@defer.inlineCallbacks
def _proved(archive: str, articles: _Articles, unproven: list[tuple[MemberFile, str, list[str]]]):
    """Fires with the members whose key is proved by a decrypted member start.

    Rule for data encrypted without a password check value (RAR 4's, or RAR 5's
    without one): a key is right when at least one member decrypted with it starts
    with a known magic (`_shows_magic`); the members of a key that shows none are
    refused as a wrong password. Members that have no magic at byte 0 (an .iso)
    are served only when another member with the same key proves it.
    """
    reads = [
        read_member(articles, file, 0, MAGIC_PREFIX).addErrback(_unreadable)
        for file, _, _ in unproven
    ]
    heads = yield defer.gatherResults(reads, consumeErrors=True).addErrback(first_failure)
    opened = {
        file.cipher.key
        for (file, _, _), head in zip(unproven, heads, strict=True)
        if file.cipher is not None and isinstance(head, bytes) and _shows_magic(head)
    }
    found = []
    for (file, path, refused), head in zip(unproven, heads, strict=True):
        if file.cipher is not None and file.cipher.key in opened:
            found.append(file)
        elif isinstance(head, Exception):
            refused.append(f"{archive}: cannot read {path}: {head}")
        else:
            refused.append(
                _wrong_password(archive, f"{path}: its decrypted start shows no known format")
            )
    return found


def _unreadable(failure: Failure) -> BaseException:
    """A missing or undecodable article is a reason to refuse a member, not a stage error."""
    failure.trap(ArticleNotFound, YencError)
    return failure.value
