"""Byte ranges of a release imported from INN2, read with curl, against the original bytes."""

from __future__ import annotations

import pytest
from inn2lib import AltmountServer, Posted, md5, skip_without_peers

pytestmark = pytest.mark.inn2
skip_without_peers()


def _ranges(size: int, part: int) -> list[tuple[str, int, int]]:
    """(curl -r spec, first, last) cases: edges, segment boundaries and a suffix."""
    return [
        ("0-0", 0, 0),
        ("0-99", 0, 99),
        (f"{size - 1000}-{size - 1}", size - 1000, size - 1),
        (f"{size - 1}-", size - 1, size - 1),
        (f"{part - 1}-{part}", part - 1, part),
        (f"{part - 100}-{2 * part + 100}", part - 100, 2 * part + 100),
        (f"{3 * part + 12345}-{6 * part + 54321}", 3 * part + 12345, 6 * part + 54321),
        ("-5000", size - 5000, size - 1),
    ]


def test_import_lists_the_file_with_its_size(
    altmount: AltmountServer, imported_movie: str, posted_movie: Posted
) -> None:
    """After import the movie is in the WebDAV tree with its exact size."""
    entry = altmount.find_file(posted_movie.release, posted_movie.name)
    assert entry.path == imported_movie
    assert entry.size == len(posted_movie.data)


def test_ranges_match_the_original(
    movie_over: tuple[AltmountServer, str], posted_movie: Posted
) -> None:
    """Every range (first byte, tail, across segments, suffix) is 206 with the original bytes
    (plain and over verified TLS)."""
    altmount, imported_movie = movie_over
    data = posted_movie.data
    for spec, first, last in _ranges(len(data), posted_movie.article_size):
        code, status, body, _ = altmount.curl(imported_movie, spec)
        assert (code, status) == (0, 206), f"range {spec}: curl {code}, HTTP {status}"
        assert len(body) == last - first + 1, f"range {spec}: {len(body)} bytes"
        assert md5(body) == md5(data[first : last + 1]), f"range {spec}: wrong bytes"


def test_full_get_matches_the_original(
    movie_over: tuple[AltmountServer, str], posted_movie: Posted
) -> None:
    """A plain GET returns 200 and the whole file, byte for byte (plain and over TLS)."""
    altmount, imported_movie = movie_over
    code, status, body, _ = altmount.curl(imported_movie)
    assert (code, status) == (0, 200)
    assert len(body) == len(posted_movie.data)
    assert md5(body) == md5(posted_movie.data)


def test_unsatisfiable_range_is_416(
    altmount: AltmountServer, imported_movie: str, posted_movie: Posted
) -> None:
    """A range starting past the end is answered 416, not with bytes."""
    size = len(posted_movie.data)
    code, status, body, _ = altmount.curl(imported_movie, f"{size + 10}-{size + 20}")
    assert status == 416
    assert posted_movie.data[:16] not in body
