"""Tests for altmount.nzb.subject: file names from Usenet subjects."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from altmount.nzb.subject import MAX_NAME_BYTES, filename_from_subject, safe_basename


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ('"name.mkv" yEnc (1/64)', "name.mkv"),
        ('[01/10] - "name.part01.rar" yEnc (1/100)', "name.part01.rar"),
        ("name.mkv (1/64)", "name.mkv"),
        ("Re: name.mkv yEnc", "name.mkv"),
        ('[PRiVATE]-[WtFnZb]-[name.mkv]-[1/5] - "" yEnc 1 (1/1)', "name.mkv"),
        ('[PRiVATE]-[WtFnZb]-[Show/S01E01.mkv]-[1/5] - "" yEnc 1 (1/1)', "S01E01.mkv"),
        ("My Movie 2020.mkv yEnc (01/99)", "My Movie 2020.mkv"),
        (
            'Release.Name [3/9] - "Release.Name.vol03+04.par2" yEnc (1/2)',
            "Release.Name.vol03+04.par2",
        ),
        ('(DVD Shrink.ss) [1/1] - "DVD Shrink.ss.rar" yEnc', "DVD Shrink.ss.rar"),
        ('"a8f3c1d9e2b7" yEnc (1/200)', "a8f3c1d9e2b7"),
        ("no file name here", ""),
        ("", ""),
        ('"" yEnc (1/1)', ""),
    ],
)
def test_filename_from_subject(subject: str, expected: str) -> None:
    """Common posting styles yield the posted file name, or "" when there is none."""
    assert filename_from_subject(subject) == expected


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ('"../../etc/passwd" yEnc (1/1)', "passwd"),
        ('"/abs/path/movie.mkv" yEnc (1/1)', "movie.mkv"),
        ('"C:\\\\Users\\\\x\\\\movie.mkv" yEnc (1/1)', "movie.mkv"),
        ('".." yEnc (1/1)', ""),
        ('"movie\x00.mkv" yEnc (1/1)', "movie.mkv"),
        ('"bad\x1b[31mname.mkv" yEnc (1/1)', "bad[31mname.mkv"),
    ],
)
def test_hostile_names_become_safe(subject: str, expected: str) -> None:
    """Directory parts, `..`, NUL and control characters never reach the result."""
    assert filename_from_subject(subject) == expected


def test_long_name_is_capped_keeping_extension() -> None:
    """A name over 255 bytes of UTF-8 is cut on a character boundary, extension kept."""
    name = "é" * 300 + ".mkv"
    result = filename_from_subject(f'"{name}" yEnc (1/1)')
    assert len(result.encode("utf-8")) <= MAX_NAME_BYTES
    assert result.endswith(".mkv")
    assert result.startswith("éé")


@pytest.mark.parametrize("unit", ["a", "a.", " ", "a ", "[a", "a.aaaaaaa", "(1", "-", '"'])
def test_long_subjects_take_linear_time(unit: str) -> None:
    """A 4 KiB hostile subject is scanned in milliseconds, not quadratic time."""
    subject = (unit * 4096)[:4096]
    start = time.perf_counter()
    filename_from_subject(subject)
    assert time.perf_counter() - start < 0.05


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_subject_gives_a_safe_name(subject: str) -> None:
    """Whatever the subject, the result is "" or one clean path component."""
    name = filename_from_subject(subject)
    assert name == safe_basename(name)
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert name not in (".", "..")
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
