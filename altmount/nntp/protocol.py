"""NNTP response framing and command encoding (RFC 3977), sans-IO: no sockets, no clock.

The client tells the parser, for each command it sends, which status codes announce a
multi-line data block (`expect`); the parser turns any chunking of the server's bytes
into `Response` events in the same order. Bodies are handed out still dot-stuffed,
without the terminating ".\\r\\n" line and as the chunks they arrived in (`ArticleBody`):
the yEnc decoder undoes the dot-stuffing in the same pass as the decoding and reads the
chunks as they are, which saves two copies of every article.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from altmount._core import find_body_end
from altmount.errors import NNTPProtocolError

__all__ = [
    "ArticleBody",
    "NNTPStatus",
    "Response",
    "ResponseParser",
    "MAX_STATUS_LINE",
    "MAX_BODY_SIZE",
    "MAX_COMMAND_LINE",
    "MULTILINE",
    "body_chunks",
    "encode_command",
    "message_id_arg",
]

#: A status line longer than this without CRLF is not NNTP. RFC 3977 3.1 caps
#: response lines at 512 octets; 2 KiB leaves room for chatty servers.
MAX_STATUS_LINE = 2048
#: Largest data block accepted. Posters use ~700 KiB articles and nothing in the wild
#: exceeds a few MiB; the cap bounds the memory one misbehaving server can make us hold.
MAX_BODY_SIZE = 32 * 1024 * 1024
#: RFC 3977 3.1: a command line, CRLF included, must not exceed 512 octets.
MAX_COMMAND_LINE = 512

_TERMINATOR = b"\r\n.\r\n"
_NO_BODY: frozenset[int] = frozenset()


class NNTPStatus(IntEnum):
    """The response codes altmount meets (RFC 3977 section 3.2 and RFC 4643)."""

    CAPABILITY_LIST = 101
    DATE = 111
    READY_POSTING_ALLOWED = 200
    READY_NO_POSTING = 201
    CLOSING = 205
    GROUP_SELECTED = 211
    ARTICLE_FOLLOWS = 220
    HEAD_FOLLOWS = 221
    BODY_FOLLOWS = 222
    ARTICLE_EXISTS = 223
    AUTH_ACCEPTED = 281
    PASSWORD_REQUIRED = 381
    SERVICE_UNAVAILABLE = 400
    NO_SUCH_GROUP = 411
    NO_CURRENT_ARTICLE = 420
    NO_ARTICLE_WITH_NUMBER = 423
    NO_SUCH_ARTICLE = 430
    AUTH_REQUIRED = 480
    AUTH_FAILED = 481
    AUTH_OUT_OF_SEQUENCE = 482
    ENCRYPTION_REQUIRED = 483
    UNKNOWN_COMMAND = 500
    SYNTAX_ERROR = 501
    PERMISSION_DENIED = 502
    FEATURE_NOT_SUPPORTED = 503


#: Per command verb, the success codes that announce a multi-line data block.
MULTILINE: dict[str, frozenset[int]] = {
    "ARTICLE": frozenset({NNTPStatus.ARTICLE_FOLLOWS}),
    "HEAD": frozenset({NNTPStatus.HEAD_FOLLOWS}),
    "BODY": frozenset({NNTPStatus.BODY_FOLLOWS}),
    "CAPABILITIES": frozenset({NNTPStatus.CAPABILITY_LIST}),
}


class ArticleBody:
    """A data block as it arrived: the received chunks in order, never joined.

    `altmount._core.decode_article` reads the chunks as they are. `len()` is the size
    in bytes, `bytes()` joins the chunks (one copy) for whoever needs one buffer, and a
    body equals bytes-like objects and bodies with the same content.
    """

    __slots__ = ("chunks", "_size")

    def __init__(self, chunks: Iterable[bytes], size: int | None = None) -> None:
        self.chunks: tuple[bytes, ...] = tuple(chunks)
        self._size = sum(map(len, self.chunks)) if size is None else size

    def __len__(self) -> int:
        return self._size

    def __bytes__(self) -> bytes:
        return b"".join(self.chunks)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ArticleBody):
            return self._size == other._size and bytes(self) == bytes(other)
        if isinstance(other, bytes | bytearray | memoryview):
            return self._size == len(other) and bytes(self) == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(bytes(self))

    def __repr__(self) -> str:
        return f"<ArticleBody {self._size} bytes in {len(self.chunks)} chunk(s)>"


def body_chunks(body: ArticleBody | bytes) -> tuple[bytes, ...]:
    """The chunks of a body; a body given as one bytes object is one chunk."""
    return body.chunks if isinstance(body, ArticleBody) else (body,)


@dataclass(frozen=True, slots=True)
class Response:
    """One server response: status code, the rest of the status line, and the data block.

    `body` is None for single-line responses; otherwise the dot-stuffed block, every
    line still ending in CRLF, without the final ".\\r\\n".
    """

    code: int
    text: str
    body: ArticleBody | None = None


class ResponseParser:
    """Turns server bytes into `Response` events (RFC 3977 3.1 and 3.1.1).

    Call `expect` once per command sent (and once for the greeting), then `feed` the
    bytes as they arrive. A response with nothing expected (a server's unsolicited
    "400 idle timeout" before it hangs up) is returned as a single-line response.
    Any framing violation raises `NNTPProtocolError`; after that the parser is dead.

    A body is kept as the list of received chunks and handed out as such: only the
    pieces of a chunk that also holds other responses are copied out of it.
    Each chunk is searched once for the terminator (`find_body_end`, a C scan: it
    reads every received byte); the last four bytes before it are kept to find a
    terminator split across two chunks.
    """

    __slots__ = (
        "_line",
        "_expected",
        "_body_code",
        "_body_text",
        "_chunks",
        "_seen",
        "_tail",
        "_error",
    )

    def __init__(self) -> None:
        self._line = bytearray()  # a status line still waiting for its CRLF
        self._expected: deque[frozenset[int]] = deque()
        # While inside a data block: its status, the chunks so far, and how many
        # bytes have been seen counting the CRLF that ended the status line (the
        # "line start" before the first body line, which lets an empty block match
        # the same CRLF.CRLF search), and the last four of them.
        self._body_code: int | None = None
        self._body_text = ""
        self._chunks: list[bytes] = []
        self._seen = 0
        self._tail = b""
        self._error: NNTPProtocolError | None = None

    def expect(self, multiline_on: frozenset[int] = _NO_BODY) -> None:
        """Announce the next command's response: these codes carry a data block."""
        self._expected.append(multiline_on)

    @property
    def pending(self) -> int:
        """Responses announced with `expect` and not yet returned."""
        return len(self._expected) + (self._body_code is not None)

    def feed(self, data: bytes) -> list[Response]:
        """Add received bytes; return the responses they complete, in order."""
        if self._error is not None:
            raise self._error
        events: list[Response] = []
        pos, size = 0, len(data)
        try:
            while pos < size:
                if self._body_code is not None:
                    pos = self._feed_body(data, pos, events)
                else:
                    pos = self._feed_status(data, pos, events)
        except NNTPProtocolError as exc:
            self._error = exc
            self._line.clear()
            self._chunks.clear()
            raise
        return events

    def _feed_status(self, data: bytes, pos: int, events: list[Response]) -> int:
        """Consume a status line from data[pos:]; return where the rest starts."""
        line = self._line
        if line.endswith(b"\r") and data[pos] == 0x0A:  # CRLF split across feeds
            text, pos = bytes(line[:-1]), pos + 1
        else:
            end = data.find(b"\r\n", pos, pos + MAX_STATUS_LINE + 2 - len(line))
            if end < 0:
                if len(line) + len(data) - pos > MAX_STATUS_LINE + 1:  # +1: CR of a CRLF
                    raise NNTPProtocolError(
                        f"status line longer than {MAX_STATUS_LINE} bytes without CRLF"
                    )
                line += data[pos:]
                return len(data)
            text, pos = bytes(line) + data[pos:end], end + 2
        line.clear()
        response = self._status(text)
        if response is not None:
            events.append(response)
        return pos

    def _status(self, line: bytes) -> Response | None:
        if (
            len(line) < 3
            or not line[:3].isdigit()
            or line[:1] not in b"12345"
            or (len(line) > 3 and line[3:4] != b" ")
        ):
            raise NNTPProtocolError(f"not an NNTP status line: {line[:80]!r}")
        code = int(line[:3])
        text = line[4:].decode("utf-8", "replace")
        multiline_on = self._expected.popleft() if self._expected else _NO_BODY
        if code not in multiline_on:
            return Response(code, text)
        self._body_code, self._body_text = code, text
        self._seen, self._tail = 2, b"\r\n"
        return None

    def _feed_body(self, data: bytes, pos: int, events: list[Response]) -> int:
        """Consume body bytes from data[pos:]; return where the rest starts."""
        tail, seen = self._tail, self._seen
        # Offsets below count from the status line's CRLF ("seen" coordinates).
        split = (tail + data[pos : pos + 4]).find(_TERMINATOR)
        if 0 <= split < len(tail):
            at = seen - len(tail) + split
        else:
            found = find_body_end(data, pos)
            if found < 0:
                rest = data[pos:] if pos else data
                self._chunks.append(rest)
                self._seen = seen + len(rest)
                self._tail = (tail + rest[-4:])[-4:]
                if self._seen - 2 > MAX_BODY_SIZE:
                    raise NNTPProtocolError(f"data block larger than {MAX_BODY_SIZE} bytes")
                return len(data)
            at = seen + found - pos
        # The body runs to the CRLF that starts the terminator: `at` body bytes.
        from_data = at - (seen - 2)
        if from_data > 0:
            self._chunks.append(data[pos : pos + from_data])
        elif from_data < 0:
            self._drop_last(-from_data)  # the body ended inside the previous chunks
        events.append(
            Response(self._body_code or 0, self._body_text, ArticleBody(self._chunks, at))
        )
        self._body_code = None
        self._chunks = []
        return pos + at + len(_TERMINATOR) - seen

    def _drop_last(self, count: int) -> None:
        """Take the last `count` bytes (part of a split terminator) off the chunks."""
        chunks = self._chunks
        while count:
            last = chunks.pop()
            if len(last) > count:
                chunks.append(last[:-count])
                return
            count -= len(last)


def message_id_arg(message_id: str) -> str:
    """Wrap a bare message-id in angle brackets for the wire, refusing unsafe ones."""
    if not message_id or any(c in message_id for c in "<> \t\r\n\0"):
        raise ValueError(f"not a valid message-id: {message_id!r}")
    return f"<{message_id}>"


def encode_command(verb: str, *args: str) -> bytes:
    """Encode one command line with its CRLF (RFC 3977 3.1); refuse unsafe arguments."""
    for arg in args:
        if not arg or any(c in arg for c in " \t\r\n\0"):
            raise ValueError(f"NNTP argument must be one non-empty word: {arg!r}")
    line = " ".join((verb, *args)).encode("utf-8") + b"\r\n"
    if len(line) > MAX_COMMAND_LINE:
        raise ValueError(f"NNTP command longer than {MAX_COMMAND_LINE} bytes: {line[:40]!r}...")
    return line
