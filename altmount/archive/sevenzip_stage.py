"""The 7z part of the archive stage: read each 7z set's header over NNTP, expose stored members.

Sets are found by name and signature (sevenzip_sets.py); the signature header
is in the first article, which the probe already read. For every set at once
the tail articles holding the (packed) header are asked for, together with the
first article of the set (the start of the first member, read again for the
password check and name sniffing). Members of copy folders become candidates;
members of AES copy folders become candidates with a `Cipher` and stream
decrypted. Compressed members, a missing or wrong password and damaged sets
are reasons the archive stage reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from twisted.internet import defer

from altmount.archive.articles import Articles, member_table, read_member, safe_path
from altmount.archive.model import ArchiveMember, MemberFile
from altmount.archive.sevenzip_codec import KeyRing
from altmount.archive.sevenzip_members import SevenZipMember, volume_pieces
from altmount.archive.sevenzip_scan import SevenZipScan
from altmount.archive.sevenzip_sets import PostedFile, SevenZipSet, find_sets
from altmount.errors import ArchiveError, ArticleNotFound, YencError
from altmount.importer.layout import is_allowed
from altmount.importer.magic import MAGIC_PREFIX, sniff_extension
from altmount.importer.names import has_known_extension
from altmount.importer.pipeline import ImportFile
from altmount.importer.probe import first_failure
from altmount.metadata import Cipher, SegmentTable

__all__ = ["SevenZipFound", "SevenZipSets", "MAGIC_CHECKED"]

#: Extensions whose files start with a magic number `sniff_extension` knows, so a
#: decrypted first block tells a right password from a wrong one.
MAGIC_CHECKED = frozenset(
    {".mkv", ".webm", ".mp4", ".m4v", ".m4a", ".mov", ".avi", ".wav", ".wmv", ".mpg", ".mpeg"}
    | {".vob", ".ts", ".m2ts", ".flac", ".ogg", ".opus", ".mp3"}
)


@dataclass(frozen=True, slots=True)
class SevenZipFound:
    """What a release's 7z sets hold: members to expose, and why others are left out.

    `reasons` concern media members (they explain a failed import), `minor` the rest.
    """

    members: tuple[MemberFile, ...] = ()
    reasons: tuple[str, ...] = ()
    minor: tuple[str, ...] = ()

    def __add__(self, other: SevenZipFound) -> SevenZipFound:
        return SevenZipFound(
            self.members + other.members, self.reasons + other.reasons, self.minor + other.minor
        )


class SevenZipSets:
    """The 7z sets among a release's posted files, read over NNTP by `read`."""

    def __init__(
        self, files: Sequence[ImportFile], names: Mapping[str, str], allowed: Sequence[str]
    ) -> None:
        self._allowed = tuple(allowed)
        self._files = {file.index: file for file in files}
        self.sets = find_sets(
            [
                PostedFile(
                    file.index, names.get(file.table.message_ids[0], file.label), file.head.prefix
                )
                for file in files
            ]
        )
        #: Every posted file that belongs to a set: none of them is a candidate any more.
        self.files = [self._files[key] for archive in self.sets for key in archive.posted]

    def read(self, articles: Articles, password: str) -> defer.Deferred[SevenZipFound]:
        """Fires with the members of every set (read in parallel) and the reasons for the rest."""
        keys = KeyRing(password)
        reads = [self._read_set(articles, archive, keys) for archive in self.sets]
        gathered = defer.gatherResults(reads, consumeErrors=True).addErrback(first_failure)
        return gathered.addCallback(lambda found: sum(found, SevenZipFound()))

    @defer.inlineCallbacks
    def _read_set(self, articles: Articles, archive: SevenZipSet, keys: KeyRing):
        if archive.problem is not None:
            return SevenZipFound(reasons=(archive.problem,))
        tables = [self._files[key].table for key in archive.volumes]
        articles.get(tables[0].message_ids[0]).addErrback(lambda _: None)
        try:
            head = self._files[archive.volumes[0]].head.prefix
            scan = SevenZipScan(archive.name, head, [table.size for table in tables], keys)
            while (wanted := scan.want()) is not None:
                scan.feed(wanted[0], (yield _read_archive(articles, tables, *wanted)))
            found = self._classify(archive.name, scan.members(), tables, keys)
            if not scan.headers_encrypted:
                found = yield _check_password(articles, archive.name, found)
        except ArchiveError as exc:
            return SevenZipFound(reasons=(str(exc),))
        except (ArticleNotFound, YencError) as exc:
            return SevenZipFound(reasons=(f"{archive.name}: cannot read its headers: {exc}",))
        return found

    def _classify(
        self,
        name: str,
        members: list[SevenZipMember],
        tables: list[SegmentTable],
        keys: KeyRing,
    ) -> SevenZipFound:
        found: list[MemberFile] = []
        reasons: list[str] = []
        minor: list[str] = []
        for item in members:
            member = item.member
            media = is_allowed(member.path, self._allowed) or not has_known_extension(
                member.path, self._allowed
            )
            cipher = None
            if not member.stored:
                (reasons if media else minor).append(
                    f"compressed archive: {member.path} uses method {member.method}, not streamable"
                )
                continue
            if item.aes is not None:
                key = keys.key(item.aes, name)
                if key is None:
                    (reasons if media else minor).append(_wrong_password(name, member.path))
                    continue
                cipher = Cipher(key, item.aes.iv, item.window, member.size)
            table = member_table(member, tables)
            found.append(MemberFile(safe_path(member.path), table, cipher))
        return SevenZipFound(tuple(found), tuple(reasons), tuple(minor))


def _read_archive(
    articles: Articles, tables: list[SegmentTable], offset: int, size: int
) -> defer.Deferred[bytes]:
    """Archive bytes [offset, offset + size) from the volumes that hold them."""
    pieces = volume_pieces(offset, size, [table.size for table in tables])
    span = ArchiveMember("", size, "Copy", True, False, pieces)
    return read_member(articles, MemberFile("", member_table(span, tables)), 0, size)


@defer.inlineCallbacks
def _check_password(articles: Articles, name: str, found: SevenZipFound):
    """`found` without its encrypted members when their password is wrong.

    7z keeps no password check value: with plain headers a wrong password shows
    only as garbage data. The largest encrypted member whose extension promises
    a known magic number (else one with no known extension) is decrypted at its
    start; no known magic there means the password is wrong. Media without a
    magic at offset 0 (an .iso) cannot be checked this way.
    """
    encrypted = [member for member in found.members if member.cipher is not None]
    checked = sorted(MAGIC_CHECKED)
    probes = [m for m in encrypted if is_allowed(m.path, checked)] or [
        m for m in encrypted if not has_known_extension(m.path)
    ]
    if not probes:
        return found
    probe = max(probes, key=lambda member: member.size)
    head = yield read_member(articles, probe, 0, MAGIC_PREFIX)
    if sniff_extension(head) is not None:
        return found
    kept = tuple(member for member in found.members if member.cipher is None)
    refused = tuple(_wrong_password(name, member.path) for member in encrypted)
    return SevenZipFound(kept, found.reasons + refused, found.minor)


def _wrong_password(name: str, path: str) -> str:
    return f"{name}: encrypted archive, no/wrong password ({path})"
