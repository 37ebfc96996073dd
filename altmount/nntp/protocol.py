"""NNTP response framing and command encoding (RFC 3977), sans-IO: no sockets, no clock.

The client tells the parser, for each command it sends, which status codes announce a
multi-line data block (`expect`); the parser turns any chunking of the server's bytes
into `Response` events in the same order. Bodies are handed out still dot-stuffed and
without the terminating ".\\r\\n" line: the yEnc decoder undoes the dot-stuffing in the
same pass as the decoding, which saves a copy of every article.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import IntEnum

from altmount.errors import NNTPProtocolError

__all__ = [
    "NNTPStatus",
    "Response",
    "ResponseParser",
    "MAX_STATUS_LINE",
    "MAX_BODY_SIZE",
    "MAX_COMMAND_LINE",
    "MULTILINE",
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


@dataclass(frozen=True, slots=True)
class Response:
    """One server response: status code, the rest of the status line, and the data block.

    `body` is None for single-line responses; otherwise the dot-stuffed block, every
    line still ending in CRLF, without the final ".\\r\\n".
    """

    code: int
    text: str
    body: bytes | None = None


class ResponseParser:
    """Turns server bytes into `Response` events (RFC 3977 3.1 and 3.1.1).

    Call `expect` once per command sent (and once for the greeting), then `feed` the
    bytes as they arrive. A response with nothing expected (a server's unsolicited
    "400 idle timeout" before it hangs up) is returned as a single-line response.
    Any framing violation raises `NNTPProtocolError`; after that the parser is dead.
    """

    __slots__ = ("_buffer", "_expected", "_body_code", "_body_text", "_scanned", "_error")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._expected: deque[frozenset[int]] = deque()
        # While inside a data block: its status; the buffer then starts with the CRLF
        # that ended the status line, so an empty block is found by the same search.
        self._body_code: int | None = None
        self._body_text = ""
        self._scanned = 0
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
        self._buffer += data
        events: list[Response] = []
        try:
            while True:
                event = self._next_body() if self._body_code is not None else self._next_status()
                if event is None:
                    return events
                events.append(event)
        except NNTPProtocolError as exc:
            self._error = exc
            self._buffer.clear()
            raise

    def _next_status(self) -> Response | None:
        buffer = self._buffer
        end = buffer.find(b"\r\n", 0, MAX_STATUS_LINE + 2)
        if end < 0:
            if len(buffer) > MAX_STATUS_LINE + 1:  # +1: a lone CR may be the CRLF's first half
                raise NNTPProtocolError(
                    f"status line longer than {MAX_STATUS_LINE} bytes without CRLF"
                )
            return None
        line = bytes(buffer[:end])
        if len(line) < 3 or not line[:3].isdigit() or line[:1] not in b"12345" or (
            len(line) > 3 and line[3:4] != b" "
        ):
            raise NNTPProtocolError(f"not an NNTP status line: {line[:80]!r}")
        code = int(line[:3])
        text = line[4:].decode("utf-8", "replace")
        multiline_on = self._expected.popleft() if self._expected else _NO_BODY
        if code in multiline_on:
            del buffer[:end]  # keep the CRLF: it is the line start before the first body line
            self._body_code = code
            self._body_text = text
            self._scanned = 0
            return self._next_body()
        del buffer[: end + 2]
        return Response(code, text)

    def _next_body(self) -> Response | None:
        buffer = self._buffer
        # Resume where the last search stopped, backing up so a terminator split
        # across two feeds is still found; never rescan the whole body.
        at = buffer.find(_TERMINATOR, max(0, self._scanned - len(_TERMINATOR) + 1))
        if at < 0:
            if len(buffer) - 2 > MAX_BODY_SIZE:
                raise NNTPProtocolError(f"data block larger than {MAX_BODY_SIZE} bytes")
            self._scanned = len(buffer)
            return None
        with memoryview(buffer) as view:
            body = bytes(view[2 : at + 2])
        del buffer[: at + len(_TERMINATOR)]
        code, text = self._body_code, self._body_text
        self._body_code = None
        assert code is not None
        return Response(code, text, body)


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
