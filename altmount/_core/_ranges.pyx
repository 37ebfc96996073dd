"""Cython range planning and assembly over a segment table.

Same API, results and errors as `altmount._core.ranges_py`, whose docstring
describes the segment table. Planning is two binary searches plus a loop over
the covered segments only; assembly copies with memcpy, GIL released.
"""

from cpython.buffer cimport (
    PyBUF_SIMPLE,
    PyBUF_WRITABLE,
    PyBuffer_Release,
    PyObject_GetBuffer,
)
from libc.stdint cimport int64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy

import numpy as np

from altmount._core import _messages as msg
from altmount._core.types import RangePlan

__all__ = ["plan_range", "assemble_range"]


cdef inline Py_ssize_t _upper(const int64_t[::1] a, int64_t x) noexcept nogil:
    """First index i with a[i] > x (numpy searchsorted side="right")."""
    cdef Py_ssize_t lo = 0, hi = a.shape[0], mid
    while lo < hi:
        mid = lo + (hi - lo) // 2
        if a[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def plan_range(offsets, skips, long long start, long long end):
    """Plan file bytes ``[start, end)``: which segments, which slice of each.

    Raises `RangeNotSatisfiable` when the range is empty or leaves the file, and
    `MetadataError` when the two arrays do not belong together. Empty segments
    inside the range get length 0; the first and last planned segments are
    never empty.
    """
    cdef const int64_t[::1] off = np.ascontiguousarray(offsets, dtype=np.int64)
    cdef const int64_t[::1] sk = np.ascontiguousarray(skips, dtype=np.int64)
    cdef Py_ssize_t n = sk.shape[0], first, last, i, k
    cdef int64_t size, lo, hi
    if off.shape[0] != n + 1:
        raise msg.bad_table(off.shape[0], n)
    size = off[n]
    if start < 0 or start >= end or end > size:
        raise msg.unsatisfiable(start, end, size)
    # "Right" searches skip empty segments: they share their offset with the next one.
    first = _upper(off, start) - 1
    last = _upper(off, end - 1)
    src_start = np.empty(last - first, dtype=np.int64)
    length = np.empty(last - first, dtype=np.int64)
    cdef int64_t[::1] src_v = src_start, len_v = length
    for k in range(last - first):
        i = first + k
        lo = off[i] if off[i] > start else start
        hi = off[i + 1] if off[i + 1] < end else end
        len_v[k] = hi - lo
        src_v[k] = sk[i] + (lo - off[i])
    return RangePlan(first, last, src_start, length)


def assemble_range(out, pieces, plan):
    """Copy the planned slice of each decoded segment into `out`, back to back.

    `pieces` holds the decoded data of segments ``plan.first .. plan.last-1``.
    Returns the number of bytes written. Raises `StreamError` when a piece is
    too short for its slice (naming the segment), the piece count is wrong or
    `out` is too small.
    """
    if memoryview(out).readonly:
        raise TypeError("assemble_range needs a writable output buffer")
    cdef const int64_t[::1] src_start = plan.src_start
    cdef const int64_t[::1] length = plan.length
    cdef Py_ssize_t count = plan.last - plan.first, acquired = 0, k
    cdef int64_t total = 0, pos = 0
    cdef Py_buffer target
    cdef Py_buffer* views
    if len(pieces) != count:
        raise msg.piece_count(len(pieces), plan.first, plan.last)
    for k in range(count):
        total += length[k]
    PyObject_GetBuffer(out, &target, PyBUF_WRITABLE)
    views = <Py_buffer*>calloc(count if count > 0 else 1, sizeof(Py_buffer))
    try:
        if views == NULL:
            raise MemoryError()
        if target.len < total:
            raise msg.small_output(target.len, total)
        for k in range(count):
            PyObject_GetBuffer(pieces[k], &views[k], PyBUF_SIMPLE)
            acquired += 1
            if length[k] and views[k].len < src_start[k] + length[k]:
                raise msg.short_piece(plan.first + k, views[k].len, src_start[k] + length[k])
        with nogil:
            for k in range(count):
                if length[k]:
                    memcpy(<char*>target.buf + pos, <const char*>views[k].buf + src_start[k],
                           length[k])
                    pos += length[k]
        return pos
    finally:
        for k in range(acquired):
            PyBuffer_Release(&views[k])
        free(views)
        PyBuffer_Release(&target)
