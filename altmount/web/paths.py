"""Request URL paths to virtual paths and back. No I/O.

A request path is percent-decoded exactly once, segment by segment, so an
encoded slash (`%2F`) can never become a separator and `%252e` stays the
literal name `%2e`. Anything that could step outside the virtual tree or
confuse another layer is a `PathError` (400): NUL and other control bytes,
backslashes, `..` segments, invalid or overlong UTF-8 (`%c0%ae`), malformed
escapes. `.` segments and empty segments (`//`) are dropped. The tree is
served at `/` and again under `/webdav/`; the prefix is remembered so that
hrefs in answers point back under the prefix the client used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

from altmount.errors import PathError

__all__ = ["WEBDAV_PREFIX", "RequestPath", "parse_request_path", "join_path", "href_for"]

WEBDAV_PREFIX = "/webdav"
_ABSOLUTE_URL = re.compile(rb"^[A-Za-z][A-Za-z0-9+.-]*://[^/]*")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
#: A path longer than this is not a file name, it is an attack or a bug.
MAX_PATH_BYTES = 8192


@dataclass(frozen=True, slots=True)
class RequestPath:
    """A decoded request path: `path` in the virtual tree, `prefix` "" or "/webdav"."""

    path: str
    prefix: str


def _segment(raw: bytes) -> str:
    """Decode one percent-encoded segment and refuse what must not be in a name."""
    if _BAD_ESCAPE.search(raw):
        raise PathError("malformed percent-escape in request path")
    decoded = unquote_to_bytes(raw)
    try:
        text = decoded.decode("utf-8")  # strict: overlong forms such as %c0%ae are invalid
    except UnicodeDecodeError as exc:
        raise PathError("request path is not valid UTF-8") from exc
    if "/" in text:
        raise PathError("encoded slash (%2F) inside a path segment")
    if "\\" in text:
        raise PathError("backslash in request path")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise PathError("control character in request path")
    if text == "..":
        raise PathError("'..' in request path")
    return text


def parse_request_path(raw: bytes) -> RequestPath:
    """Decode a request target's path (origin or absolute form, no query) into a RequestPath.

    Raises PathError for anything that is not a plain path inside the tree.
    """
    if len(raw) > MAX_PATH_BYTES:
        raise PathError(f"request path longer than {MAX_PATH_BYTES} bytes")
    raw = raw.split(b"?", 1)[0].split(b"#", 1)[0]
    raw = _ABSOLUTE_URL.sub(b"", raw, count=1)  # RFC 9112 3.2.2: absolute-form target
    if raw and not raw.startswith(b"/"):
        raise PathError("request path must start with '/'")
    segments = [_segment(part) for part in raw.split(b"/") if part]
    segments = [segment for segment in segments if segment != "."]
    prefix = ""
    if segments and segments[0] == WEBDAV_PREFIX[1:]:
        prefix = WEBDAV_PREFIX
        segments = segments[1:]
    return RequestPath("/" + "/".join(segments), prefix)


def join_path(parent: str, name: str) -> str:
    """The virtual path of `name` inside the directory `parent`."""
    return parent.rstrip("/") + "/" + name


def href_for(path: str, is_dir: bool, prefix: str = "") -> str:
    """The percent-encoded href of a virtual path; collections end with '/' (RFC 4918 8.3)."""
    encoded = "/".join(quote(segment, safe="") for segment in path.split("/"))
    if is_dir and not encoded.endswith("/"):
        encoded += "/"
    return prefix + encoded
