"""Import planning: safe names, release paths, and segment tables from yEnc headers."""

from __future__ import annotations

import numpy as np
import pytest

from altmount.errors import ImportFailed
from altmount.importer.layout import (
    PartHeader,
    category_folder,
    dedupe_names,
    is_allowed,
    name_password,
    release_dir,
    release_name,
    safe_name,
    table_from_parts,
    uniform_table,
)

IDS = [f"m{i}@x" for i in range(4)]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("movie.mkv", "movie.mkv"),
        ("../../etc/passwd", "passwd"),
        ("/abs/path/a.mkv", "a.mkv"),
        ("dir\\evil.mkv", "evil.mkv"),
        ("nul\x00byte.mkv", "nul_byte.mkv"),
        ("..", "fallback"),
        ("", "fallback"),
        ("  .hidden.  ", "hidden"),
    ],
)
def test_safe_name(raw, expected):
    """Names are reduced to one harmless path component."""
    assert safe_name(raw, "fallback") == expected


def test_safe_name_caps_length_on_utf8_boundary():
    """A 10 KB name is cut to 255 bytes without splitting a UTF-8 character."""
    name = safe_name("é" * 5000, "x")
    assert len(name.encode()) <= 255
    name.encode().decode()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Show.S01{{pa55}}.nzb", ("Show.S01.nzb", "pa55")),
        ("Movie {{p w}}", ("Movie ", "p w")),
        ("{{only}}.nzb", (".nzb", "only")),
        ("plain.nzb", ("plain.nzb", "")),
        ("empty{{}}.nzb", ("empty{{}}.nzb", "")),
    ],
)
def test_name_password(name, expected):
    """`{{password}}` in an NZB name is split off; names without one are unchanged."""
    assert name_password(name) == expected


def test_release_name_drops_the_password():
    """The release folder never shows the password."""
    assert release_name("Show.S01{{pa55}}.nzb", None) == "Show.S01"


def test_release_name_prefers_meta_name():
    """The NZB's meta name wins over its file name."""
    assert release_name("a/b/Some.Release.nzb", None) == "Some.Release"
    assert release_name("x.nzb.gz", "Real Name") == "Real Name"


def test_release_name_from_file_as_sabnzbd_names_jobs():
    """With from_file the NZB's file name names the release, as SABnzbd names a job; the
    meta name only stands in for an empty stem."""
    name = release_name("Shōgun.2024.S01E01.nzb.gz", "Real Name", from_file=True)
    assert name == "Shōgun.2024.S01E01"
    assert release_name(".nzb", "Real Name", from_file=True) == "Real Name"


def test_release_dir():
    """Release folders live at /<complete_dir>/<category dir>/<release>."""
    assert release_dir("/complete", "movies", "Rel") == "/complete/movies/Rel"
    assert release_dir("/", "../tv", "Rel") == "/tv/Rel"


def test_release_dir_keeps_every_component_of_a_category_dir():
    """A category dir such as `tv/hd` is the folder used, not just its last component."""
    assert release_dir("/complete", "tv/hd", "Rel") == "/complete/tv/hd/Rel"
    assert category_folder("tv//hd/") == "tv/hd"
    assert category_folder("/../") == "complete"


def test_is_allowed():
    """The extension allow-list is case-insensitive; an empty list allows everything."""
    assert is_allowed("A.MKV", [".mkv"])
    assert is_allowed("a.mkv", ["mkv"])
    assert not is_allowed("a.nfo", [".mkv"])
    assert is_allowed("a.nfo", [])


def test_dedupe_names_is_deterministic():
    """Colliding names get numbered suffixes in input order."""
    assert dedupe_names(["a.mkv", "A.mkv", "b", "b"]) == ["a.mkv", "A (2).mkv", "b", "b (2)"]


def test_uniform_table_from_first_and_last():
    """Two headers fix the offsets of every segment of an evenly cut file."""
    table = uniform_table("f", IDS, PartHeader("f", 350, 0, 100), PartHeader("f", 350, 300, 350))
    assert table is not None
    assert list(table.offsets) == [0, 100, 200, 300, 350]
    assert list(table.part_begins) == [0, 100, 200, 300]


def test_uniform_table_single_segment():
    """A one-article file needs only its own header."""
    table = uniform_table("f", IDS[:1], PartHeader("f", 50, 0, 50), None)
    assert list(table.offsets) == [0, 50]


def test_uniform_table_detects_uneven_parts():
    """A last part that does not sit where even cutting puts it asks for all headers."""
    assert (
        uniform_table("f", IDS, PartHeader("f", 350, 0, 100), PartHeader("f", 350, 290, 350))
        is None
    )


def test_uniform_table_rejects_incomplete_nzb():
    """Fewer segments than the header implies is a clear error."""
    with pytest.raises(ImportFailed, match="NZB lists 2 segments but the yEnc header implies 4"):
        uniform_table("f", IDS[:2], PartHeader("f", 350, 0, 100), PartHeader("f", 350, 300, 350))


def test_uniform_table_rejects_mixed_files():
    """First and last articles of different files are caught."""
    with pytest.raises(ImportFailed, match="disagree on the file size"):
        uniform_table("f", IDS, PartHeader("f", 350, 0, 100), PartHeader("g", 999, 300, 350))


def test_table_from_parts_sorts_and_checks_coverage():
    """Every header given: offsets follow the headers, whatever the NZB order."""
    parts = [
        PartHeader("f", 250, 100, 180),
        PartHeader("f", 250, 0, 100),
        PartHeader("f", 250, 180, 250),
    ]
    table = table_from_parts("f", ["b", "a", "c"], parts)
    assert table.message_ids == ("a", "b", "c")
    assert np.array_equal(table.offsets, [0, 100, 180, 250])


def test_table_from_parts_gap_is_an_error():
    """A hole between articles means a segment is missing from the NZB."""
    parts = [PartHeader("f", 250, 0, 100), PartHeader("f", 250, 180, 250)]
    with pytest.raises(ImportFailed, match="bytes 100-180 are in no article"):
        table_from_parts("f", ["a", "c"], parts)


def test_safe_name_keeps_the_extension_of_a_long_name():
    """A 10 KB name is cut in its stem so it keeps its extension."""
    name = safe_name("x" * 10_000 + ".mkv", "f")
    assert name == "x" * 251 + ".mkv"
