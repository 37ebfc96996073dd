"""Fetch one segment of a virtual file: download slot, article body, decode, verify.

`SegmentFetcher` is shared by every stream of the process. It bounds the segment
downloads in progress (`streaming.max_download_workers`) with one FIFO queue, so
many clients share the providers fairly and a client that goes away leaves the
queue at once (a cancelled fetch cancels its queue entry or its download). Bodies
come from the provider router as the chunks they arrived in, are decoded without
joining them (on the reactor thread up to a size where that is cheaper than a
hand-off, else in the decode thread pool, where sabyenc3 releases the GIL), and are
checked against the segment table before any byte of them reaches a client.

CRC mismatches: a copy whose yEnc CRC fails is fetched again from every other
provider in turn (from the same one once when there is no other: a glitch). When
every copy fails the same way its decoded bytes are served (framing and size were
intact, so they sit at the right offsets), `on_crc_failure` is told, and the
`Segment` says `crc_ok=False`: a cache must not keep such a segment as good.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore
from twisted.internet.threads import deferToThreadPool

from altmount.errors import NNTPError, NoProvidersAvailable, StreamError, YencError
from altmount.nntp.protocol import ArticleBody, body_chunks

__all__ = ["BodySource", "FetcherStats", "Segment", "SegmentFetcher"]

log = logging.getLogger(__name__)


class BodySource(Protocol):
    """What the fetcher needs of the provider router: raw article bodies by message-id,
    with the name of the provider that sent each."""

    def body_from(
        self, message_id: str, priority: int = 0, exclude: frozenset[str] = frozenset()
    ) -> Deferred[tuple[ArticleBody | bytes, str]]: ...


class _Decoded(Protocol):
    """What the fetcher reads of a DecodedArticle."""

    @property
    def data(self) -> bytes: ...

    @property
    def begin(self) -> int: ...

    @property
    def crc_ok(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Segment:
    """One decoded, verified segment: its bytes and where the article says they sit.

    `begin`/`end` are 0-based offsets in the posted file (`end` exclusive).
    `crc_ok` is False when every provider's copy failed its yEnc CRC and these are
    the decoded bytes of one of them: serve them, never cache them as good.
    """

    data: bytes
    begin: int
    end: int
    crc_ok: bool = True


@dataclass(frozen=True, slots=True)
class FetcherStats:
    """A snapshot of the fetcher's counters (for the API and /metrics)."""

    active: int  #: segment downloads (and their decodes) in progress
    queued: int  #: fetches waiting for a download slot
    bytes_fetched: int  #: raw article bytes received from providers
    bytes_decoded: int  #: decoded bytes handed to streams
    segments: int  #: segments fetched, decoded and verified
    crc_retries: int  #: copies fetched again after a CRC mismatch or broken yEnc
    crc_served: int  #: segments served as decoded after every copy failed its CRC
    failures: int  #: fetches that ended in an error (cancellations not counted)


