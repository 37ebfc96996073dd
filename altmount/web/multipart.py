"""multipart/form-data uploads: the parts with their file names, and a cap on request bodies.

Twisted already parses multipart bodies into `request.args`, but it drops each
part's `filename`, and an uploaded NZB's file name is the release name when the
NZB carries none. `form_parts` parses the same bytes with the same stdlib email
parser and keeps it (RFC 7578). No I/O.

`BodyLimitedRequest` refuses a body larger than `MAX_BODY_BYTES` while it
arrives (413 and the connection closed), before Twisted buffers and parses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message

from twisted.web.server import Request

from altmount.errors import RequestError

__all__ = [
    "MAX_NZB_BYTES",
    "MAX_BODY_BYTES",
    "FormPart",
    "parse_form",
    "is_multipart",
    "BodyLimitedRequest",
]

#: The largest NZB accepted by any upload path. Real NZBs of 100 GB releases are
#: ~20 MB; anything bigger is a mistake or an attack.
MAX_NZB_BYTES = 64 * 1024 * 1024
#: A whole request body: one NZB plus the multipart framing and small form fields.
MAX_BODY_BYTES = MAX_NZB_BYTES + 1024 * 1024


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


def parse_form(content: bytes, content_type: bytes) -> list[FormPart]:
    """The named parts of a multipart/form-data body, in order.

    Raises RequestError (400) when the body is not multipart or has no boundary.
    """
    if not is_multipart(content_type) or b"boundary=" not in content_type.lower():
        raise RequestError("expected a multipart/form-data body with a boundary")
    head = b"MIME-Version: 1.0\r\nContent-Type: " + content_type + b"\r\n\r\n"
    message = message_from_bytes(head + content)
    if not message.is_multipart():
        raise RequestError("the multipart/form-data body could not be parsed")
    parts: list[FormPart] = []
    payload = message.get_payload()
    assert isinstance(payload, list)  # is_multipart() promises a list of parts
    for part in payload:
        assert isinstance(part, Message)
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            continue
        filename = part.get_filename()
        data = part.get_payload(decode=True)
        parts.append(
            FormPart(
                name=name,
                filename=filename,
                content_type=part.get_content_type(),
                data=data if isinstance(data, bytes) else b"",
            )
        )
    return parts


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
