"""The archive stage: stored members of RAR and 7z sets and of disc images replace
their volumes among the candidates.

Every posted file whose first bytes are a RAR signature is walked header by
header over NNTP: the first and last article of every volume are asked for at
once (they hold the headers of a typical release), deeper articles only when a
header lies there (many small files before the media). The volumes are then
grouped into ordered sets (grouping.py) and each stored member becomes a
candidate whose segment table points into the volumes' articles, slice by slice.
7z sets, single or split, are read at the same time by sevenzip_stage.py; their
copy-method members become candidates the same way. Encrypted members (and
encrypted headers) are opened with the release's password and stream through a
`Cipher`. Archives and disc images (ISO 9660, UDF) stored inside are opened in
turn (nested.py), and so are disc images posted as they are (a bare .iso or
.img): their files replace them, in a folder named after the image. Compressed
and incomplete sets, and encrypted ones without the right password, are refused
with the reason; the release fails only when no media file is left to stream.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from altmount.archive import nested, sevenzip_stage
from altmount.archive.articles import Articles, member_table, read_member, read_span, safe_path
from altmount.archive.grouping import (
    ArchiveSet,
    BrokenVolume,
    Volume,
    group_volumes,
    name_ordinal,
    set_members,
)
from altmount.archive.model import MemberFile
from altmount.archive.rar import detect
from altmount.archive.rarcrypto import RarKeys
from altmount.archive.scan import VolumeScan
from altmount.errors import ArchiveError, ArticleNotFound, ImportFailed, YencError
from altmount.importer.layout import is_allowed
from altmount.importer.magic import MAGIC_PREFIX, sniff_extension
from altmount.importer.names import has_known_extension
from altmount.importer.pipeline import ArticleFetcher, Candidate, ImportFile, ImportJob
from altmount.importer.probe import first_failure
from altmount.metadata import Cipher, SegmentTable

__all__ = ["ArchiveStage"]

#: Names of disc images posted as they are.
_IMAGE_NAME = re.compile(r"\.(?:iso|img)$", re.IGNORECASE)


class ArchiveStage:
    """Replaces archive volumes and disc images among the candidates by their stored members."""

    name = "archive"

    def __init__(self, fetch: ArticleFetcher, allowed_extensions: Sequence[str]) -> None:
        self._fetch = fetch
        #: Extensions of the files a release exposes (config `import.allowed_extensions`).
        self.allowed = tuple(allowed_extensions)

    def run(self, job: ImportJob) -> ImportJob | defer.Deferred[ImportJob]:
        """The job with archive members as candidates, or ImportFailed when none can stream."""
        rars = [(file, version) for file in job.files if (version := detect(file.head.prefix))]
        names = {c.table.message_ids[0]: c.name for c in job.candidates}
        sevenzip = sevenzip_stage.SevenZipSets(job.files, names, self.allowed)
        volume_files = [file for file, _ in rars] + sevenzip.files
        volume_ids = {file.table.message_ids[0] for file in volume_files}
        images = [
            c
            for c in job.candidates
            if _IMAGE_NAME.search(c.name) and c.table.message_ids[0] not in volume_ids
        ]
        if not rars and not sevenzip.sets and not images:
            return replace(job, archive_articles={})
        articles = Articles(self._fetch, job.archive_articles)
        keys = RarKeys(job.password)
        scans = [
            self.read_volume(
                articles, keys, file, version, names.get(file.table.message_ids[0], file.label)
            )
            for file, version in rars
        ]
        scans.append(sevenzip.read(articles, job.password))
        gathered = defer.gatherResults(scans, consumeErrors=True).addErrback(first_failure)
        return gathered.addCallback(self._expose, job, volume_files, images, articles, keys)

    @defer.inlineCallbacks
    def read_volume(
        self, articles: Articles, keys: RarKeys, file: ImportFile, version: int, name: str
    ):
        """Fires with the `Volume` a posted file of RAR `version` holds, or a `BrokenVolume`."""
        table = file.table
        for index in {0, len(table) - 1}:
            articles.get(table.message_ids[index]).addErrback(lambda _: None)
        scan = VolumeScan(version, table.size, name, keys)
        try:
            while (wanted := scan.want()) is not None:
                start, data = yield read_span(articles, table, *wanted)
                scan.feed(start, data)
        except ArchiveError as exc:
            return BrokenVolume(str(exc))
        except (ArticleNotFound, YencError) as exc:
            return BrokenVolume(f"{name}: cannot read its headers: {exc}")
        return Volume(file.index, name, version, table.size, tuple(scan.blocks), scan.locked)

    @defer.inlineCallbacks
    def _expose(
        self,
        scanned: list[Any],
        job: ImportJob,
        volume_files: list[ImportFile],
        images: list[Candidate],
        articles: Articles,
        keys: RarKeys,
    ):
        reasons = [item.error for item in scanned if isinstance(item, BrokenVolume)]
        # Why non-media members were left out: told only when nothing else explains a failure.
        minor: list[str] = []
        tables = {file.index: file.table for file in volume_files}
        found: list[MemberFile] = []
        for archive in group_volumes([item for item in scanned if isinstance(item, Volume)]):
            found += yield self.open_set(archive, tables, articles, keys, reasons, minor)
        for item in scanned:
            if isinstance(item, sevenzip_stage.SevenZipFound):
                found += item.members
                reasons += item.reasons
                minor += item.minor
        # Archives and disc images stored inside, and images posted as they are: their
        # members replace them.
        found += [MemberFile(image.name, image.table) for image in images]
        opened = yield nested.expand(self, articles, found, job.password, keys)
        found = list(opened.members)
        reasons, minor = reasons + [*opened.reasons], minor + [*opened.minor]
        # A posted image that did not open comes back as the same table: it stays as posted.
        unopened = {id(image.table): image for image in images}
        named = []
        for member in found:
            if id(member.table) in unopened:
                named.append(unopened[id(member.table)])
                continue
            path = member.path
            if not has_known_extension(path, self.allowed):
                head = yield read_member(articles, member, 0, MAGIC_PREFIX)
                extension = sniff_extension(head)
                path = path + extension if extension else path
            named.append(Candidate(path, member.table, "archive", member.cipher))
        replaced = {file.table.message_ids[0] for file in volume_files}
        replaced |= {image.table.message_ids[0] for image in images}
        kept = [c for c in job.candidates if c.table.message_ids[0] not in replaced]
        candidates = (*kept, *named)
        reasons = list(dict.fromkeys(reasons))
        if not any(is_allowed(c.name, self.allowed) for c in candidates) and (reasons or minor):
            raise ImportFailed("; ".join(reasons or list(dict.fromkeys(minor))))
        for reason in reasons:
            job = job.warn(reason)
        return replace(
            job,
            candidates=candidates,
            verified=job.verified | articles.read,
            archive_articles={},
        )

    @defer.inlineCallbacks
    def open_set(
        self,
        archive: ArchiveSet,
        tables: dict[int, SegmentTable],
        articles: Articles,
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
            media = is_allowed(member.path, self.allowed) or not has_known_extension(
                member.path, self.allowed
            )
            refused = reasons if media else minor
            if not member.stored:
                refused.append(
                    f"compressed archive: {member.path} uses method {member.method}, not streamable"
                )
                continue
            if member.size == 0:
                continue
            path = safe_path(member.path)
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
def _proved(archive: str, articles: Articles, unproven: list[tuple[MemberFile, str, list[str]]]):
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
