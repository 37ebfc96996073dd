"""Archives and disc images stored inside archives: opened as if they were posted files.

Once the archive stage has the members of the posted archives, a member that is
itself a container (its first bytes a RAR or 7z signature, a piece of a split
7z set, or an ISO 9660 / UDF image) is opened again and its members replace it.
Their segment tables are slices of the container's table, itself slices of the
articles. Inner RAR volumes taken from several members group into sets as
posted volumes do; a 7z set is read by the 7z stage; an image by iso.py.
Opening goes level by level, at most MAX_NESTING levels below the posted
archives, and never opens the same bytes twice (an image listing itself as a
file would otherwise recurse for ever).

A member of an encrypted archive is opened through a plaintext view: a table of
made-up message-ids whose "articles" are decrypted chunks of it. What is found
inside streams when its bytes are one contiguous window of that plaintext (the
cipher window is composed); anything else is refused with the reason. Members
named as media (.mkv, ...) are never opened: their first bytes are not read.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, cast

import numpy as np
from twisted.internet import defer

from altmount.archive import sevenzip_stage
from altmount.archive.articles import Articles, member_table, read_member, read_span, safe_path
from altmount.archive.grouping import BrokenVolume, Volume, group_volumes
from altmount.archive.iso import RECOGNITION_OFFSET, ImageScan, is_disc_image
from altmount.archive.model import ArchiveMember, MemberFile, Piece
from altmount.archive.rar import detect
from altmount.archive.rarcrypto import RarKeys
from altmount.archive.sevenzip_model import SIGNATURE as SEVENZIP_SIGNATURE
from altmount.archive.udf import SECTOR
from altmount.errors import ArchiveError, ArticleNotFound, YencError
from altmount.importer.layout import PartHeader, is_allowed
from altmount.importer.magic import MAGIC_PREFIX
from altmount.importer.names import has_known_extension
from altmount.importer.pipeline import Head, ImportFile
from altmount.importer.probe import first_failure
from altmount.metadata import Cipher, SegmentTable
from altmount.nzb import NZBFile

if TYPE_CHECKING:
    from altmount.archive.stage import ArchiveStage

__all__ = ["MAX_NESTING", "MAX_CONTAINERS", "PLAINTEXT_CHUNK", "Opened", "expand"]

#: Containers opened inside one another below a posted archive; a deeper one is refused.
MAX_NESTING = 3
#: Containers one release may open in all: more is an attack, not a release.
MAX_CONTAINERS = 1000
#: Plaintext bytes behind one made-up message-id of an encrypted container's view.
PLAINTEXT_CHUNK = 1 << 20

#: Names a container may have: archives, split pieces, disc images.
_CONTAINER_NAME = re.compile(r"\.(?:rar|[r-z]\d{2}|7z|\d{3,5}|iso|img)$", re.IGNORECASE)
_SPLIT_7Z = re.compile(r"\.7z\.\d{3,5}$", re.IGNORECASE)
_VIEW_PREFIX = "plaintext:"
_SPLIT_OVER_ENCRYPTED = (
    "not one contiguous piece of an encrypted archive member (an inner set split over "
    "several encrypted members?), not streamable"
)


@dataclass(frozen=True, slots=True)
class Opened:
    """Members after opening the containers among them, and why some were not opened.

    `reasons` concern media (they explain a failed import), `minor` the rest.
    """

    members: tuple[MemberFile, ...]
    reasons: tuple[str, ...] = ()
    minor: tuple[str, ...] = ()


@dataclass(slots=True)
class _Level:
    """What one level of opening produced: `members` to open further, `kept` as they are
    (images that did not open)."""

    members: list[MemberFile] = field(default_factory=list)
    kept: list[MemberFile] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    minor: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Container:
    """A member to open: its kind ("rar", "7z", "image"), its first bytes, its table."""

    member: MemberFile
    kind: str
    head: bytes
    view: SegmentTable


def expand(
    stage: ArchiveStage,
    articles: Articles,
    found: Sequence[MemberFile],
    password: str,
    keys: RarKeys,
) -> defer.Deferred[Opened]:
    """Fires with `found` where every container member is replaced by its own members;
    `password` opens encrypted 7z sets and `keys` (derived from it) encrypted RAR sets."""
    if not any(_may_contain(member) for member in found):
        return defer.succeed(Opened(tuple(found)))
    return _expand(stage, _Views(articles), list(found), password, keys)


@defer.inlineCallbacks
def _expand(
    stage: ArchiveStage,
    views: _Views,
    found: list[MemberFile],
    password: str,
    keys: RarKeys,
):
    done: list[MemberFile] = []
    reasons: list[str] = []
    minor: list[str] = []
    opened: dict[tuple[str, int, int], str] = {}
    level = found
    for depth in range(1, MAX_NESTING + 2):
        containers, plain = yield _classify(views, level)
        done += plain
        if not containers:
            break
        fresh = []
        for container in containers:
            member = container.member
            refusal = None
            if depth > MAX_NESTING:
                refusal = f"{member.path}: archive nested more than {MAX_NESTING} deep, not opened"
            elif _start(member) in opened:
                refusal = f"{member.path}: the same bytes as {opened[_start(member)]} (a loop), not opened again"
            elif len(opened) >= MAX_CONTAINERS:
                refusal = f"{member.path}: more than {MAX_CONTAINERS} nested archives, not opened"
            if refusal is None:
                opened[_start(member)] = member.path
                fresh.append(container)
            else:
                done.append(member)
                reasons.append(refusal)
        result = yield _open(stage, views, fresh, password, keys)
        done += result.kept
        reasons += result.reasons
        minor += result.minor
        level = result.members
    members = []
    for member in done:
        resolved = views.resolve(member)
        if isinstance(resolved, MemberFile):
            members.append(resolved)
        else:
            media = is_allowed(member.path, stage.allowed) or not has_known_extension(member.path)
            (reasons if media else minor).append(resolved)
    return Opened(tuple(members), tuple(dict.fromkeys(reasons)), tuple(dict.fromkeys(minor)))


def _may_contain(member: MemberFile) -> bool:
    """True when the name does not rule out a container (an obfuscated name does not)."""
    return member.size > 0 and (
        _CONTAINER_NAME.search(member.path) is not None or not has_known_extension(member.path)
    )


def _start(member: MemberFile) -> tuple[str, int, int]:
    """Where a member's bytes start: the same start is the same bytes."""
    table = member.table
    offset = member.cipher.offset if member.cipher is not None else 0
    return table.message_ids[0], int(table.skips[0]), offset


