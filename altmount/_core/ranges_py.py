"""Pure-Python twin of `altmount._core._ranges`: plan and assemble byte ranges. No I/O.

A file's segment table is two int64 arrays: ``offsets`` (n + 1 entries,
non-decreasing, ``offsets[n]`` is the file size) and ``skips`` (n entries).
Segment i contributes file bytes ``[offsets[i], offsets[i+1])``, taken from its
decoded data at ``skips[i]`` onwards (non-zero for archive members that start
inside a segment). Segments may be empty.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from altmount._core import _messages as msg
from altmount._core.types import RangePlan

__all__ = ["plan_range", "assemble_range"]

Buffer = bytes | bytearray | memoryview


def plan_range(offsets: npt.ArrayLike, skips: npt.ArrayLike, start: int, end: int) -> RangePlan:
    """Plan file bytes ``[start, end)``: which segments, which slice of each.

    Raises `RangeNotSatisfiable` when the range is empty or leaves the file, and
    `MetadataError` when the two arrays do not belong together. Empty segments
    inside the range get length 0 (nothing to fetch); the first and last planned
    segments are never empty.
    """
    start, end = operator.index(start), operator.index(end)
    off = np.ascontiguousarray(offsets, dtype=np.int64)
    sk = np.ascontiguousarray(skips, dtype=np.int64)
    n = sk.shape[0]
    if off.shape[0] != n + 1:
        raise msg.bad_table(off.shape[0], n)
    size = int(off[n])
    if start < 0 or start >= end or end > size:
        raise msg.unsatisfiable(start, end, size)
    # side="right" skips empty segments: they share their offset with the next one.
    first = int(np.searchsorted(off, start, side="right")) - 1
    last = int(np.searchsorted(off, end - 1, side="right"))
    seg_start = off[first:last]
    lo = np.maximum(seg_start, start)
    length = (np.minimum(off[first + 1 : last + 1], end) - lo).astype(np.int64, copy=False)
    src_start = (sk[first:last] + (lo - seg_start)).astype(np.int64, copy=False)
    return RangePlan(first, last, src_start, length)


def assemble_range(out: bytearray | memoryview, pieces: Sequence[Buffer], plan: RangePlan) -> int:
    """Copy the planned slice of each decoded segment into `out`, back to back.

    `pieces` holds the decoded data of segments ``plan.first .. plan.last-1``.
    Returns the number of bytes written. Raises `StreamError` when a piece is
    too short for its slice (naming the segment), the piece count is wrong or
    `out` is too small.
    """
    target = memoryview(out).cast("B")
    if target.readonly:
        raise TypeError("assemble_range needs a writable output buffer")
    if len(pieces) != plan.last - plan.first:
        raise msg.piece_count(len(pieces), plan.first, plan.last)
    total = int(plan.length.sum())
    if target.nbytes < total:
        raise msg.small_output(target.nbytes, total)
    sources = []
    for k, piece in enumerate(pieces):
        src = memoryview(piece).cast("B")
        need = int(plan.src_start[k] + plan.length[k])
        if plan.length[k] and src.nbytes < need:
            raise msg.short_piece(plan.first + k, src.nbytes, need)
        sources.append(src)
    pos = 0
    for k, src in enumerate(sources):
        s, n = int(plan.src_start[k]), int(plan.length[k])
        target[pos : pos + n] = src[s : s + n]
        pos += n
    return pos
