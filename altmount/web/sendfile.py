"""A response body written straight to the client's socket: cached segments from their
disk-tier files with `os.sendfile`, other segments with one `os.write` of the bytes.

Twisted's TCP transport joins what it is given into one buffer and sends at most
128 KiB per reactor turn; for bytes the cache already holds that copy and those turns
are most of the cost of serving them. `SocketBody` sits between the stream and the
request when the request came over a plain TCP socket (not TLS, not HTTP/2): the
headers go out through Twisted as always, and once Twisted's buffer for the
connection is empty the body goes to the socket directly. Order is kept because
nothing is written directly while Twisted still holds bytes or while earlier pieces
wait. When the socket is full, the body waits for it to be writable (on a duplicate
of its descriptor, so Twisted's own registration is untouched) and pauses the stream
meanwhile; Twisted's pauses (the request's producer) are passed on as well.

Anything else (TLS, HTTP/2, an encrypted member that must be decrypted) streams
through `request.write` as before: `direct_capable` says which.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from typing import Any

from twisted.internet import tcp
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer, IReactorFDSet
from twisted.python.failure import Failure
from zope.interface import implementer

from altmount.stream.cache_disk import FileSegment

__all__ = ["SocketBody", "direct_capable"]

log = logging.getLogger(__name__)


def direct_capable(request: Any, reactor: Any) -> bool:
    """Whether `request`'s body may be written to its socket directly: a plain TCP
    transport of Twisted's (its write buffer visible), no TLS, a reactor of descriptors."""
    transport = getattr(getattr(request, "channel", None), "transport", None)
    return (
        hasattr(os, "sendfile")
        and isinstance(transport, tcp.Connection)
        and not getattr(transport, "TLS", False)
        and hasattr(transport, "_tempDataLen")
        and IReactorFDSet.providedBy(reactor)
        and not request.isSecure()
    )


class _Piece:
    """One write waiting for the socket: bytes, or a slice of a segment's file."""

    __slots__ = ("data", "segment", "position", "remaining")

    def __init__(self, data: Any, segment: FileSegment | None, position: int, length: int):
        self.data = data
        self.segment = segment
        self.position = position  # in `data`, or in the segment's file
        self.remaining = length

    def send(self, fd: int) -> int:
        """Write what the socket takes now; raises BlockingIOError when it takes nothing."""
        if self.segment is None:
            sent = os.write(fd, self.data[self.position : self.position + self.remaining])
        else:
            sent = os.sendfile(fd, self.segment.fd, self.position, self.remaining)
            if sent == 0:
                raise EOFError("a segment cache file is shorter than its header says")
        self.position += sent
        self.remaining -= sent
        return sent

    def close(self) -> None:
        if self.segment is not None:
            self.segment.close()


class _Writable:
    """The reactor's handle on a duplicate of the socket: tells the body when it drains."""

    def __init__(self, body: SocketBody, fd: int) -> None:
        self._body = body
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def doWrite(self) -> None:
        self._body._drain()

    def connectionLost(self, reason: Failure) -> None:
        self._body._lost(reason)

    def logPrefix(self) -> str:
        return "SocketBody"

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


