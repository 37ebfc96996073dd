"""The WebDAV resource (RFC 4918 class 1, read-mostly): the virtual tree over HTTP.

GET/HEAD serve files with ranges (bytes come from Usenet through the segment
fetcher, streamed with backpressure); PROPFIND lists; MKCOL, MOVE and DELETE
change metadata only (a library move through a mount reads no article). Errors reach the client as a status and one short line of text,
never a traceback.
"""

from __future__ import annotations

import email.utils
import html
import logging
import mimetypes
import posixpath
import re
from typing import Any

from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from altmount.config import StreamingConfig
from altmount.errors import (
    AltmountError,
    ArticleNotFound,
    MetadataError,
    RangeNotSatisfiable,
    RequestError,
)
from altmount.stream.cbc import CbcWindow, DecryptingConsumer, cipher_span
from altmount.stream.fetcher import SegmentFetcher
from altmount.stream.httprange import make_etag, select_range
from altmount.stream.locate import OffsetLearner
from altmount.stream.streamer import RangeStreamer, zero_fill_applies
from altmount.web.davxml import (
    MAX_BODY_BYTES,
    DavResource,
    finite_depth_error,
    multistatus,
    parse_propfind,
)
from altmount.web.paths import RequestPath, href_for, join_path, parse_request_path
from altmount.web.sendfile import SocketBody, direct_capable

__all__ = ["ALLOWED_METHODS", "RESERVED_TOP_LEVEL", "WebDAVResource", "content_type_for"]

log = logging.getLogger(__name__)

ALLOWED_METHODS = (b"OPTIONS", b"PROPFIND", b"GET", b"HEAD", b"MKCOL", b"DELETE", b"MOVE")
#: Top-level names the site routes elsewhere: a folder made there could never be reached.
RESERVED_TOP_LEVEL = frozenset({"api", "sabnzbd", "ui", "metrics", "live", "webdav", "strm"})
_ALLOW = b", ".join(ALLOWED_METHODS)
_XML = b'application/xml; charset="utf-8"'
_TEXT = b"text/plain; charset=utf-8"
#: Media types the system tables often lack or get wrong; players pick decoders by them.
_CONTENT_TYPES = {
    ".mkv": "video/x-matroska",
    ".mk3d": "video/x-matroska",
    ".mka": "audio/x-matroska",
    ".webm": "video/webm",
    ".mp4": "video/mp4",
    ".m4v": "video/x-m4v",
    ".m4a": "audio/mp4",
    ".ts": "video/mp2t",
    ".m2ts": "video/mp2t",
    ".avi": "video/x-msvideo",
    ".wmv": "video/x-ms-wmv",
    ".flac": "audio/flac",
    ".opus": "audio/ogg",
    ".ogg": "audio/ogg",
    ".srt": "application/x-subrip",
    ".ass": "text/x-ssa",
    ".nfo": "text/plain",
    ".iso": "application/x-iso9660-image",
}
_URL = re.compile(rb"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)")


def content_type_for(name: str) -> str:
    """The Content-Type of a file name: our media table, then mimetypes, else octet-stream."""
    extension = posixpath.splitext(name)[1].lower()
    if extension in _CONTENT_TYPES:
        return _CONTENT_TYPES[extension]
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


def _http_date(mtime: float) -> bytes:
    return email.utils.formatdate(mtime, usegmt=True).encode("ascii")


def _show_corrupted(request: Request) -> bool:
    return (request.getHeader(b"x-show-corrupted") or b"").strip().lower() == b"true"


