"""Cython yEnc article decoder: framing in C, data through sabyenc3's SIMD decoder.

Same API, results and errors as `altmount._core.yenc_py`, whose docstring
defines the framing and the two readings of an escape before a line break.

Fast path: parse the header lines and the =yend tail here (a few hundred
bytes), then hand the untouched body to ``sabyenc3.decode_usenet_chunks``,
which re-finds the framing by itself, decodes with SIMD and checks the CRC with
the GIL released. sabyenc3 is only called when our framing provably matches
its own (clean CRLF header lines, the fields where its substring search finds
them, a CRC field); the remaining ways it could frame differently (an
"=ypart" or "\\r\\n=yend " inside the data) always make its output shorter,
which the size check catches. Any failure (error, wrong size, bad CRC) falls
back to the scalar decoder below, which computes exactly the twin's answer.

A body may also come as the list of chunks the NNTP parser received. sabyenc3
decodes such a list without joining it; we parse the frame on a small probe (the
start of the first chunk and the end of the last) and join the chunks only when
the header or the =yend line is not wholly inside them, or the fast path fails.

`find_body_end` is the NNTP parser's scan for the line that ends a data block: it
reads every received byte, so it is here in C (memchr for the dot, then its
neighbours) rather than ``bytes.find``, whose scalar search of the 5-byte needle
costs several times the decode itself.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdlib cimport free, malloc
from libc.string cimport memchr, memcmp, strlen

import zlib

from sabyenc3 import decode_usenet_chunks

from altmount._core import _messages as msg
from altmount._core.types import DecodedArticle
from altmount.errors import YencError

__all__ = ["decode_article", "find_body_end"]

cdef enum:
    CR = 13
    LF = 10
    SP = 32
    EQ = 61
    DOT = 46
    # Longer values overflow int64; no real size has that many digits.
    MAX_DECIMAL_DIGITS = 18
    # sabyenc3 looks for "\r\n=yend " only in the last MAX_TAIL_BYTES of the body.
    SABYENC_TAIL = 1024
    # Bytes of the first and of the last chunk that the frame of a chunked body is
    # parsed from: room for junk and long names before the data, and for the tail.
    PROBE_HEAD = 4096
    PROBE_TAIL = 2048


cdef struct Frame:
    Py_ssize_t name_start, name_end
    Py_ssize_t data_start, data_end
    long long part, total, begin, end
    long long begin_f, end_f  # raw =ypart values, begin_f < 0 without =ypart
    long long yend_size  # -1 when absent
    long long crc  # -1 when None
    Py_ssize_t header_next  # first byte after the =ybegin (=ypart) line
    Py_ssize_t yend_start  # first byte of the =yend line
    bint fast_ok


def decode_article(body):
    """Decode one article body; raise `YencError` when it is not valid yEnc.

    `body` is bytes, bytearray, a contiguous memoryview, or a list or tuple of
    bytes chunks that make up the body in order. A CRC mismatch is not an error:
    the result has ``crc_ok=False``.
    """
    cdef Py_buffer view
    cdef Frame f
    cdef const unsigned char* p
    if type(body) is list or type(body) is tuple:
        return _decode_chunks(body)
    PyObject_GetBuffer(body, &view, PyBUF_SIMPLE)
    try:
        p = <const unsigned char*>view.buf
        _parse_frame(p, view.len, &f)
        name = _name(p, &f)
        if f.fast_ok:
            article = _fast([body if type(body) is bytes else bytes(body)], &f, name)
            if article is not None:
                return article
        return _slow(p, &f, name)
    finally:
        PyBuffer_Release(&view)


cdef object _decode_chunks(object chunks):
    """Decode a chunked body: sabyenc3 on the chunks when the frame can be read from
    the ends of the first and last chunk, else the joined body."""
    cdef Frame f
    cdef Py_ssize_t count = len(chunks), head_len
    cdef const unsigned char* pp
    if count == 1 and type(chunks[0]) is bytes:
        return decode_article(chunks[0])
    cdef list parts = list(chunks)
    cdef bint all_bytes = count > 1
    for chunk in parts:
        if type(chunk) is not bytes:
            all_bytes = False
            break
    if all_bytes:
        head = (<bytes>parts[0])[:PROBE_HEAD]
        probe = head + (<bytes>parts[count - 1])[-PROBE_TAIL:]
        head_len = len(head)
        pp = probe
        try:
            _parse_frame(pp, len(probe), &f)
        except YencError:
            f.fast_ok = False  # maybe an artefact of the seam: the joined body decides
        # The frame is the whole body's when no byte it was read from lies past the
        # seam: the header lines and the start of the next line ("=ypart" + CRLF,
        # looked at when there is no =ypart line) before it, the =yend line after it.
        if f.fast_ok and f.header_next + 8 <= head_len and f.yend_start - 2 >= head_len:
            article = _fast(parts, &f, _name(pp, &f))
            if article is not None:
                return article
    return decode_article(b"".join(parts))


cdef str _name(const unsigned char* p, Frame* f):
    raw_name = (<const char*>p)[f.name_start:f.name_end]
    try:
        return raw_name.decode("utf-8")
    except UnicodeDecodeError:
        return raw_name.decode("latin-1")


cdef object _fast(list chunks, Frame* f, str name):
    """sabyenc3 on the body's chunks (bytes), or None when its answer cannot be used as is."""
    try:
        data, _, crc_ok = decode_usenet_chunks(chunks)
    except ValueError:
        return None
    cdef Py_ssize_t n = len(data)
    if n != f.end - f.begin or (f.yend_size >= 0 and n != f.yend_size):
        return None
    if f.crc >= 0 and not crc_ok:
        return None
    return DecodedArticle(
        data, name, f.part, f.total, f.begin, f.end, f.crc if f.crc >= 0 else None, True
    )