@implementer(IPushProducer)
class SocketBody:
    """The consumer of one streamed response that writes to the socket itself (see the
    module docstring), and the producer the request sees (it pauses the stream)."""

    def __init__(self, request: Any, reactor: Any) -> None:
        self._request = request
        self._reactor = reactor
        self._transport = request.channel.transport
        self._producer: Any = None
        self._queue: deque[_Piece] = deque()
        self._started = False
        self._draining = False
        self._outer_paused = False  # Twisted paused the request's producer
        self._paused = False  # what the stream was last told
        self._writable: _Writable | None = None
        self._flushed: Deferred[None] | None = None
        self.closed = False  #: the body ended early (client gone, socket or file error)
        self.sent = 0  #: body bytes written by this object

    def attach(self, producer: Any) -> None:
        """The stream to pause and resume (register this object with the request)."""
        self._producer = producer

    # the stream's consumer

    def write(self, data: bytes) -> None:
        """Queue bytes of the body."""
        self._push(_Piece(memoryview(data), None, 0, len(data)))

    def write_file(self, segment: FileSegment, start: int, length: int) -> None:
        """Queue `length` decoded bytes of `segment` from `start`; the segment is closed
        once sent (or when the body ends)."""
        if self.closed or length == 0:
            segment.close()
            return
        self._push(_Piece(None, segment, segment.offset + start, length))

    def flush(self) -> Deferred[None]:
        """Fires when every queued byte is in the socket (or the body ended early)."""
        if not self._queue or self.closed:
            return succeed(None)
        if self._flushed is None:
            self._flushed = Deferred()
        return self._flushed

    def close(self) -> None:
        """End the body: drop what waits (closing its files), stop watching the socket."""
        if self.closed:
            return
        self.closed = True
        for piece in self._queue:
            piece.close()
        self._queue.clear()
        self._unwatch()
        self._fire_flushed()

    # IPushProducer, as the request sees it

    def pauseProducing(self) -> None:
        self._outer_paused = True
        self._steer()

    def resumeProducing(self) -> None:
        self._outer_paused = False
        self._steer()

    def stopProducing(self) -> None:
        self.close()
        if self._producer is not None:
            self._producer.stopProducing()

    # internals

    def _push(self, piece: _Piece) -> None:
        if self.closed:
            piece.close()
            return
        if not self._started:
            self._started = True
            self._request.write(b"")  # the status line and headers, through Twisted
        self._queue.append(piece)
        self._drain()

    def _buffered(self) -> int:
        """Bytes Twisted still holds for this connection (the headers, at first)."""
        transport = self._transport
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen

    def _drain(self) -> None:
        if self._draining or self.closed:
            return
        self._draining = True
        try:
            fd = self._transport.fileno()
            queue = self._queue
            while queue:
                if fd < 0:
                    self.close()  # Twisted closed the connection
                    return
                if self._buffered():
                    self._watch()
                    return
                piece = queue[0]
                try:
                    sent = piece.send(fd)
                except BlockingIOError:
                    self._watch()
                    return
                except (OSError, EOFError) as exc:
                    self._broken(exc)
                    return
                self.sent += sent
                self._request.sentLength += sent
                if not piece.remaining:
                    queue.popleft()
                    piece.close()
            self._unwatch()
            self._fire_flushed()
        finally:
            self._draining = False
            self._steer()

    def _watch(self) -> None:
        """Wait for the socket to take more (on a duplicate descriptor)."""
        if self._writable is None:
            self._writable = _Writable(self, os.dup(self._transport.fileno()))
            self._reactor.addWriter(self._writable)

    def _unwatch(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None:
            self._reactor.removeWriter(writable)
            writable.close()

    def _steer(self) -> None:
        """Pause the stream while the socket is full or Twisted paused it; else resume."""
        paused = self._outer_paused or self._writable is not None
        if self.closed or paused == self._paused or self._producer is None:
            return
        self._paused = paused
        if paused:
            self._producer.pauseProducing()
        else:
            self._producer.resumeProducing()

    def _fire_flushed(self) -> None:
        flushed, self._flushed = self._flushed, None
        if flushed is not None:
            flushed.callback(None)

    def _broken(self, exc: BaseException) -> None:
        """A write failed: end the connection, the client sees a short body."""
        if isinstance(exc, EOFError):
            log.warning("%s: %s; the response ends short", self._request.path, exc)
        self.close()
        self._transport.abortConnection()

    def _lost(self, reason: Failure) -> None:
        """The reactor saw the socket fail while we waited on it."""
        writable, self._writable = self._writable, None  # the reactor dropped it already
        if writable is not None:
            writable.close()
        self._broken(reason.value)