class WebDAVResource(Resource):
    """Serves the virtual tree: `store` is a MetadataStore, `fetcher` a SegmentFetcher.

    With `ops` (an `altmount.ops.Ops`), streams are registered with it, its live
    streaming limits apply, files it knows to be corrupted are left out of listings
    (unless the request has `X-Show-Corrupted: true`), and a stream that meets a
    missing article marks its file for a health re-check.
    """

    isLeaf = True

    def __init__(
        self, store: Any, fetcher: SegmentFetcher, streaming: StreamingConfig, *, ops: Any = None
    ) -> None:
        super().__init__()
        self._store = store
        self._fetcher = fetcher
        self._streaming = streaming
        self._ops = ops
        # Files of uneven parts learn their offsets as they are read (stream/locate.py).
        self._learner = OffsetLearner(fetcher, getattr(fetcher, "fetcher", fetcher), store)

    def _visible(self, request: Request, entries: list[Any]) -> list[Any]:
        """`entries` without the known-corrupted files, unless the client asks for them."""
        if self._ops is None or _show_corrupted(request):
            return entries
        return [e for e in entries if e.is_dir or not self._ops.is_hidden(e.path)]

    def render(self, request: Request) -> bytes | int:
        """Dispatch by method; map our errors to a status and one line of text."""
        if request.method not in ALLOWED_METHODS:
            request.setHeader(b"Allow", _ALLOW)
            return _plain(request, 405, f"method {request.method.decode('latin-1')} not allowed")
        try:
            return super().render(request)
        except MetadataError as exc:
            log.error(
                "%s %s: metadata store error: %s",
                request.method.decode("latin-1"),
                request.path.decode("latin-1"),
                exc,
                extra={"request_id": getattr(request, "request_id", "")},
            )
            return _plain(request, 500, f"metadata store error: {exc}")
        except AltmountError as exc:
            return _plain(request, exc.http_status, str(exc))

    # OPTIONS

    def render_OPTIONS(self, request: Request) -> bytes:
        """Advertise class 1 WebDAV (no locks) and the methods we answer."""
        request.setHeader(b"DAV", b"1")
        request.setHeader(b"Allow", _ALLOW)
        request.setHeader(b"MS-Author-Via", b"DAV")
        return b""

    # GET / HEAD

    def render_GET(self, request: Request) -> bytes | int:
        """A file (whole or a range, streamed) or an HTML listing of a directory."""
        return self._get(request, head=False)

    def render_HEAD(self, request: Request) -> bytes | int:
        """The headers GET would send; fetches nothing."""
        return self._get(request, head=True)

    def _get(self, request: Request, head: bool) -> bytes | int:
        target = parse_request_path(request.path)
        record = self._store.get_file(target.path)
        if record is not None:
            return self.serve_file(request, record, head)
        entry = self._store.stat(target.path)
        if entry is None or not entry.is_dir:
            return _plain(request, 404, f"{target.path}: no such file or directory")
        body = self._listing(target, request)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Content-Length", b"%d" % len(body))
        return b"" if head else body

    def serve_file(self, request: Request, record: Any, head: bool) -> bytes | int:
        """Answer GET/HEAD of a file record (ranges, streamed); also for `/strm/` URLs."""
        size = record.size
        etag = make_etag(size, record.mtime)
        request.setHeader(b"Accept-Ranges", b"bytes")
        request.setHeader(b"ETag", etag.encode("ascii"))
        request.setHeader(b"Last-Modified", _http_date(record.mtime))
        request.setHeader(b"Content-Type", content_type_for(record.path).encode("ascii"))
        try:
            span = select_range(
                request.getHeader(b"range"),
                request.getHeader(b"if-range"),
                size,
                etag,
                record.mtime,
            )
        except RangeNotSatisfiable:
            request.setResponseCode(416)
            request.setHeader(b"Content-Range", b"bytes */%d" % size)
            request.setHeader(b"Content-Type", _TEXT)
            return b""
        start, end = span if span is not None else (0, size)
        if span is not None:
            request.setResponseCode(206)
            request.setHeader(b"Content-Range", b"bytes %d-%d/%d" % (start, end - 1, size))
        request.setHeader(b"Content-Length", b"%d" % (end - start))
        if head or start == end:
            return b""
        streaming = self._streaming if self._ops is None else self._ops.streaming
        _Delivery(
            request, record, start, end, self._fetcher, streaming, self._ops, self._learner
        ).begin()
        return NOT_DONE_YET

    def _listing(self, target: RequestPath, request: Request) -> bytes:
        entries = sorted(
            self._visible(request, self._store.listdir(target.path)),
            key=lambda e: (not e.is_dir, e.name.lower()),
        )
        title = html.escape(target.path)
        rows = []
        if target.path != "/":
            parent = posixpath.dirname(target.path.rstrip("/")) or "/"
            rows.append(f'<li><a href="{href_for(parent, True, target.prefix)}">../</a></li>')
        for entry in entries:
            href = href_for(join_path(target.path, entry.name), entry.is_dir, target.prefix)
            label = html.escape(entry.name + ("/" if entry.is_dir else ""))
            size = "" if entry.is_dir else f" ({entry.size} bytes)"
            rows.append(f'<li><a href="{html.escape(href)}">{label}</a>{size}</li>')
        page = (
            f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>'
            f"<body><h1>{title}</h1><ul>\n" + "\n".join(rows) + "\n</ul></body></html>\n"
        )
        return page.encode("utf-8")

    # PROPFIND

    def render_PROPFIND(self, request: Request) -> bytes:
        """Properties of a resource (Depth 0) or of a collection and its members (Depth 1)."""
        target = parse_request_path(request.path)
        depth = (request.getHeader(b"depth") or b"infinity").strip().lower()
        if depth == b"infinity":
            # RFC 4918 9.1: a server may refuse infinite depth, with this precondition.
            request.setResponseCode(403)
            request.setHeader(b"Content-Type", _XML)
            return finite_depth_error()
        if depth not in (b"0", b"1"):
            raise RequestError("Depth must be 0, 1 or infinity")
        body = request.content.read(MAX_BODY_BYTES + 1) if request.content is not None else b""
        wanted = parse_propfind(body)
        entry = self._store.stat(target.path)
        if entry is None:
            return _plain(request, 404, f"{target.path}: no such file or directory")
        resources = [self._dav_resource(target.path, entry, target.prefix)]
        if depth == b"1" and entry.is_dir:
            for child in self._visible(request, self._store.listdir(target.path)):
                path = join_path(target.path, child.name)
                resources.append(self._dav_resource(path, child, target.prefix))
        request.setResponseCode(207)
        request.setHeader(b"Content-Type", _XML)
        return multistatus(resources, wanted)

    @staticmethod
    def _dav_resource(path: str, entry: Any, prefix: str) -> DavResource:
        if entry.is_dir:
            return DavResource(href_for(path, True, prefix), entry.name, True, entry.mtime)
        return DavResource(
            href_for(path, False, prefix),
            entry.name,
            False,
            entry.mtime,
            size=entry.size,
            content_type=content_type_for(entry.name),
            etag=make_etag(entry.size, entry.mtime),
        )

    # MKCOL / DELETE / MOVE (metadata only)

    def render_MKCOL(self, request: Request) -> bytes:
        """Make one folder (RFC 4918 9.3): 201; 405 if the name is taken, 409 without
        its parent, 415 with a body (no MKCOL body format is supported)."""
        target = parse_request_path(request.path).path
        if request.content is not None and request.content.read(1):
            raise RequestError("MKCOL with a body is not supported", 415)
        if target == "/":
            return _plain(request, 405, "/ exists")
        _refuse_reserved(target)
        if self._store.stat(target) is not None:
            request.setHeader(b"Allow", _ALLOW)
            return _plain(request, 405, f"{target} exists")
        parent = self._store.stat(posixpath.dirname(target))
        if parent is None or not parent.is_dir:
            raise RequestError(f"{posixpath.dirname(target)}: no such directory", 409)
        self._store.make_dirs([target])
        request.setResponseCode(201)
        request.setHeader(b"Content-Length", b"0")
        return b""

    def render_DELETE(self, request: Request) -> bytes:
        """Forget a file or a whole directory; no Usenet article is touched."""
        target = parse_request_path(request.path)
        if target.path == "/":
            raise RequestError("the root collection cannot be deleted", 403)
        _require_infinite_depth(request)
        if self._store.stat(target.path) is None:
            return _plain(request, 404, f"{target.path}: no such file or directory")
        self._store.delete(target.path)
        if self._ops is not None:
            self._ops.deleted(target.path)
        request.setResponseCode(204)
        return b""

    def render_MOVE(self, request: Request) -> bytes:
        """Rename a file or directory (RFC 4918 9.9): 201 new, 204 replaced, 412 kept."""
        source = parse_request_path(request.path).path
        destination = self._destination(request)
        overwrite = (request.getHeader(b"overwrite") or b"T").strip().upper()
        if overwrite not in (b"T", b"F"):
            raise RequestError("Overwrite must be T or F")
        _require_infinite_depth(request)
        if source == "/":
            raise RequestError("the root collection cannot be moved", 403)
        if self._store.stat(source) is None:
            return _plain(request, 404, f"{source}: no such file or directory")
        if destination == source or destination.startswith(source.rstrip("/") + "/"):
            raise RequestError("destination is the source or inside it", 403)
        _refuse_reserved(destination)
        parent = self._store.stat(posixpath.dirname(destination) or "/")
        if parent is None or not parent.is_dir:
            raise RequestError(f"{posixpath.dirname(destination)}: no such directory", 409)
        existing = self._store.stat(destination)
        if existing is not None and overwrite == b"F":
            raise RequestError(f"{destination} exists and Overwrite is F", 412)
        self._store.move(source, destination, replace=existing is not None)
        if self._ops is not None:
            self._ops.moved(source, destination)
        log.info(
            "MOVE %s -> %s (metadata only)",
            source,
            destination,
            extra={"request_id": getattr(request, "request_id", "")},
        )
        request.setResponseCode(204 if existing is not None else 201)
        return b""

    def _destination(self, request: Request) -> str:
        value = request.getHeader(b"destination")
        if not value:
            raise RequestError("MOVE needs a Destination header")
        match = _URL.match(value.strip())
        if match is not None:
            host = (request.getHeader(b"host") or b"").strip().lower()
            if match.group(1).lower() != host:
                raise RequestError("Destination is on another server", 502)
        return parse_request_path(value.strip()).path


