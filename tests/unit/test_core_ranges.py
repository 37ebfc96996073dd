"""Range planning and assembly over segment tables: both `_core` implementations."""

from __future__ import annotations

import os
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from altmount._core import RangePlan, ranges_py
from altmount.errors import MetadataError, RangeNotSatisfiable, StreamError

try:
    from altmount._core import _ranges
except ImportError:  # pure-Python CI run without the extension built
    _ranges = None

IMPLS = [pytest.param(ranges_py, id="python")]
if _ranges is not None:
    IMPLS.append(pytest.param(_ranges, id="cython"))


class Table:
    """A segment table plus the decoded data of every segment, for naive checks."""

    def __init__(self, sizes: list[int], skips: list[int], extra: list[int]) -> None:
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.skips = np.array(skips, dtype=np.int64)
        self.pieces = [os.urandom(s + k + e) for s, k, e in zip(sizes, skips, extra, strict=True)]
        self.file = b"".join(
            p[k : k + s] for p, k, s in zip(self.pieces, skips, sizes, strict=True)
        )

    def read(self, impl: ModuleType, start: int, end: int) -> bytes:
        """Plan and assemble [start, end) with `impl`."""
        plan = impl.plan_range(self.offsets, self.skips, start, end)
        out = bytearray(end - start)
        written = impl.assemble_range(out, self.pieces[plan.first : plan.last], plan)
        assert written == end - start
        return bytes(out)


def same_plan(a: RangePlan, b: RangePlan) -> bool:
    """RangePlans hold arrays, so compare them field by field."""
    return (
        (a.first, a.last) == (b.first, b.last)
        and np.array_equal(a.src_start, b.src_start)
        and np.array_equal(a.length, b.length)
        and a.src_start.dtype == b.src_start.dtype == a.length.dtype == np.int64
    )


PLAIN = Table([100, 100, 100, 50], [0, 0, 0, 0], [0, 0, 0, 0])
ARCHIVE = Table([30, 100, 100, 7], [70, 0, 0, 0], [0, 0, 0, 93])  # a member inside segments
HOLES = Table([0, 10, 0, 0, 5, 0, 20, 0], [3, 0, 4, 0, 2, 0, 0, 9], [0] * 8)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("table", [PLAIN, ARCHIVE, HOLES], ids=["plain", "archive", "holes"])
@pytest.mark.parametrize("where", ["first", "last", "inside", "spanning", "whole"])
def test_ranges_match_naive_concatenation(impl: ModuleType, table: Table, where: str) -> None:
    """First/last byte, one segment, many segments and the whole file read back right."""
    size = len(table.file)
    start, end = {
        "first": (0, 1),
        "last": (size - 1, size),
        "inside": (12, 17),
        "spanning": (5, size - 3),
        "whole": (0, size),
    }[where]
    assert table.read(impl, start, end) == table.file[start:end]


@pytest.mark.parametrize("impl", IMPLS)
def test_plan_fields(impl: ModuleType) -> None:
    """A range spanning a segment edge takes the tail of one and the head of the next."""
    plan = impl.plan_range(ARCHIVE.offsets, ARCHIVE.skips, 20, 135)
    assert (plan.first, plan.last) == (0, 3)
    assert plan.src_start.tolist() == [90, 0, 0] and plan.length.tolist() == [10, 100, 5]


@pytest.mark.parametrize("impl", IMPLS)
def test_empty_segments_never_start_or_end_a_plan(impl: ModuleType) -> None:
    """Zero-length segments at the edges are skipped; inside a range they get length 0."""
    plan = impl.plan_range(HOLES.offsets, HOLES.skips, 10, 15)
    assert (plan.first, plan.last) == (4, 5)
    plan = impl.plan_range(HOLES.offsets, HOLES.skips, 9, 16)
    assert (plan.first, plan.last) == (1, 7)
    assert plan.length.tolist() == [1, 0, 0, 5, 0, 1]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("start", "end"), [(-1, 5), (5, 5), (6, 5), (0, 351), (350, 351)])
def test_unsatisfiable_ranges(impl: ModuleType, start: int, end: int) -> None:
    """Empty, negative or past-the-end ranges raise RangeNotSatisfiable."""
    with pytest.raises(RangeNotSatisfiable, match=rf"\[{start}, {end}\) .* 350 bytes"):
        impl.plan_range(PLAIN.offsets, PLAIN.skips, start, end)


@pytest.mark.parametrize("impl", IMPLS)
def test_empty_file_has_no_ranges(impl: ModuleType) -> None:
    """A file with no segments satisfies no range."""
    empty = np.zeros(0, dtype=np.int64)
    with pytest.raises(RangeNotSatisfiable):
        impl.plan_range(np.zeros(1, dtype=np.int64), empty, 0, 1)


