"""Range / If-Range selection (RFC 9110 14, 13.1.5): 206 spans, 200 fallbacks, 416."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from altmount.errors import RangeNotSatisfiable
from altmount.stream.httprange import (
    if_range_matches,
    make_etag,
    parse_range,
    select_range,
)

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", (0, 100)),
        ("bytes=100-", (100, SIZE)),
        ("bytes=-10", (990, SIZE)),
        ("bytes=-5000", (0, SIZE)),
        ("bytes=990-5000", (990, SIZE)),
        ("bytes=999-999", (999, SIZE)),
        ("BYTES=0-0", (0, 1)),
        (" bytes = 5 - 9 ", (5, 10)),
        ("bytes=0-9, 5-19", (0, 20)),
        ("bytes=10-19,20-29", (10, 30)),
        ("bytes=0-9,,", (0, 10)),
        ("bytes=2000-,0-9", (0, 10)),
        (b"bytes=1-2", (1, 3)),
    ],
)
def test_satisfiable_ranges(header, expected):
    """Valid single, open, suffix and coalescable ranges give the expected span."""
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes",
        "bytes=",
        "bytes=,",
        "items=0-9",
        "bytes=9-0",
        "bytes=a-b",
        "bytes=1 2-3",
        "bytes=+1-2",
        "bytes=-",
        "bytes=0-9;x",
        "bytes=0x10-20",
        "bytes=0-9,20-29",
        "bytes=0-1,-1",
        "bytes=٣-5",
        b"bytes=\xff-1",
        "bytes=" + ",".join(["0-1"] * 65),
    ],
)
def test_ignored_headers_mean_whole_file(header):
    """Malformed, foreign-unit, disjoint-multi and abusive headers are ignored (None)."""
    assert parse_range(header, SIZE) is None


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=1000-2000", "bytes=-0", "bytes=5000-,-0"])
def test_unsatisfiable_raises_416(header):
    """Ranges that start at or past the end, or a zero suffix, are unsatisfiable."""
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, SIZE)
    assert info.value.http_status == 416


def test_empty_file_any_range_is_unsatisfiable():
    """Nothing of an empty file can be satisfied, not even a suffix."""
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=-10", 0)


def test_etag_format():
    """The ETag is size and mtime in milliseconds, hex, quoted."""
    assert make_etag(255, 1.5) == '"ff-5dc"'


def test_if_range_etag_must_match_strongly():
    """If-Range with the current ETag honours Range; another or weak tag does not."""
    etag = make_etag(SIZE, 100.0)
    assert if_range_matches(etag, etag, 100.0)
    assert not if_range_matches('"other"', etag, 100.0)
    assert not if_range_matches("W/" + etag, etag, 100.0)


def test_if_range_date_must_equal_last_modified():
    """If-Range with a date matches only the exact Last-Modified second, in any HTTP-date form."""
    mtime = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT
    for date in (
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
    ):
        assert if_range_matches(date, '"x"', mtime), date
    assert not if_range_matches("Sun, 06 Nov 1994 08:49:38 GMT", '"x"', mtime)
    assert not if_range_matches("not a date", '"x"', mtime)


def test_select_range_if_range_mismatch_serves_whole_file():
    """A stale If-Range turns even an unsatisfiable Range into a plain 200."""
    etag = make_etag(SIZE, 1.0)
    assert select_range("bytes=0-9", '"stale"', SIZE, etag, 1.0) is None
    assert select_range("bytes=5000-", '"stale"', SIZE, etag, 1.0) is None
    assert select_range("bytes=0-9", etag, SIZE, etag, 1.0) == (0, 10)
    assert select_range(None, etag, SIZE, etag, 1.0) is None


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(0, 10_000),
    first=st.integers(0, 12_000),
    length=st.one_of(st.none(), st.integers(0, 12_000)),
)
def test_int_range_property(size, first, length):
    """`a-b` is either the clipped span [a, min(b+1, size)) or 416 when a >= size."""
    last = None if length is None else first + length
    header = f"bytes={first}-{'' if last is None else last}"
    if first >= size:
        with pytest.raises(RangeNotSatisfiable):
            parse_range(header, size)
        return
    start, end = parse_range(header, size)
    assert start == first
    assert end == (size if last is None else min(last + 1, size))
    assert 0 <= start < end <= size


@settings(max_examples=300, deadline=None)
@given(size=st.integers(0, 10_000), suffix=st.integers(0, 12_000))
def test_suffix_range_property(size, suffix):
    """`-n` is the last min(n, size) bytes, or 416 when n is 0 or the file is empty."""
    header = f"bytes=-{suffix}"
    if suffix == 0 or size == 0:
        with pytest.raises(RangeNotSatisfiable):
            parse_range(header, size)
        return
    assert parse_range(header, size) == (size - min(suffix, size), size)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_headers_never_crash(header):
    """Any header text gives a valid span, None, or RangeNotSatisfiable; nothing else."""
    try:
        result = parse_range(header, SIZE)
    except RangeNotSatisfiable:
        return
    if result is not None:
        start, end = result
        assert 0 <= start < end <= SIZE