def _refuse_reserved(path: str) -> None:
    """403 for a top-level name the site serves itself (`/api`, `/ui`, ...)."""
    if posixpath.dirname(path) == "/" and path[1:] in RESERVED_TOP_LEVEL:
        raise RequestError(f"{path} is reserved by altmount's own routes", 403)


def _require_infinite_depth(request: Request) -> None:
    """RFC 4918 9.6.1, 9.9.2: DELETE and MOVE of a collection act on all of it."""
    depth = request.getHeader(b"depth")
    if depth is not None and depth.strip().lower() != b"infinity":
        raise RequestError("Depth must be infinity (or absent) for DELETE and MOVE")


def _plain(request: Request, status: int, message: str) -> bytes:
    """Answer `status` with one line of text (and no range headers of a file answer)."""
    request.setResponseCode(status)
    for header in (b"content-range", b"etag", b"last-modified", b"accept-ranges"):
        request.responseHeaders.removeHeader(header)
    request.setHeader(b"Content-Type", _TEXT)
    body = (message + "\n").encode("utf-8")
    request.setHeader(b"Content-Length", b"%d" % len(body))
    return b"" if request.method == b"HEAD" else body


class _CountingConsumer:
    """Passes writes to the request (or its SocketBody) and tells the stream handle their
    size (once per write)."""

    __slots__ = ("_request", "_handle")

    def __init__(self, request: Any, handle: Any) -> None:
        self._request = request
        self._handle = handle

    def write(self, data: bytes) -> None:
        self._handle.wrote(len(data))
        self._request.write(data)

    def write_file(self, segment: Any, start: int, length: int) -> None:
        self._handle.wrote(length)
        self._request.write_file(segment, start, length)


