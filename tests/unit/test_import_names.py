"""Pure naming and selection helpers: magic bytes, extensions, PAR2 matching, samples."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from altmount.importer.layout import PartHeader
from altmount.importer.magic import sniff_extension
from altmount.importer.names import choose_name, has_known_extension, head_of, match_par2
from altmount.importer.pipeline import Head, ImportFile
from altmount.importer.select import is_sample
from altmount.importer.validate import sample_indices
from altmount.metadata import SegmentTable
from altmount.nzb import NZBFile, NZBSegment
from altmount.par2 import Par2File, Par2Set

TS = bytes([0x47] + [0] * 187) * 5
M2TS = bytes([0, 0, 0, 0, 0x47] + [0] * 187) * 5


@pytest.mark.parametrize(
    ("head", "extension"),
    [
        (b"\x1a\x45\xdf\xa3\x42\x82\x88matroska", ".mkv"),
        (b"\x1a\x45\xdf\xa3\x42\x82\x84webm", ".webm"),
        (b"\0\0\0\x20ftypisom\0\0\x02\0", ".mp4"),
        (b"\0\0\0\x14ftypqt  ", ".mov"),
        (b"RIFF\0\0\0\0AVI LIST", ".avi"),
        (b"RIFF\0\0\0\0WAVEfmt ", ".wav"),
        (TS, ".ts"),
        (M2TS, ".m2ts"),
        (b"\0\0\1\xba\x44", ".mpg"),
        (b"fLaC\0\0\0\x22", ".flac"),
        (b"ID3\x04\0", ".mp3"),
        (b"\xff\xfb\x90\x64", ".mp3"),
        (b"Rar!\x1a\x07\x01\x00", ".rar"),
        (b"Rar!\x1a\x07\x00", ".rar"),
        (b"7z\xbc\xaf\x27\x1c", ".7z"),
        (b"PAR2\0PKT", ".par2"),
        (b"OggS\0\2", ".ogg"),
        (bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"), ".wmv"),
    ],
)
def test_sniff_extension(head, extension):
    """Each container's magic number gives its extension."""
    assert sniff_extension(head) == extension


@pytest.mark.parametrize("head", [b"", b"random text", b"\x47" + b"\0" * 200, b"\xff\xf1\x50"])
def test_sniff_unknown(head):
    """Text, one lone TS sync byte and AAC ADTS are not guessed."""
    assert sniff_extension(head) is None


@pytest.mark.parametrize(
    ("name", "known"),
    [
        ("a.mkv", True),
        ("A.MKV", True),
        ("x.part01.rar", True),
        ("x.r00", True),
        ("x.7z.001", True),
        ("x.vol03+04.par2", True),
        ("a8f3e2c9d1b7", False),
        ("abc.def123", False),
        ("trailing.", False),
        ("", False),
    ],
)
def test_has_known_extension(name, known):
    """Real release extensions are known; obfuscated stems are not."""
    assert has_known_extension(name) is known


def test_config_extensions_count_as_known():
    """An extension allowed in the config is plausible even if not in the built-in list."""
    assert has_known_extension("a.xyz", [".xyz"]) and has_known_extension("a.xyz", ["xyz"])


def test_head_of_short_article_of_a_bigger_file_has_no_hash():
    """A first article under 16 KiB of a larger file cannot give the 16 KiB hash."""
    assert head_of(b"x" * 100, whole_file=False).md5_16k is None
    assert head_of(b"x" * 100, whole_file=True).md5_16k == hashlib.md5(b"x" * 100).digest()
    assert len(head_of(b"PAR2\0PKT" + b"\0" * 20_000, False).prefix) == 16384
    assert len(head_of(b"y" * 20_000, False).prefix) == 1024


def posted(index: int, data: bytes, yenc: str = "", subject: str = "") -> ImportFile:
    """An ImportFile for `data` posted as one article."""
    nzb_file = NZBFile(subject, "p", 0, ("a.b",), (NZBSegment(1, 1, f"m{index}@x"),), subject)
    table = SegmentTable.uniform((f"m{index}@x",), len(data), len(data))
    return ImportFile(
        index,
        yenc or subject,
        nzb_file,
        PartHeader(yenc, len(data), 0, len(data)),
        table,
        head_of(data, True),
    )


