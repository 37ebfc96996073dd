"""HTTP range requests (RFC 9110 section 14, 13.1.5): which bytes of a file to send. No I/O.

`select_range` turns the `Range` and `If-Range` request headers into the one byte
span to answer with 206, or None for a plain 200 of the whole file, or raises
`RangeNotSatisfiable` (416). It follows the RFC's "ignore what you cannot use"
rule: a malformed Range header, a unit other than `bytes`, or an If-Range that
does not match all mean "send the whole file" (RFC 9110 14.2, 13.1.5).

Several ranges in one header: when the satisfiable ones overlap or touch they
are coalesced into one span (RFC 9110 15.3.7 allows coalescing); otherwise the
header is ignored and the whole file is sent. We never answer multipart/
byteranges: no streaming client asks for it, and a 200 is the one answer every
HTTP client understands without guessing which of its ranges it was given.
"""

from __future__ import annotations

import email.utils
import re
from calendar import timegm

from altmount.errors import RangeNotSatisfiable

__all__ = ["parse_range", "if_range_matches", "select_range", "make_etag"]

# Whitespace around the dash is tolerated (clients do send "0 - 99"), inside a number it is not.
_INT_RANGE = re.compile(r"([0-9]+)[ \t]*-[ \t]*([0-9]*)")
_SUFFIX_RANGE = re.compile(r"-[ \t]*([0-9]+)")
#: More ranges than this in one header is abuse, not a player (RFC 9110 14.2
#: lets a server ignore "many small ranges"); such a header is ignored.
MAX_RANGES = 64
#: A bound with more significant digits than this is past the end of any file; it is
#: clamped rather than converted (Python refuses int() of over 4300 digits).
_MAX_DIGITS = 18


def make_etag(size: int, mtime: float) -> str:
    """The strong ETag of a virtual file: size and mtime in milliseconds, both hex, quoted."""
    return f'"{size:x}-{int(round(mtime * 1000)):x}"'


def _number(digits: str) -> int:
    """A range bound's value, clamped to 10**18 (beyond any file) for absurdly long numbers."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_DIGITS else 10**_MAX_DIGITS


def _spans(range_set: str, size: int) -> list[tuple[int, int]] | None:
    """Each satisfiable range-spec as (start, end_exclusive); None if any spec is malformed."""
    spans = []
    specs = [spec.strip() for spec in range_set.split(",")]
    specs = [spec for spec in specs if spec]  # RFC 9110 5.6.1: empty list elements are allowed
    if not specs or len(specs) > MAX_RANGES:
        return None
    for spec in specs:
        if match := _INT_RANGE.fullmatch(spec):
            first = _number(match.group(1))
            last = _number(match.group(2)) if match.group(2) else None
            if last is not None and last < first:
                return None  # RFC 9110 14.1.1: invalid, so the whole header is ignored
            if first < size:
                end = size if last is None else min(last + 1, size)
                spans.append((first, end))
        elif match := _SUFFIX_RANGE.fullmatch(spec):
            length = _number(match.group(1))
            if length > 0 and size > 0:
                spans.append((max(0, size - length), size))
        else:
            return None
    return spans


def parse_range(header: str | bytes | None, size: int) -> tuple[int, int] | None:
    """The span [start, end) a Range header asks of a `size`-byte file, or None for all of it.

    Raises RangeNotSatisfiable when the header is valid but no range overlaps the file.
    """
    if header is None:
        return None
    if isinstance(header, bytes):
        try:
            header = header.decode("ascii")
        except UnicodeDecodeError:
            return None
    unit, sep, range_set = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    spans = _spans(range_set, size)
    if spans is None:
        return None
    if not spans:
        raise RangeNotSatisfiable(f"range {header.strip()!r} is outside the file ({size} bytes)")
    spans.sort()
    start, end = spans[0]
    for span_start, span_end in spans[1:]:
        if span_start > end:
            return None  # disjoint ranges: send the whole file (see module docstring)
        end = max(end, span_end)
    return start, end


def _http_date(value: str) -> int | None:
    """Seconds since the epoch of an HTTP-date in any of its three formats, or None."""
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    offset = parsed[9] or 0
    try:
        return timegm(parsed[:6] + (0, 0, 0)) - offset  # type: ignore[arg-type]
    except (OverflowError, ValueError):  # a year or hour far out of range: not a real date
        return None


def if_range_matches(if_range: str | bytes | None, etag: str, mtime: float) -> bool:
    """Whether the Range header may be honoured given If-Range (RFC 9110 13.1.5).

    An entity tag must match `etag` strongly (a weak tag never matches); a date
    must equal the Last-Modified second exactly. Missing If-Range: True.
    """
    if if_range is None:
        return True
    if isinstance(if_range, bytes):
        if_range = if_range.decode("latin-1")
    value = if_range.strip()
    if value.startswith('"') or value.startswith("W/"):
        return value == etag
    seconds = _http_date(value)
    return seconds is not None and seconds == int(mtime)


def select_range(
    range_header: str | bytes | None,
    if_range: str | bytes | None,
    size: int,
    etag: str,
    mtime: float,
) -> tuple[int, int] | None:
    """The span [start, end) to answer with 206, or None for 200 with the whole file.

    Raises RangeNotSatisfiable (416) only when Range applies and no part of it overlaps.
    """
    if range_header is None or not if_range_matches(if_range, etag, mtime):
        return None
    return parse_range(range_header, size)