def _client_of(request: Request) -> str:
    peer = request.getClientAddress()
    return f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"


class _Delivery:
    """One streamed response: ties a RangeStreamer to a request and its fate."""

    def __init__(
        self,
        request: Request,
        record: Any,
        start: int,
        end: int,
        fetcher: SegmentFetcher,
        streaming: StreamingConfig,
        ops: Any = None,
        learner: Any = None,
    ) -> None:
        self._request = request
        self._record = record
        self._ops = ops
        self._gone = False
        self._handle = None
        clock = getattr(fetcher, "clock", None)
        # Plain TCP: the body goes to the socket itself, cached files with sendfile.
        self._body = SocketBody(request, clock) if direct_capable(request, clock) else None
        consumer: Any = request if self._body is None else self._body
        # DummyRequest and other request types without our id log without one.
        request_id = getattr(request, "request_id", "")
        self._log_context: dict[str, Any] = {"request_id": request_id}
        if ops is not None:
            self._handle = ops.streams.open(
                record.path, _client_of(request), start, end, request_id
            )
            self._log_context = self._handle.log_context
            consumer = _CountingConsumer(consumer, self._handle)
        if record.cipher is not None:
            # Encrypted archive member: stream the ciphertext blocks covering the
            # range (plus the block before, its IV) and decrypt them on the way out.
            span = cipher_span(record.cipher, start, end)
            consumer = DecryptingConsumer(consumer, CbcWindow(record.cipher, span))
            start, end = span.start, span.end
        self._streamer = RangeStreamer(
            fetcher,
            record,
            start,
            end,
            consumer,
            read_ahead=streaming.streaming_chunk_size,
            max_buffer=streaming.max_range_size,
            zero_fill=zero_fill_applies(streaming.missing_article_policy, record.path),
            on_hole=self._hole,
            log_context=self._log_context,
            budget=getattr(fetcher, "budget", None),
            clock=clock,
            paused_timeout=streaming.paused_timeout_seconds,
            learner=learner,
            files=(
                self._body is not None
                and record.cipher is None
                and getattr(fetcher, "disk", None) is not None
            ),
        )

    def begin(self) -> None:
        if self._body is not None:
            self._body.attach(self._streamer)
            self._request.registerProducer(self._body, True)
        else:
            self._request.registerProducer(self._streamer, True)
        self._request.notifyFinish().addErrback(self._client_gone)
        self._streamer.start().addCallbacks(self._done, self._failed)

    def _close(self, outcome: str) -> None:
        if self._handle is not None:
            self._handle.close(outcome)

    def _hole(self, index: int, message_id: str, zero_bytes: int) -> None:
        """A segment missing everywhere was served as zeros: record it (once per article)."""
        if self._ops is not None:
            self._ops.record_hole(self._record.path, index, message_id, zero_bytes)
        else:
            log.warning(
                "%s: segment %d (<%s>) missing on every provider, served as zeros",
                self._record.path,
                index,
                message_id,
                extra=self._log_context,
            )

    def _client_gone(self, _reason: Failure) -> None:
        self._gone = True
        self._close("client_gone")
        if self._body is not None:
            self._body.close()
        self._streamer.stopProducing()

    def _done(self, _written: int) -> None:
        if self._gone:
            return
        if self._body is not None:
            self._body.flush().addCallback(self._flushed)
            return
        self._close("done")
        self._request.unregisterProducer()
        self._request.finish()

    def _flushed(self, _: None) -> None:
        """Every byte is in the socket (or the body ended early: nothing is left to send)."""
        if self._gone:
            return
        if self._body is not None and self._body.closed:
            self._close("client_gone")
            self._request.unregisterProducer()
            return
        self._close("done")
        self._request.unregisterProducer()
        self._request.finish()

    def _failed(self, failure: Failure) -> None:
        if self._gone or self._streamer.stopped:
            return  # the client went away; nobody is left to answer
        self._close("failed")
        if self._ops is not None and failure.check(ArticleNotFound):
            self._ops.mark_for_recheck(self._record.path, failure.getErrorMessage())
        request = self._request
        request.unregisterProducer()
        if self._body is not None:
            self._body.close()
        if request.startedWriting:
            # The status line and Content-Length are out: all we can do is end the
            # connection early, so the client sees a short body, never wrong bytes.
            request.loseConnection()
            return
        error = failure.value
        status = error.http_status if isinstance(error, AltmountError) else 502
        request.write(_plain(request, status, failure.getErrorMessage()))
        request.finish()