def find_body_end(data, Py_ssize_t start=0):
    """Index of the first CRLF "." CRLF in `data` at or after `start` (>= 0), or -1.

    That line ends an NNTP data block (RFC 3977 3.1.1); same answer as
    ``data.find(b"\\r\\n.\\r\\n", start)``.
    """
    cdef Py_buffer view
    cdef const unsigned char* p
    cdef const unsigned char* q
    cdef Py_ssize_t n, i
    if start < 0:
        raise ValueError(f"start must not be negative, got {start}")
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    p = <const unsigned char*>view.buf
    n = view.len
    i = start + 2  # where the dot of a match starting at `start` would be
    while i + 2 < n:
        q = <const unsigned char*>memchr(p + i, DOT, n - 2 - i)
        if q == NULL:
            break
        i = q - p
        if p[i - 2] == CR and p[i - 1] == LF and p[i + 1] == CR and p[i + 2] == LF:
            PyBuffer_Release(&view)
            return i - 2
        i += 1
    PyBuffer_Release(&view)
    return -1


cdef object _slow(const unsigned char* p, Frame* f, str name):
    """Scalar decode of both readings, choosing exactly as the twin does."""
    cdef Py_ssize_t n = f.data_end - f.data_start
    cdef Py_ssize_t out_len, splits = 0, ignored
    cdef unsigned char* buf = <unsigned char*>malloc(n + 1)
    if buf == NULL:
        raise MemoryError()
    try:
        with nogil:
            out_len = _scalar_decode(p + f.data_start, n, buf, False, &splits)
        data = PyBytes_FromStringAndSize(<char*>buf, out_len)
        err, ok = _check(f, data)
        if (err is not None or not ok) and splits > 0:
            with nogil:
                out_len = _scalar_decode(p + f.data_start, n, buf, True, &ignored)
            alt = PyBytes_FromStringAndSize(<char*>buf, out_len)
            alt_err, alt_ok = _check(f, alt)
            if alt_err is None and alt_ok:
                return _article(f, name, alt, True)
        if err is not None:
            raise err
        return _article(f, name, data, ok)
    finally:
        free(buf)