@defer.inlineCallbacks
def _classify(views: _Views, members: list[MemberFile]):
    """(containers, other members): first bytes read for every name that may be a container."""
    candidates = [member for member in members if _may_contain(member)]
    heads = yield defer.gatherResults(
        [_sniff(views, member) for member in candidates], consumeErrors=True
    ).addErrback(first_failure)
    kinds = dict(zip(map(id, candidates), heads, strict=True))
    containers, plain = [], []
    for member in members:
        kind, head = kinds.get(id(member), (None, b""))
        if kind is None:
            plain.append(member)
        else:
            containers.append(_Container(member, kind, head, views.view(member)))
    return containers, plain


@defer.inlineCallbacks
def _sniff(views: _Views, member: MemberFile):
    """(kind or None, first bytes) of a member; unreadable members are not containers."""
    try:
        head = yield read_member(views.articles, member, 0, MAGIC_PREFIX)
        if detect(head):
            return "rar", head
        if head.startswith(SEVENZIP_SIGNATURE) or _SPLIT_7Z.search(member.path):
            return "7z", head
        if member.size >= RECOGNITION_OFFSET + SECTOR:
            sector = yield read_member(views.articles, member, RECOGNITION_OFFSET, 8)
            if is_disc_image(sector):
                return "image", head
    except (ArticleNotFound, YencError):
        pass  # the stage names the missing article when it reads the member itself
    return None, b""


@defer.inlineCallbacks
def _open(
    stage: ArchiveStage,
    views: _Views,
    containers: list[_Container],
    password: str,
    keys: RarKeys,
):
    """One level: every container's members (paths relative to where the container lies)."""
    level = _Level()
    posted = [_posted(index, c) for index, c in enumerate(containers) if c.kind != "image"]
    rars = [(file, version) for file in posted if (version := detect(file.head.prefix))]
    scans = [stage.read_volume(views.articles, keys, f, version, f.label) for f, version in rars]
    by_folder: dict[str, list[ImportFile]] = {}
    for file in posted:
        by_folder.setdefault(posixpath.dirname(file.label), []).append(file)
    sevenzip = {
        folder: sevenzip_stage.SevenZipSets(files, {}, stage.allowed)
        for folder, files in by_folder.items()
    }
    reads = [sets.read(views.articles, password) for sets in sevenzip.values() if sets.sets]
    images = [_image(views, c) for c in containers if c.kind == "image"]
    results = yield defer.gatherResults([*scans, *reads, *images], consumeErrors=True).addErrback(
        first_failure
    )
    scanned = results[: len(scans)]
    sevenzip_found = results[len(scans) : len(scans) + len(reads)]
    image_levels = results[len(scans) + len(reads) :]
    tables = {file.index: file.table for file in posted}
    for item in scanned:
        if isinstance(item, BrokenVolume):
            level.reasons.append(item.error)
    for archive in group_volumes([item for item in scanned if isinstance(item, Volume)]):
        folder = posixpath.dirname(archive.volumes[0].name)
        members = yield stage.open_set(
            archive, tables, views.articles, keys, level.reasons, level.minor
        )
        level.members += [_under(folder, member) for member in members]
    folders = [folder for folder, sets in sevenzip.items() if sets.sets]
    for folder, found in zip(folders, sevenzip_found, strict=True):
        level.members += [_under(folder, member) for member in found.members]
        level.reasons += found.reasons
        level.minor += found.minor
    taken = {file.index for file, _ in rars}
    taken |= {file.index for sets in sevenzip.values() for file in sets.files}
    for file in posted:
        if file.index not in taken:
            level.members.append(containers[file.index].member)  # a lone split piece, say
    for image in image_levels:
        level.members += image.members
        level.kept += image.kept
        level.reasons += image.reasons
    return level


