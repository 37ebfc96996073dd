"""multipart/form-data uploads: the parts with their file names, and a cap on request bodies.

Twisted already parses multipart bodies into `request.args`, but it drops each
part's `filename`, and an uploaded NZB's file name is the release name when the
NZB carries none. `parse_form` reads the body itself (RFC 7578, framing of
RFC 2046 5.1.1). No I/O.

Header bytes are decoded as UTF-8: Sonarr, Radarr and browsers send a non-ASCII
file name raw (`filename="Shōgun.nzb"`, RFC 7578 4.2 allows it), and the stdlib
email parser, made for 7-bit mail, turns those bytes into U+FFFD. Bytes that are
not UTF-8 are read as Latin-1, so a name is never lost. `filename*=UTF-8''...`
(RFC 5987) wins over `filename` when both are present.

`BodyLimitedRequest` refuses a body larger than `MAX_BODY_BYTES` while it
arrives (413 and the connection closed), before Twisted buffers and parses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from twisted.web.server import Request

from altmount.errors import RequestError

__all__ = [
    "MAX_NZB_BYTES",
    "MAX_BODY_BYTES",
    "MAX_PARTS",
    "FormPart",
    "parse_form",
    "header_params",
    "is_multipart",
    "BodyLimitedRequest",
]

#: The largest NZB accepted by any upload path. Real NZBs of 100 GB releases are
#: ~20 MB; anything bigger is a mistake or an attack.
MAX_NZB_BYTES = 64 * 1024 * 1024
#: A whole request body: one NZB plus the multipart framing and small form fields.
MAX_BODY_BYTES = MAX_NZB_BYTES + 1024 * 1024
#: Parts one body may hold: an upload form has a handful; thousands of empty parts
#: would only cost memory.
MAX_PARTS = 256
#: RFC 2046 5.1.1: a boundary is 1 to 70 characters.
MAX_BOUNDARY = 70

_TOKEN = re.compile(r'\s*([^\s=;"]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^;]*))?\s*(?:;|$)')


@dataclass(frozen=True, slots=True)
class FormPart:
    """One part of a multipart/form-data body."""

    name: str
    filename: str | None
    content_type: str
    data: bytes


def is_multipart(content_type: bytes | None) -> bool:
    """Whether a Content-Type header value announces multipart/form-data."""
    if not content_type:
        return False
    return content_type.split(b";", 1)[0].strip().lower() == b"multipart/form-data"


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def header_params(value: str) -> tuple[str, dict[str, str]]:
    """(value, parameters) of a header such as `form-data; name="a"; filename=b.nzb`.

    Parameter names are lower-cased; quoted values lose their quotes and
    backslash escapes; an RFC 5987 `key*=charset'lang'%XX` value is decoded and
    stored under `key*`.
    """
    head, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for match in _TOKEN.finditer(rest):
        key, raw = match.group(1).lower(), (match.group(2) or "").strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        if key.endswith("*"):
            charset, _, encoded = raw.partition("'")
            encoded = encoded.partition("'")[2]
            data = unquote_to_bytes(encoded)
            try:
                raw = data.decode(charset or "utf-8")
            except (LookupError, UnicodeDecodeError):
                raw = _text(data)
        params.setdefault(key, raw)
    return head.strip().lower(), params


def _boundary(content_type: bytes) -> bytes:
    if not is_multipart(content_type):
        raise RequestError("expected a multipart/form-data body with a boundary")
    _, params = header_params(_text(content_type))
    boundary = params.get("boundary", "")
    if not boundary or len(boundary) > MAX_BOUNDARY:
        raise RequestError(
            "expected a multipart/form-data body with a boundary of 1 to 70 characters"
        )
    return boundary.encode("utf-8")


def _headers(block: bytes) -> dict[str, str]:
    """Header fields of one part (folded lines joined), names lower-cased."""
    lines: list[str] = []
    for line in block.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and lines:
            lines[-1] += " " + _text(line).strip()
        elif line:
            lines.append(_text(line))
    fields: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon:
            raise RequestError(f"multipart part header without a colon: {line[:60]!r}")
        fields.setdefault(name.strip().lower(), value.strip())
    return fields


def _part(raw: bytes) -> FormPart | None:
    if raw.startswith(b"\r\n"):
        head, body = b"", raw[2:]
    else:
        head, sep, body = raw.partition(b"\r\n\r\n")
        if not sep:
            raise RequestError("a multipart part has no blank line after its headers")
    fields = _headers(head)
    disposition, params = header_params(fields.get("content-disposition", ""))
    name = params.get("name*") or params.get("name")
    if disposition != "form-data" or not name:
        return None  # RFC 7578 4.2: every part is form-data with a name; others are ignored
    filename = params.get("filename*") or params.get("filename")
    content_type = header_params(fields.get("content-type", "text/plain"))[0] or "text/plain"
    return FormPart(name=name, filename=filename, content_type=content_type, data=body)


def parse_form(content: bytes, content_type: bytes) -> list[FormPart]:
    """The named parts of a multipart/form-data body, in order.

    Raises RequestError (400) when the body is not multipart, has no boundary,
    is not closed by its final delimiter or holds more than MAX_PARTS parts.
    """
    delimiter = b"--" + _boundary(content_type)
    if content.startswith(delimiter):
        position = 0
    else:
        position = content.find(b"\r\n" + delimiter)
        if position < 0:
            raise RequestError("the multipart/form-data body does not contain its boundary")
        position += 2
    parts: list[FormPart] = []
    while True:
        position += len(delimiter)
        if content[position : position + 2] == b"--":
            return parts
        line_end = content.find(b"\r\n", position)
        if line_end < 0 or content[position:line_end].strip(b" \t"):
            raise RequestError("the multipart/form-data body has a malformed boundary line")
        start = line_end + 2
        following = content.find(b"\r\n" + delimiter, start)
        if following < 0:
            raise RequestError("the multipart/form-data body is truncated (no closing boundary)")
        if len(parts) >= MAX_PARTS:
            raise RequestError(f"the multipart/form-data body has more than {MAX_PARTS} parts")
        part = _part(content[start:following])
        if part is not None:
            parts.append(part)
        position = following + 2


class BodyLimitedRequest(Request):
    """A Request that answers 413 and hangs up once its body passes `max_body`.

    The check runs on the announced Content-Length and again on the bytes as they
    arrive (chunked bodies announce none), so nothing past the limit is buffered.
    """

    max_body = MAX_BODY_BYTES
    _received = 0
    _refused = False

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self.max_body:
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > self.max_body:
            self._refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._refused:
            return  # answered already; the connection is closing
        super().requestReceived(command, path, version)

    def _refuse(self) -> None:
        self._refused = True
        transport = self.channel.transport if self.channel is not None else None
        if transport is None:
            return
        body = b'{"error": {"code": "payload_too_large", "message": "request body too large"}}'
        transport.write(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        transport.loseConnection()
