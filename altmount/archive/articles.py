"""Decoded articles of an archive stage run, and member bytes read from them.

The archive readers (RAR, 7z, nested containers, disc images) all read through
one bounded cache of decoded articles, so an article several of them ask for is
fetched once; a member's bytes are slices of its segment table's articles,
decrypted when the member is encrypted.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from twisted.internet import defer
from twisted.python.failure import Failure

from altmount.archive.model import ArchiveMember, MemberFile
from altmount.importer.layout import safe_name
from altmount.importer.pipeline import ArticleFetcher
from altmount.importer.probe import first_failure
from altmount.metadata import SegmentTable
from altmount.stream.cbc import cipher_span, decrypt_range

__all__ = [
    "ARTICLE_CACHE_BYTES",
    "Articles",
    "member_table",
    "read_member",
    "read_span",
    "safe_path",
]


#: Decoded articles the stage keeps for re-reading (least recently used go first). A
#: release of many volumes fetches two articles per volume at once; past this the
#: oldest are dropped and fetched again if asked, so memory stays bounded.
ARTICLE_CACHE_BYTES = 48 << 20


class Articles:
    """Decoded article data by message-id: fetched once while it stays in the bounded
    cache, however often it is asked.

    `known` are articles an earlier stage already decoded (the probe's first and last
    article of every volume): they start the cache and are not fetched again.
    """

    def __init__(
        self,
        fetch: ArticleFetcher,
        known: Mapping[str, bytes] | None = None,
        budget: int = ARTICLE_CACHE_BYTES,
    ) -> None:
        self._fetch = fetch
        self._budget = budget
        self._known: OrderedDict[str, bytes | Failure] = OrderedDict(known or {})
        self._bytes = sum(len(data) for data in (known or {}).values())
        self._read: set[str] = set(known or ())
        self._waiting: dict[str, list[defer.Deferred[bytes]]] = {}
        self._drop_oldest()

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
        self._drop_oldest()

    def _drop_oldest(self) -> None:
        while self._bytes > self._budget and len(self._known) > 1:
            _, dropped = self._known.popitem(last=False)
            if isinstance(dropped, bytes):
                self._bytes -= len(dropped)


def _segment_bytes(articles: Articles, table: SegmentTable, index: int) -> defer.Deferred[bytes]:
    """The file bytes segment `index` contributes, from its decoded article."""
    skip = int(table.skips[index])
    length = int(table.offsets[index + 1] - table.offsets[index])
    return articles.get(table.message_ids[index]).addCallback(
        lambda data: data[skip : skip + length]
    )


def read_span(
    articles: Articles, table: SegmentTable, start: int, size: int
) -> defer.Deferred[tuple[int, bytes]]:
    """(offset of the first article, bytes) covering file bytes [start, start + size)."""
    end = min(start + size, table.size)
    first, last = table.segment_at(start), table.segment_at(end - 1)
    reads = [_segment_bytes(articles, table, j) for j in range(first, last + 1)]
    gathered = defer.gatherResults(reads, consumeErrors=True).addErrback(first_failure)
    return gathered.addCallback(lambda parts: (int(table.offsets[first]), b"".join(parts)))


def read_member(
    articles: Articles, member: MemberFile, start: int, size: int
) -> defer.Deferred[bytes]:
    """Member bytes [start, start + size) (clipped to its end), decrypted when encrypted."""
    end = min(start + size, member.size)
    if start >= end:
        return defer.succeed(b"")
    cipher = member.cipher
    if cipher is None:
        return read_span(articles, member.table, start, end - start).addCallback(
            lambda got: got[1][start - got[0] : end - got[0]]
        )
    span = cipher_span(cipher, start, end)
    return read_span(articles, member.table, span.start, span.end - span.start).addCallback(
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


def safe_path(path: str) -> str:
    """A member path made safe for the library: every part sanitised, no "." or ".." parts."""
    parts = [safe_name(part, "_") for part in path.split("/") if part not in ("", ".", "..")]
    return "/".join(parts) or "_"
