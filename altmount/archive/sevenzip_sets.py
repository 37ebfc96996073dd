"""Which posted files are 7z archives, and how split volumes make sets (no I/O).

`7z a -v` cuts one archive into plain byte pieces `<stem>.7z.001`, `.002` …:
the pieces carry no ordinal of their own and only the first holds the 7z
signature, so a split set is grouped and ordered by name. A file starting with
the signature whose name says nothing is an archive of its own; whether a set
is whole is known once its signature header is read (sevenzip_scan.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from altmount.archive.sevenzip_model import SIGNATURE

__all__ = ["MAX_VOLUMES", "PostedFile", "SevenZipSet", "find_sets"]

#: `.7z.NNN` goes to 999 with 7-Zip's default width; a set claiming more is not one.
MAX_VOLUMES = 10_000

_SPLIT = re.compile(r"^(?P<stem>.+\.7z)\.(?P<n>\d{3,5})$", re.IGNORECASE)
_SINGLE = re.compile(r"^.+\.7z$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class PostedFile:
    """A posted file as the grouping sees it: a key, its name, its first bytes."""

    key: int
    name: str
    head: bytes


@dataclass(frozen=True, slots=True)
class SevenZipSet:
    """One 7z archive: its name, its volumes' keys in order, every key it was posted under.

    `posted` adds reposted copies of a volume (only the first is read); none of
    them is exposed as a file. `problem` says why the set cannot be read (a
    volume missing, no signature).
    """

    name: str
    volumes: tuple[int, ...]
    posted: tuple[int, ...]
    problem: str | None = None


def find_sets(files: Sequence[PostedFile]) -> list[SevenZipSet]:
    """The 7z sets among the posted files: single archives, then split sets, in posting order.

    A split set is named as its lowest-numbered piece is, without the number.
    """
    sets: list[SevenZipSet] = []
    splits: dict[str, list[tuple[int, PostedFile]]] = {}
    for file in files:
        split = _SPLIT.match(file.name)
        if split is not None:
            splits.setdefault(split["stem"].lower(), []).append((int(split["n"]), file))
        elif file.head.startswith(SIGNATURE) or _SINGLE.match(file.name):
            problem = None if file.head.startswith(SIGNATURE) else _no_signature(file.name)
            sets.append(SevenZipSet(file.name, (file.key,), (file.key,), problem))
    for numbered in splits.values():
        numbered.sort(key=lambda item: item[0])
        sets.append(_split_set(numbered[0][1].name.rsplit(".", 1)[0], numbered))
    return sets


def _split_set(name: str, numbered: list[tuple[int, PostedFile]]) -> SevenZipSet:
    """A split set from its volumes sorted by number (a repost keeps its first copy)."""
    posted = tuple(file.key for _, file in numbered)
    first_copies: dict[int, PostedFile] = {}
    for number, file in numbered:
        first_copies.setdefault(number, file)
    volumes = tuple(file.key for file in first_copies.values())
    for expected, number in enumerate(first_copies, start=1):
        if number != expected:
            problem = (
                f"volume {expected} of {name} missing"
                if number <= MAX_VOLUMES
                else f"{name}: volume number {number} is absurd"
            )
            return SevenZipSet(name, volumes, posted, problem)
    first = first_copies[1]
    if not first.head.startswith(SIGNATURE):
        return SevenZipSet(name, volumes, posted, _no_signature(first.name))
    return SevenZipSet(name, volumes, posted)


def _no_signature(name: str) -> str:
    return f"{name}: damaged 7z archive: no 7z signature at its start"
