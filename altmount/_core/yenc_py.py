"""Pure-Python twin of `altmount._core._yenc`: decode one yEnc article body. No I/O.

Same API, results and errors as the Cython kernel (a differential test holds
them to it); used only with ``ALTMOUNT_PURE=1`` and as the reference in tests.

The body is what an NNTP server sends after ``222`` (RFC 3977 3.1.1): CRLF
lines, dot-stuffed, maybe still ending in the ``.\\r\\n`` terminator, maybe with
junk lines before ``=ybegin``. Framing (yEnc 1.3 and the 1.2 multi-part
additions):

* the =ybegin line is the first line starting with ``=ybegin`` + space;
  fields are space-separated ``key=value`` tokens, the first token starting with
  ``name=`` takes the rest of the line as the name; the first of duplicate keys
  wins; unknown keys are ignored;
* =ypart, if present, is the line right after =ybegin;
* =yend is the last non-empty line; the data lines lie in between.

Data decoding. The yEnc grammar ignores CR and LF and undoes one NNTP stuffed
dot after each CRLF. An escape ``=`` followed by a line break cannot come from
a yEnc 1.3 encoder (an escaped character is always written on the escape's own
line), so it has two readings in the wild:

* "escaped CR": rapidyenc (SABnzbd, NZBGet, our Cython path) decodes ``=\\r``
  as the byte CR-64-42 and ``=\\n`` as LF-64-42;
* "split escape": old encoders that wrap after the escape mean the escape to
  apply to the first character of the next line.

The first reading is the primary one; the second is tried only when the first
fails the size or CRC check, and used only if it passes both. A dangling ``=``
at the very end of the data is dropped in both readings.

A body may be given as the list (or tuple) of chunks it arrived in: it means the
chunks joined. `find_body_end` finds the line that ends an NNTP data block.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from altmount._core import _messages as msg
from altmount._core.types import DecodedArticle
from altmount.errors import YencError

__all__ = ["decode_article", "find_body_end"]

_CR, _LF, _SP = 0x0D, 0x0A, 0x20
_MAX_DECIMAL_DIGITS = 18  # anything longer overflows the Cython int64 and is no real size
_HEX = frozenset(b"0123456789abcdefABCDEF")
#: Plain (unescaped) yEnc characters: output = input - 42 (mod 256).
_PLAIN = bytes((c - 42) & 0xFF for c in range(256))
_BODY_END = b"\r\n.\r\n"


@dataclass(frozen=True, slots=True)
class _Frame:
    """What the header lines say and where the data lines are."""

    name: str
    part: int
    total: int
    begin: int
    end: int
    ypart: tuple[int, int] | None  # the raw =ypart begin=/end= values
    yend_size: int | None
    crc: int | None
    data_start: int
    data_end: int


def decode_article(
    body: bytes | bytearray | memoryview | list[bytes] | tuple[bytes, ...],
) -> DecodedArticle:
    """Decode one article body; raise `YencError` when it is not valid yEnc.

    `body` is bytes-like, or a list or tuple of bytes chunks that make up the body
    in order. A CRC mismatch is not an error: the result has ``crc_ok=False``.
    """
    raw = b"".join(body) if isinstance(body, list | tuple) else bytes(body)
    frame = _parse_frame(raw)
    region = raw[frame.data_start : frame.data_end]
    data = _decode(region, split_escapes=False)
    err, ok = _check(frame, data)
    if (err is not None or not ok) and (b"=\r" in region or b"=\n" in region):
        alt = _decode(region, split_escapes=True)
        alt_err, alt_ok = _check(frame, alt)
        if alt_err is None and alt_ok:
            return _article(frame, alt, True)
    if err is not None:
        raise err
    return _article(frame, data, ok)


def find_body_end(data: bytes | bytearray | memoryview, start: int = 0) -> int:
    """Index of the first CRLF "." CRLF in `data` at or after `start` (>= 0), or -1.

    That line ends an NNTP data block (RFC 3977 3.1.1).
    """
    if start < 0:
        raise ValueError(f"start must not be negative, got {start}")
    return bytes(data).find(_BODY_END, start)


def _article(frame: _Frame, data: bytes, crc_ok: bool) -> DecodedArticle:
    return DecodedArticle(
        data, frame.name, frame.part, frame.total, frame.begin, frame.end, frame.crc, crc_ok
    )


def _check(frame: _Frame, data: bytes) -> tuple[YencError | None, bool]:
    """Size checks (an error) and CRC check (a flag) of one reading of the data."""
    n = len(data)
    if frame.ypart is not None:
        if n != frame.end - frame.begin:
            return msg.size_mismatch_ypart(n, *frame.ypart), False
    elif n != frame.total:
        return msg.size_mismatch_ybegin(n, frame.total), False
    if frame.yend_size is not None and n != frame.yend_size:
        return msg.size_mismatch_yend(n, frame.yend_size), False
    return None, frame.crc is None or zlib.crc32(data) == frame.crc


def _decode(region: bytes, split_escapes: bool) -> bytes:
    """Decode the data lines (see the module docstring for the two readings)."""
    text = region.replace(b"\r\n.", b"\r\n")
    if split_escapes:
        text = text.translate(None, b"\r\n")
    out = bytearray()
    n = len(text)
    i = 0
    while True:
        j = text.find(b"=", i)
        if j < 0:
            out += text[i:].translate(_PLAIN, b"\r\n")
            return bytes(out)
        out += text[i:j].translate(_PLAIN, b"\r\n")
        if j + 1 >= n:
            return bytes(out)
        escaped = text[j + 1]
        out.append((escaped - 106) & 0xFF)
        # An escaped CR is also a line break; rapidyenc reprocesses it.
        i = j + 1 if escaped == _CR else j + 2


def _line_at(raw: bytes, pos: int) -> tuple[int, int]:
    """(end of the line's content = where its CRLF/LF starts, start of the next line)."""
    n = len(raw)
    lf = raw.find(b"\n", pos)
    if lf < 0:
        lf = n
    end = lf - 1 if lf > pos and raw[lf - 1] == _CR else lf
    return end, min(lf + 1, n)


def _is_keyword(raw: bytes, start: int, end: int, keyword: bytes) -> bool:
    k = len(keyword)
    return raw.startswith(keyword, start, end) and (end - start == k or raw[start + k] == _SP)


def _fields(line: bytes, stop_at_name: bool) -> tuple[dict[bytes, bytes], bytes | None]:
    """Split a header line's tokens; with `stop_at_name`, name= takes the rest of the line."""
    fields: dict[bytes, bytes] = {}
    n = len(line)
    pos = 0
    while pos < n:
        if line[pos] == _SP:
            pos += 1
            continue
        end = line.find(b" ", pos)
        if end < 0:
            end = n
        if stop_at_name and line.startswith(b"name=", pos):
            return fields, line[pos + 5 :]
        key, eq, value = line[pos:end].partition(b"=")
        if eq and key not in fields:
            fields[key] = value
        pos = end
    return fields, None


def _decimal(fields: dict[bytes, bytes], keyword: str, key: bytes) -> int | None:
    value = fields.get(key)
    if value is None:
        return None
    if not (1 <= len(value) <= _MAX_DECIMAL_DIGITS and value.isdigit()):
        raise msg.bad_number(keyword, key.decode(), value)
    return int(value)


def _hex(fields: dict[bytes, bytes], keyword: str, key: bytes) -> int | None:
    value = fields.get(key)
    if value is None:
        return None
    if not (1 <= len(value) <= 8 and _HEX.issuperset(value)):
        raise msg.bad_number(keyword, key.decode(), value, hexadecimal=True)
    return int(value, 16)


def _parse_frame(raw: bytes) -> _Frame:
    n = len(raw)
    pos = 0
    while pos < n:
        end, nxt = _line_at(raw, pos)
        if _is_keyword(raw, pos, end, b"=ybegin"):
            break
        pos = nxt
    else:
        raise msg.no_ybegin()
    fields, raw_name = _fields(raw[pos + 7 : end], stop_at_name=True)
    part = _decimal(fields, "=ybegin", b"part")
    for key in (b"total", b"line"):
        _decimal(fields, "=ybegin", key)
    total = _decimal(fields, "=ybegin", b"size")
    if total is None:
        raise msg.missing_field("=ybegin", "size")
    if raw_name is None:
        raise msg.missing_field("=ybegin", "name")
    try:
        name = raw_name.decode("utf-8")
    except UnicodeDecodeError:
        name = raw_name.decode("latin-1")

    data_start, header_next = end, nxt
    ypart: tuple[int, int] | None = None
    if nxt < n:
        p_end, p_next = _line_at(raw, nxt)
        if _is_keyword(raw, nxt, p_end, b"=ypart"):
            pfields, _ = _fields(raw[nxt + 6 : p_end], stop_at_name=False)
            begin_f = _decimal(pfields, "=ypart", b"begin")
            end_f = _decimal(pfields, "=ypart", b"end")
            if begin_f is None:
                raise msg.missing_field("=ypart", "begin")
            if end_f is None:
                raise msg.missing_field("=ypart", "end")
            ypart = (begin_f, end_f)
            data_start, header_next = p_end, p_next

    tail = n
    if raw.endswith(b"\r\n.\r\n"):
        tail -= 3
    while tail > header_next and raw[tail - 1] in (_CR, _LF):
        tail -= 1
    lf = raw.rfind(b"\n", header_next, tail)
    yend_start = header_next if lf < 0 else lf + 1
    if tail <= header_next or not _is_keyword(raw, yend_start, tail, b"=yend"):
        raise msg.truncated()
    yfields, _ = _fields(raw[yend_start + 5 : tail], stop_at_name=False)
    yend_size = _decimal(yfields, "=yend", b"size")
    yend_part = _decimal(yfields, "=yend", b"part")
    pcrc = _hex(yfields, "=yend", b"pcrc32")
    fcrc = _hex(yfields, "=yend", b"crc32")

    if ypart is None:
        begin, end = 0, total
    else:
        if ypart[0] < 1 or ypart[1] < ypart[0] or ypart[1] > total:
            raise msg.bad_part_range(ypart[0], ypart[1], total)
        begin, end = ypart[0] - 1, ypart[1]
    if part is not None and yend_part is not None and part != yend_part:
        raise msg.part_mismatch(part, yend_part)
    crc = pcrc if pcrc is not None else fcrc if begin == 0 and end == total else None

    data_end = yend_start
    if data_end > data_start and raw[data_end - 1] == _LF:
        data_end -= 1
    if data_end > data_start and raw[data_end - 1] == _CR:
        data_end -= 1
    return _Frame(name, part or 0, total, begin, end, ypart, yend_size, crc, data_start, data_end)