cdef object _article(Frame* f, str name, bytes data, bint crc_ok):
    return DecodedArticle(
        data, name, f.part, f.total, f.begin, f.end, f.crc if f.crc >= 0 else None, crc_ok
    )


cdef tuple _check(Frame* f, bytes data):
    """(size error or None, CRC ok) for one reading of the data."""
    cdef Py_ssize_t n = len(data)
    if f.begin_f >= 0:
        if n != f.end - f.begin:
            return msg.size_mismatch_ypart(n, f.begin_f, f.end_f), False
    elif n != f.total:
        return msg.size_mismatch_ybegin(n, f.total), False
    if f.yend_size >= 0 and n != f.yend_size:
        return msg.size_mismatch_yend(n, f.yend_size), False
    return None, f.crc < 0 or zlib.crc32(data) == f.crc


cdef Py_ssize_t _scalar_decode(
    const unsigned char* r, Py_ssize_t n, unsigned char* out, bint split, Py_ssize_t* splits
) noexcept nogil:
    """Decode data lines; `split` selects the split-escape reading.

    Counts in `splits` the escapes followed by CR or LF (where the readings differ).
    """
    cdef Py_ssize_t i = 0, j, o = 0
    cdef unsigned char c
    splits[0] = 0
    while i < n:
        c = r[i]
        if c == CR:
            # "\r\n." is a stuffed dot (RFC 3977 3.1.1): drop the dot too.
            if i + 2 < n and r[i + 1] == LF and r[i + 2] == DOT:
                i += 3
            else:
                i += 1
        elif c == LF:
            i += 1
        elif c == EQ:
            j = i + 1
            if j < n and (r[j] == CR or r[j] == LF):
                splits[0] += 1
                if split:
                    while j < n and (r[j] == CR or r[j] == LF):
                        if r[j] == CR and j + 2 < n and r[j + 1] == LF and r[j + 2] == DOT:
                            j += 3
                        else:
                            j += 1
            if j >= n:
                break  # dangling escape at the end of the data
            out[o] = <unsigned char>(r[j] - 106)
            o += 1
            # An escaped CR is also a line break; rapidyenc reprocesses it.
            i = j if (r[j] == CR and not split) else j + 1
        else:
            out[o] = <unsigned char>(c - 42)
            o += 1
            i += 1
    return o


cdef inline void _line_at(
    const unsigned char* p, Py_ssize_t n, Py_ssize_t pos, Py_ssize_t* end, Py_ssize_t* nxt
) noexcept nogil:
    """Where the line at `pos` ends (before CRLF/LF) and where the next one starts."""
    cdef const unsigned char* q = <const unsigned char*>memchr(p + pos, LF, n - pos)
    cdef Py_ssize_t lf = n if q == NULL else q - p
    end[0] = lf - 1 if (lf > pos and p[lf - 1] == CR) else lf
    nxt[0] = lf + 1 if lf < n else n


cdef inline bint _is_keyword(
    const unsigned char* p, Py_ssize_t start, Py_ssize_t end, const char* keyword
) noexcept nogil:
    cdef Py_ssize_t k = strlen(keyword)
    if end - start < k or memcmp(p + start, keyword, k) != 0:
        return False
    return end - start == k or p[start + k] == SP


cdef Py_ssize_t _find(
    const unsigned char* p, Py_ssize_t a, Py_ssize_t b, const char* needle
) noexcept nogil:
    """First index of `needle` in p[a:b], or -1 (short header ranges only)."""
    cdef Py_ssize_t k = strlen(needle)
    cdef const unsigned char* q
    while b - a >= k:
        q = <const unsigned char*>memchr(p + a, needle[0], b - a - k + 1)
        if q == NULL:
            return -1
        if memcmp(q, needle, k) == 0:
            return q - p
        a = q - p + 1
    return -1


