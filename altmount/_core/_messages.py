"""Error builders shared by the Cython kernels and their pure-Python twins.

Both implementations must raise the same class with the same text; building
every message here makes that true by construction. No I/O.
"""

from __future__ import annotations

from altmount.errors import MetadataError, RangeNotSatisfiable, StreamError, YencError

__all__ = [
    "no_ybegin",
    "missing_field",
    "bad_number",
    "truncated",
    "bad_part_range",
    "part_mismatch",
    "size_mismatch_ypart",
    "size_mismatch_ybegin",
    "size_mismatch_yend",
    "unsatisfiable",
    "bad_table",
    "piece_count",
    "short_piece",
    "small_output",
]


def no_ybegin() -> YencError:
    """The body has no line starting with =ybegin."""
    return YencError("not a yEnc article: no =ybegin header")


def missing_field(keyword: str, field: str) -> YencError:
    """A required field is absent from a header line."""
    return YencError(f"malformed {keyword} header: no {field}= field")


def bad_number(keyword: str, field: str, raw: bytes, hexadecimal: bool = False) -> YencError:
    """A numeric header field does not parse (decimal, or 1-8 hex digits for CRCs)."""
    kind = "a CRC32 of 1-8 hex digits" if hexadecimal else "a decimal number"
    return YencError(f"malformed {keyword} header: {field}={raw.decode('latin-1')!r} is not {kind}")


def truncated() -> YencError:
    """The last line of the body is not =yend."""
    return YencError("truncated article: no =yend trailer after the data")


def bad_part_range(begin: int, end: int, total: int) -> YencError:
    """=ypart begin/end do not describe a non-empty slice of the file."""
    return YencError(
        f"=ypart begin={begin} end={end} is not a slice of the {total}-byte file (=ybegin size)"
    )


def part_mismatch(ybegin_part: int, yend_part: int) -> YencError:
    """=ybegin and =yend disagree on the part number."""
    return YencError(f"=yend part={yend_part} does not match =ybegin part={ybegin_part}")


def size_mismatch_ypart(decoded: int, begin: int, end: int) -> YencError:
    """The data length differs from what =ypart announces."""
    return YencError(
        f"decoded {decoded} bytes but =ypart begin={begin} end={end} announces {end - begin + 1}"
    )


def size_mismatch_ybegin(decoded: int, total: int) -> YencError:
    """A single-part article's data length differs from =ybegin size."""
    return YencError(f"decoded {decoded} bytes but =ybegin size={total}")


def size_mismatch_yend(decoded: int, size: int) -> YencError:
    """The data length differs from =yend size."""
    return YencError(f"decoded {decoded} bytes but =yend size={size}")


def unsatisfiable(start: int, end: int, size: int) -> RangeNotSatisfiable:
    """A byte range [start, end) is empty or outside the file."""
    return RangeNotSatisfiable(
        f"byte range [{start}, {end}) is not satisfiable for a file of {size} bytes"
    )


def bad_table(offsets: int, skips: int) -> MetadataError:
    """A segment table whose two arrays do not fit together."""
    return MetadataError(
        f"corrupt segment table: {offsets} offsets for {skips} segments (need segments + 1)"
    )


def piece_count(given: int, first: int, last: int) -> StreamError:
    """assemble_range got a different number of pieces than the plan has segments."""
    return StreamError(f"got {given} decoded segments for segments {first}..{last - 1}")


def short_piece(index: int, have: int, need: int) -> StreamError:
    """A decoded segment is shorter than the slice the plan takes from it."""
    return StreamError(f"segment {index}: decoded data has {have} bytes but the range needs {need}")


def small_output(have: int, need: int) -> StreamError:
    """The output buffer cannot hold the assembled range."""
    return StreamError(f"output buffer has {have} bytes but the range needs {need}")