@pytest.mark.parametrize("impl", IMPLS)
def test_mismatched_table(impl: ModuleType) -> None:
    """Offsets that do not number segments + 1 are a corrupt record."""
    with pytest.raises(MetadataError, match="4 offsets for 4 segments"):
        impl.plan_range(PLAIN.offsets[:4], PLAIN.skips, 0, 1)


@pytest.mark.parametrize("impl", IMPLS)
def test_short_piece_names_segment(impl: ModuleType) -> None:
    """A decoded segment shorter than its slice raises StreamError naming it and both sizes."""
    plan = impl.plan_range(ARCHIVE.offsets, ARCHIVE.skips, 0, 130)
    pieces = [ARCHIVE.pieces[0], ARCHIVE.pieces[1][:50]]
    with pytest.raises(StreamError, match="segment 1: decoded data has 50 bytes .* needs 100"):
        impl.assemble_range(bytearray(130), pieces, plan)


@pytest.mark.parametrize("impl", IMPLS)
def test_wrong_piece_count(impl: ModuleType) -> None:
    """Giving fewer pieces than planned segments raises StreamError."""
    plan = impl.plan_range(PLAIN.offsets, PLAIN.skips, 0, 350)
    with pytest.raises(StreamError, match="got 2 decoded segments for segments 0..3"):
        impl.assemble_range(bytearray(350), PLAIN.pieces[:2], plan)


@pytest.mark.parametrize("impl", IMPLS)
def test_small_output_buffer(impl: ModuleType) -> None:
    """An output buffer smaller than the range raises StreamError."""
    plan = impl.plan_range(PLAIN.offsets, PLAIN.skips, 0, 150)
    with pytest.raises(StreamError, match="output buffer has 149 bytes but the range needs 150"):
        impl.assemble_range(bytearray(149), PLAIN.pieces[:2], plan)


@pytest.mark.parametrize("impl", IMPLS)
def test_readonly_output(impl: ModuleType) -> None:
    """A read-only output buffer is a TypeError."""
    plan = impl.plan_range(PLAIN.offsets, PLAIN.skips, 0, 10)
    with pytest.raises(TypeError, match="writable"):
        impl.assemble_range(bytes(10), PLAIN.pieces[:1], plan)


@pytest.mark.parametrize("impl", IMPLS)
def test_memoryview_pieces_and_output(impl: ModuleType) -> None:
    """Pieces and output may be memoryviews (slices of larger buffers)."""
    plan = impl.plan_range(PLAIN.offsets, PLAIN.skips, 50, 250)
    big = bytearray(300)
    pieces = [memoryview(p) for p in PLAIN.pieces[plan.first : plan.last]]
    assert impl.assemble_range(memoryview(big)[100:], pieces, plan) == 200
    assert bytes(big[100:]) == PLAIN.file[50:250]


@st.composite
def tables_and_ranges(draw: st.DrawFn) -> tuple[Table, int, int]:
    """Random tables (empty segments and skips included) and a range inside them."""
    n = draw(st.integers(1, 25))
    sizes = draw(st.lists(st.integers(0, 40), min_size=n, max_size=n))
    if sum(sizes) == 0:
        sizes[-1] = 1
    skips = draw(st.lists(st.integers(0, 20), min_size=n, max_size=n))
    extra = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    size = sum(sizes)
    start = draw(st.integers(0, size - 1))
    end = draw(st.integers(start + 1, size))
    return Table(sizes, skips, extra), start, end


@settings(max_examples=300, deadline=None)
@given(tables_and_ranges())
def test_differential_random_tables(case: tuple[Table, int, int]) -> None:
    """Both implementations plan the same and assemble the naive concatenation."""
    table, start, end = case
    plans = [impl.values[0].plan_range(table.offsets, table.skips, start, end) for impl in IMPLS]
    assert all(same_plan(plans[0], p) for p in plans[1:])
    assert plans[0].length.sum() == end - start
    assert table.offsets[plans[0].first + 1] > start
    assert table.offsets[plans[0].last - 1] < end
    for impl in IMPLS:
        assert table.read(impl.values[0], start, end) == table.file[start:end]


@settings(max_examples=200, deadline=None)
@given(tables_and_ranges(), st.integers(-3, 3), st.integers(-3, 3))
def test_differential_errors(case: tuple[Table, int, int], d_start: int, d_end: int) -> None:
    """Both implementations raise the same error (or none) near the file's edges."""
    table, _, _ = case
    size = int(table.offsets[-1])
    start, end = d_start, size + d_end
    results = []
    for impl in IMPLS:
        try:
            plan = impl.values[0].plan_range(table.offsets, table.skips, start, end)
            results.append(("ok", plan.first, plan.last, plan.length.tolist()))
        except RangeNotSatisfiable as exc:
            results.append(("error", str(exc)))
    assert all(r == results[0] for r in results)