def _posted(index: int, container: _Container) -> ImportFile:
    """A container as the RAR and 7z readers see a posted file."""
    member, size = container.member, container.view.size
    nzb_file = NZBFile(member.path, "", 0, (), (), member.path)
    first = PartHeader(member.path, size, 1, min(size, MAGIC_PREFIX))
    return ImportFile(
        index, member.path, nzb_file, first, container.view, Head(None, container.head)
    )


def _under(folder: str, member: MemberFile) -> MemberFile:
    return replace(member, path=f"{folder}/{member.path}") if folder else member


@defer.inlineCallbacks
def _image(views: _Views, container: _Container):
    """The files of a disc image, under a folder named as the image; on failure the image
    itself stays, with the reason."""
    member, view = container.member, container.view
    scan = ImageScan(view.size, member.path)
    try:
        while (wanted := scan.want()) is not None:
            start, data = yield read_span(views.articles, view, *wanted)
            scan.feed(start, data)
    except ArchiveError as exc:
        return _Level(kept=[member], reasons=[f"{exc}; the image itself is exposed"])
    except (ArticleNotFound, YencError) as exc:
        return _Level(kept=[member], reasons=[f"{member.path}: cannot read its file system: {exc}"])
    folder = posixpath.splitext(member.path)[0]
    level = _Level()
    for file in scan.files:
        if file.size == 0:
            continue
        pieces = tuple(Piece(0, offset, length) for offset, length in file.extents)
        inner = ArchiveMember(file.path, file.size, "store", True, False, pieces)
        path = safe_path(f"{folder}/{file.path}")
        level.members.append(MemberFile(path, member_table(inner, [view])))
    return level


class _Views:
    """The stage's articles, plus plaintext views of encrypted containers.

    A view's message-ids name chunks of a container's plaintext ("plaintext:<n>:<k>",
    never a real message-id, which holds an "@"); `get` decrypts them from the real
    articles, so every reader of the stage works on a view as on a posted file.
    """

    def __init__(self, articles: Articles) -> None:
        self._articles = articles
        self._sources: list[MemberFile] = []

    @property
    def articles(self) -> Articles:
        """These views as the stage's readers take articles (they only call `get`)."""
        return cast(Articles, self)

    def view(self, member: MemberFile) -> SegmentTable:
        """A table of the member's bytes as they are read (plaintext)."""
        if member.cipher is None:
            return member.table
        key = len(self._sources)
        self._sources.append(member)
        size = member.size
        starts = np.arange(0, size, PLAINTEXT_CHUNK, dtype=np.int64)
        return SegmentTable(
            tuple(f"{_VIEW_PREFIX}{key}:{k}" for k in range(len(starts))),
            np.append(starts, np.int64(size)),
            np.zeros(len(starts), dtype=np.int64),
            starts,
        )

    def get(self, message_id: str) -> defer.Deferred[bytes]:
        """Fires with an article's decoded data, or a plaintext chunk of a view."""
        chunk = self._chunk(message_id)
        if chunk is None:
            return self._articles.get(message_id)
        source, index = chunk
        return read_member(self.articles, source, index * PLAINTEXT_CHUNK, PLAINTEXT_CHUNK)

    def _chunk(self, message_id: str) -> tuple[MemberFile, int] | None:
        if not message_id.startswith(_VIEW_PREFIX) or "@" in message_id:
            return None
        key, index = message_id[len(_VIEW_PREFIX) :].split(":")
        return self._sources[int(key)], int(index)

    def resolve(self, member: MemberFile) -> MemberFile | str:
        """The member over real articles (a composed cipher window), or why it cannot stream."""
        table = member.table
        chunks = [self._chunk(message_id) for message_id in table.message_ids]
        located = [chunk for chunk in chunks if chunk is not None]
        if not located:
            return member
        if member.cipher is not None:
            return f"{member.path}: encrypted inside an encrypted archive member, not streamable"
        if len(located) != len(chunks) or len({id(source) for source, _ in located}) != 1:
            return f"{member.path}: {_SPLIT_OVER_ENCRYPTED}"
        starts = [
            index * PLAINTEXT_CHUNK + int(skip)
            for (_, index), skip in zip(located, table.skips, strict=True)
        ]
        lengths = np.diff(table.offsets)
        if any(starts[i] + int(lengths[i]) != starts[i + 1] for i in range(len(starts) - 1)):
            return f"{member.path}: {_SPLIT_OVER_ENCRYPTED}"
        source = located[0][0]
        cipher = source.cipher
        assert cipher is not None
        window = Cipher(cipher.key, cipher.iv, cipher.offset + starts[0], member.size)
        return self.resolve(MemberFile(member.path, source.table, window))