cdef Py_ssize_t _field(
    const unsigned char* p, Py_ssize_t a, Py_ssize_t b, const char* key, Py_ssize_t* vend
) noexcept nogil:
    """Start of the value of the first token ``key=`` in p[a:b] (-1 if none); sets *vend."""
    cdef Py_ssize_t k = strlen(key), i = a, t
    while i < b:
        if p[i] == SP:
            i += 1
            continue
        t = i
        while i < b and p[i] != SP:
            i += 1
        if i - t > k and memcmp(p + t, key, k) == 0 and p[t + k] == EQ:
            vend[0] = i
            return t + k + 1
    return -1


cdef long long _decimal(
    const unsigned char* p, Py_ssize_t a, Py_ssize_t b, bytes key, str keyword
) except -2:
    """Value of decimal field `key` in p[a:b], -1 when absent."""
    cdef Py_ssize_t vend, v = _field(p, a, b, key, &vend), i
    cdef long long value = 0
    if v < 0:
        return -1
    if vend - v < 1 or vend - v > MAX_DECIMAL_DIGITS:
        raise msg.bad_number(keyword, key.decode(), (<const char*>p)[v:vend])
    for i in range(v, vend):
        if p[i] < 48 or p[i] > 57:
            raise msg.bad_number(keyword, key.decode(), (<const char*>p)[v:vend])
        value = value * 10 + (p[i] - 48)
    return value


cdef long long _hex(
    const unsigned char* p, Py_ssize_t a, Py_ssize_t b, bytes key, str keyword
) except -2:
    """Value of CRC field `key` (1-8 hex digits) in p[a:b], -1 when absent."""
    cdef Py_ssize_t vend, v = _field(p, a, b, key, &vend), i
    cdef long long value = 0
    cdef unsigned char c
    if v < 0:
        return -1
    if vend - v < 1 or vend - v > 8:
        raise msg.bad_number(keyword, key.decode(), (<const char*>p)[v:vend], True)
    for i in range(v, vend):
        c = p[i]
        if 48 <= c <= 57:
            value = value * 16 + (c - 48)
        elif 97 <= c <= 102:
            value = value * 16 + (c - 87)
        elif 65 <= c <= 70:
            value = value * 16 + (c - 55)
        else:
            raise msg.bad_number(keyword, key.decode(), (<const char*>p)[v:vend], True)
    return value


cdef inline bint _clean_line(const unsigned char* p, Py_ssize_t start, Py_ssize_t end,
                             Py_ssize_t n) noexcept nogil:
    """A header line sabyenc3 reads like we do: CRLF-terminated, no NUL or CR inside."""
    if end + 1 >= n or p[end] != CR or p[end + 1] != LF:
        return False
    return memchr(p + start, 0, end - start) == NULL and memchr(p + start, CR, end - start) == NULL