def description(name: str, data: bytes) -> Par2File:
    """What a FileDesc packet records for `data`."""
    return Par2File(
        name.encode()[:16].ljust(16),
        hashlib.md5(data).digest(),
        hashlib.md5(data[:16384]).digest(),
        len(data),
        name,
    )


def test_match_par2_by_hash_and_size():
    """Files match descriptions by 16 KiB MD5 and size; identical files get names in order."""
    a, b = b"a" * 20_000, b"b" * 500
    files = [posted(0, a), posted(1, b), posted(2, a), posted(3, b"unknown")]
    par2 = Par2Set(
        b"s" * 16,
        None,
        (description("x/A.mkv", a), description("B.srt", b), description("A2.mkv", a)),
        "",
        0,
    )
    assert match_par2(files, par2) == {0: "A.mkv", 1: "B.srt", 2: "A2.mkv"}


def test_match_par2_by_unique_size_when_hash_unknown():
    """Without a 16 KiB hash a size that one file and one description share is the match."""
    files = [
        dataclasses.replace(posted(i, data), head=Head(None, data[:1024]))
        for i, data in enumerate([b"q" * 30_000, b"r" * 40_000, b"s" * 40_000])
    ]
    par2 = Par2Set(
        b"s" * 16,
        None,
        (
            description("Q.mkv", b"Q" * 30_000),
            description("R.mkv", b"R" * 40_000),
            description("S.mkv", b"S" * 40_000),
        ),
        "",
        0,
    )
    assert match_par2(files, par2) == {0: "Q.mkv"}


def test_choose_name_order_of_trust():
    """PAR2 beats yEnc beats subject beats magic bytes; the last resort is the stem."""
    mkv = b"\x1a\x45\xdf\xa3" + b"\0" * 100
    assert choose_name(posted(0, mkv, "y.mkv", "s.avi"), "p.mkv", ()).name == "p.mkv"
    assert choose_name(posted(0, mkv, "y.mkv", "s.avi"), None, ()).origin == "yenc"
    assert choose_name(posted(0, mkv, "0a1b2c", "s.avi"), None, ()).name == "s.avi"
    made = choose_name(posted(0, mkv, "0a1b2c", "9f9f"), None, ())
    assert (made.name, made.origin) == ("0a1b2c.mkv", "magic")
    assert choose_name(posted(4, b"?" * 10, "", ""), None, ()).name == "file5"


def test_magic_extension_fits_the_name_limit():
    """A 255-byte stem still gets its sniffed extension within 255 bytes."""
    made = choose_name(posted(0, b"fLaC" + b"\0" * 10, "s" * 255, ""), None, ())
    assert made.name.endswith(".flac") and len(made.name.encode()) <= 255


@pytest.mark.parametrize(
    ("name", "size", "largest", "sample"),
    [
        ("Movie.sample.mkv", 50 << 20, 8 << 30, True),
        ("Movie-SAMPLE.mkv", 300 << 20, 8 << 30, True),
        ("Movie.sample.mkv", 900 << 20, 8 << 30, False),
        ("Movie.mkv", 10 << 20, 8 << 30, False),
        ("sample.mkv", 10 << 20, 10 << 20, False),
    ],
)
def test_is_sample(name, size, largest, sample):
    """Samples are named so and small (< 5% of the largest or < 150 MB); never the largest."""
    assert is_sample(name, size, largest) is sample


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 100_000), st.floats(0, 100))
def test_sample_indices(count, percentage):
    """The sample holds first and last, is sorted and unique, and has the asked share."""
    indices = sample_indices(count, percentage)
    assert indices[0] == 0 and indices[-1] == count - 1
    assert indices == sorted(set(indices))
    assert len(indices) >= min(count, -(-count * percentage // 100))
    assert len(indices) <= max(min(count, 2), -(-count * percentage // 100))


def test_sample_indices_spread_evenly():
    """Ten percent of 100 segments are spread over the whole file."""
    assert sample_indices(100, 10) == [0, 11, 22, 33, 44, 55, 66, 77, 88, 99]
    assert sample_indices(0, 10) == []