class SegmentFetcher:
    """Download, decode and verify segments, at most `max_download_workers` at a time.

    `decode_pool` is a started `twisted.python.threadpool.ThreadPool` (the engine
    owns its life cycle); `decode` defaults to `altmount._core.decode_article`.
    Bodies of at most `inline_max` bytes are decoded at once on the calling (reactor)
    thread instead: for a SIMD decode that is cheaper than the hand-off to a pool
    thread and back. `run_decode`, when given, replaces all of that: it returns a
    Deferred of the decoded article (the process pool's decode). Both hooks take the
    body's chunks (a tuple of bytes).
    """

    def __init__(
        self,
        reactor: Any,
        router: BodySource,
        decode_pool: Any,
        max_download_workers: int,
        *,
        decode: Callable[[tuple[bytes, ...]], _Decoded] | None = None,
        run_decode: Callable[[tuple[bytes, ...]], Deferred] | None = None,
        inline_max: int = 0,
    ) -> None:
        if decode is None:
            # Imported here, not at module level, so that the implementation choice
            # (Cython or ALTMOUNT_PURE twin) is made by whoever builds the engine.
            from altmount._core import decode_article

            decode = decode_article
        self._reactor = reactor
        self._router = router
        self._pool = decode_pool
        self._decode: Callable[[tuple[bytes, ...]], _Decoded] = decode
        self._run_decode = run_decode
        self._inline_max = inline_max
        self._slots = DeferredSemaphore(max_download_workers)
        self._retire = 0  # slots to drop as they come back, after the limit was lowered
        self._active = 0
        self._bytes_fetched = 0
        self._bytes_decoded = 0
        self._segments = 0
        self._crc_retries = 0
        self._crc_served = 0
        self._failures = 0
        #: Told (path, segment index, message-id) when a segment is served although every
        #: copy failed its CRC (the ops layer marks the file degraded).
        self.on_crc_failure: Callable[[str, int, str], None] | None = None

    @property
    def active(self) -> int:
        """Segment downloads (with their decodes) in progress now."""
        return self._active

    @property
    def queued(self) -> int:
        """Fetches waiting for a download slot now."""
        return len(self._slots.waiting)

    @property
    def max_download_workers(self) -> int:
        """The current limit on segment downloads at once."""
        return self._slots.limit

    def set_max_download_workers(self, count: int) -> None:
        """Change the limit live: raising it starts waiting fetches now; lowering it
        lets running downloads finish and retires their slots as they come back."""
        if count < 1:
            raise ValueError("max_download_workers must be at least 1")
        slots = self._slots
        delta = count - slots.limit
        slots.limit = count
        if delta >= 0:
            repaid = min(delta, self._retire)
            self._retire -= repaid
            slots.tokens += delta - repaid
            while slots.tokens and slots.waiting:
                slots.tokens -= 1
                slots.waiting.pop(0).callback(slots)
        else:
            free = min(-delta, slots.tokens)
            slots.tokens -= free
            self._retire += -delta - free

    def stats(self) -> FetcherStats:
        """The counters as one immutable snapshot."""
        return FetcherStats(
            self._active,
            self.queued,
            self._bytes_fetched,
            self._bytes_decoded,
            self._segments,
            self._crc_retries,
            self._crc_served,
            self._failures,
        )

    def fetch(self, table: Any, index: int, priority: int = 0, *, path: str = "") -> Deferred:
        """Fire with the decoded data of segment `index` of `table` (bytes-like).

        `path` names the file in error messages. Cancelling the Deferred leaves the
        queue or abandons the download at once. Errors: StreamError (data that does
        not fit the segment table), the router's NNTPError subclasses, YencError.
        """
        return self.fetch_segment(table, index, priority, path=path).addCallback(_data_of)

    def fetch_segment(
        self, table: Any, index: int, priority: int = 0, *, path: str = ""
    ) -> Deferred[Segment]:
        """`fetch`, firing with the whole `Segment` (placement and CRC verdict)."""
        return Deferred.fromCoroutine(self._fetch(table, index, priority, path, True))

    def fetch_placed(
        self, table: Any, index: int, priority: int = 0, *, path: str = ""
    ) -> Deferred[Segment]:
        """`fetch_segment` without checking the placement against the table: for a
        segment whose offsets are not known yet (a file of uneven parts), the
        `Segment`'s begin and end are what the caller learns them from."""
        return Deferred.fromCoroutine(self._fetch(table, index, priority, path, False))

    async def _fetch(
        self, table: Any, index: int, priority: int, path: str, verify: bool
    ) -> Segment:
        message_id = table.message_ids[index]
        await self._slots.acquire()
        self._active += 1
        try:
            decoded = await self._download_intact(message_id, priority)
            if verify:
                self._verify(table, index, decoded, path)
        except CancelledError:
            raise
        except Exception:
            self._failures += 1
            raise
        finally:
            self._active -= 1
            if self._retire:
                self._retire -= 1
            else:
                self._slots.release()
        self._segments += 1
        self._bytes_decoded += len(decoded.data)
        segment = Segment(
            decoded.data, decoded.begin, decoded.begin + len(decoded.data), decoded.crc_ok
        )
        if not segment.crc_ok:
            self._crc_served += 1
            if self.on_crc_failure is not None:
                self.on_crc_failure(path, index, message_id)
            else:
                log.warning(
                    "%s: segment %d (<%s>) fails its yEnc CRC on every provider; "
                    "its decoded bytes were served",
                    path,
                    index,
                    message_id,
                )
        return segment

    async def _download_intact(self, message_id: str, priority: int) -> _Decoded:
        """Download and decode; a corrupt copy (CRC mismatch, broken yEnc) is fetched again
        from each other provider, else once more from the same (a glitch). When every copy
        fails its CRC, the first such copy comes back (its `crc_ok` is False)."""
        body, source = await self._router.body_from(message_id, priority)
        tried = {source}
        suspect: _Decoded | None = None  # the first copy that decoded but failed its CRC
        problem: YencError | None = None  # the first copy whose yEnc framing was broken
        same_again = True
        while True:
            try:
                decoded = await self._decode_body(body)
            except YencError as exc:
                problem = problem or exc
            else:
                if decoded.crc_ok:
                    return decoded
                suspect = suspect or decoded
            try:
                body, source = await self._router.body_from(message_id, priority, frozenset(tried))
            except NoProvidersAvailable:
                if len(tried) > 1 or not same_again:
                    break
                same_again = False
                try:
                    body, source = await self._router.body_from(message_id, priority)
                except NNTPError:
                    break
            except NNTPError:
                break  # the others lack it or cannot answer: no better copy to be had
            self._crc_retries += 1
            tried.add(source)
        if suspect is not None:
            return suspect
        assert problem is not None
        raise problem

    async def _decode_body(self, body: ArticleBody | bytes) -> _Decoded:
        self._bytes_fetched += len(body)
        chunks = body_chunks(body)
        if self._run_decode is not None:
            return await self._run_decode(chunks)
        if len(body) <= self._inline_max:
            return self._decode(chunks)
        return await deferToThreadPool(self._reactor, self._pool, self._decode, chunks)

    @staticmethod
    def _verify(table: Any, index: int, decoded: _Decoded, path: str) -> None:
        expected_begin = int(table.part_begins[index])
        if decoded.begin != expected_begin:
            raise StreamError(
                f"segment {index} (<{table.message_ids[index]}>) of {path} starts at byte "
                f"{decoded.begin} of the posted file, expected {expected_begin}"
            )
        needed = int(table.skips[index]) + int(table.offsets[index + 1] - table.offsets[index])
        if len(decoded.data) < needed:
            raise StreamError(
                f"segment {index} (<{table.message_ids[index]}>) of {path} decoded to "
                f"{len(decoded.data)} bytes, the segment table needs {needed}"
            )


def _data_of(segment: Segment) -> bytes:
    return segment.data