cdef int _parse_frame(const unsigned char* p, Py_ssize_t n, Frame* f) except -1:
    """Fill `f` from the header lines and the tail, in the twin's order of checks."""
    cdef Py_ssize_t pos = 0, end = 0, nxt = 0, fields_end, name_v, vend
    cdef Py_ssize_t p_end, p_next, header_next, tail, yend_start, yend_end, lf, bv, bvend
    cdef long long pcrc, fcrc, yend_part
    cdef bint found = False
    while pos < n:
        _line_at(p, n, pos, &end, &nxt)
        if _is_keyword(p, pos, end, b"=ybegin"):
            found = True
            break
        pos = nxt
    if not found:
        raise msg.no_ybegin()
    # sabyenc3 searches "=ybegin" from the first byte with strstr.
    f.fast_ok = (
        memchr(p, 0, pos) == NULL and _find(p, 0, pos, b"=ybegin") < 0
        and _clean_line(p, pos, end, n)
    )
    name_v = _field(p, pos + 7, end, b"name", &vend)
    fields_end = end if name_v < 0 else name_v - 5
    f.part = _decimal(p, pos + 7, fields_end, b"part", "=ybegin")
    _decimal(p, pos + 7, fields_end, b"total", "=ybegin")
    _decimal(p, pos + 7, fields_end, b"line", "=ybegin")
    f.total = _decimal(p, pos + 7, fields_end, b"size", "=ybegin")
    if f.total < 0:
        raise msg.missing_field("=ybegin", "size")
    if name_v < 0:
        raise msg.missing_field("=ybegin", "name")
    f.name_start, f.name_end = name_v, end
    # An empty name makes sabyenc3 start decoding at the LF instead of the CR.
    f.fast_ok = f.fast_ok and end > name_v

    f.data_start, header_next = end, nxt
    f.begin_f = -1
    if nxt < n:
        _line_at(p, n, nxt, &p_end, &p_next)
        if _is_keyword(p, nxt, p_end, b"=ypart"):
            f.begin_f = _decimal(p, nxt + 6, p_end, b"begin", "=ypart")
            f.end_f = _decimal(p, nxt + 6, p_end, b"end", "=ypart")
            if f.begin_f < 0:
                raise msg.missing_field("=ypart", "begin")
            if f.end_f < 0:
                raise msg.missing_field("=ypart", "end")
            # sabyenc3 takes the first "begin=" after "=ypart", then the first
            # "end=" after its value, and starts after the end of that line.
            bv = _field(p, nxt + 6, p_end, b"begin", &bvend)
            f.fast_ok = (
                f.fast_ok and _clean_line(p, nxt, p_end, n)
                and _find(p, nxt + 6, p_end, b"begin=") == bv - 6
                and _find(p, bvend, p_end, b"end=") >= 0
            )
            f.data_start, header_next = p_end, p_next

    tail = n
    if n >= 5 and memcmp(p + n - 5, b"\r\n.\r\n", 5) == 0:
        tail -= 3
    while tail > header_next and (p[tail - 1] == CR or p[tail - 1] == LF):
        tail -= 1
    yend_start = header_next
    lf = tail - 1
    while lf >= header_next:
        if p[lf] == LF:
            yend_start = lf + 1
            break
        lf -= 1
    if tail <= header_next or not _is_keyword(p, yend_start, tail, b"=yend"):
        raise msg.truncated()
    f.header_next, f.yend_start = header_next, yend_start
    f.yend_size = _decimal(p, yend_start + 5, tail, b"size", "=yend")
    yend_part = _decimal(p, yend_start + 5, tail, b"part", "=yend")
    pcrc = _hex(p, yend_start + 5, tail, b"pcrc32", "=yend")
    fcrc = _hex(p, yend_start + 5, tail, b"crc32", "=yend")

    if f.begin_f < 0:
        f.begin, f.end = 0, f.total
    else:
        if f.begin_f < 1 or f.end_f < f.begin_f or f.end_f > f.total:
            raise msg.bad_part_range(f.begin_f, f.end_f, f.total)
        f.begin, f.end = f.begin_f - 1, f.end_f
    if f.part >= 0 and yend_part >= 0 and f.part != yend_part:
        raise msg.part_mismatch(f.part, yend_part)
    if f.part < 0:
        f.part = 0
    if pcrc >= 0:
        f.crc = pcrc
    elif fcrc >= 0 and f.begin == 0 and f.end == f.total:
        f.crc = fcrc
    else:
        f.crc = -1

    f.data_end = yend_start
    if f.data_end > f.data_start and p[f.data_end - 1] == LF:
        f.data_end -= 1
    if f.data_end > f.data_start and p[f.data_end - 1] == CR:
        f.data_end -= 1
    # sabyenc3 ends the data at "\r\n=yend " found in the last bytes and needs a CRC field.
    f.fast_ok = (
        f.fast_ok and f.data_end > f.data_start and (pcrc >= 0 or fcrc >= 0)
        and yend_start >= 2 and p[yend_start - 2] == CR and p[yend_start - 1] == LF
        and tail - yend_start > 5 and p[yend_start + 5] == SP
        and n - (yend_start - 2) <= SABYENC_TAIL
    )
    return 0
