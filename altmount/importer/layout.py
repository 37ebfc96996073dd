"""Pure import planning: names, virtual paths and segment tables. No I/O.

A posted file's decoded size and part size come from the yEnc headers of its
first and last articles. Most posters cut every part but the last to the same
size, so those two articles fix the whole offset table. When they show uneven
parts, `sparse_table` knows only the offsets those two headers give and the rest
is learned when the file is read (stream/locate.py); a file a later import stage
must read (an archive volume) is read whole instead (`table_from_parts`).
"""

from __future__ import annotations

import posixpath
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from altmount.errors import ImportFailed
from altmount.metadata import SegmentTable

__all__ = [
    "PartHeader",
    "safe_name",
    "name_password",
    "release_name",
    "release_dir",
    "category_folder",
    "uniform_table",
    "sparse_table",
    "missing_numbers",
    "table_from_parts",
    "is_allowed",
    "dedupe_names",
]

MAX_NAME_BYTES = 255
#: LMDB keys hold at most 511 bytes; a release folder this short leaves room for
#: the complete dir, the category and a full 255-byte file name.
MAX_RELEASE_BYTES = 160
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")
_NZB_SUFFIX = re.compile(r"\.nzb(\.gz)?$", re.IGNORECASE)
_NAME_PASSWORD = re.compile(r"\{\{(.+?)\}\}")


@dataclass(frozen=True, slots=True)
class PartHeader:
    """What an article's yEnc header says about its place in the posted file."""

    name: str
    total: int
    begin: int
    end: int
    #: =ybegin part= (1-based), 0 when the header has none.
    part: int = 0


def safe_name(name: str, fallback: str, max_bytes: int = MAX_NAME_BYTES) -> str:
    """A file or directory name that cannot escape its folder or confuse a client."""
    name = unicodedata.normalize("NFC", name)
    name = posixpath.basename(name.replace("\\", "/"))
    name = _UNSAFE.sub("_", name).strip().strip(".")
    if not name or name in {".", ".."}:
        return fallback
    encoded = name.encode()
    if len(encoded) <= max_bytes:
        return name
    # Cut the stem, not the extension: "<10 KB of junk>.mkv" must stay an .mkv.
    stem, dot, ext = name.rpartition(".")
    suffix = (dot + ext).encode() if stem and len(ext.encode()) <= 16 else b""
    head = encoded[: max_bytes - len(suffix)].decode(errors="ignore").rstrip(" .")
    return head + suffix.decode() if head else fallback


def name_password(nzb_filename: str) -> tuple[str, str]:
    """(file name without it, password) for posters' `Name{{password}}.nzb` convention
    (SABnzbd's too); the password is "" when the name carries none."""
    match = _NAME_PASSWORD.search(nzb_filename)
    if match is None:
        return nzb_filename, ""
    return nzb_filename[: match.start()] + nzb_filename[match.end() :], match.group(1)


def release_name(nzb_filename: str, meta_name: str | None, *, from_file: bool = False) -> str:
    """The release folder name: the NZB's <meta type="name">, else its file name stem
    (without a `{{password}}`).

    `from_file` names it after the file name first, as SABnzbd names a job: Sonarr
    and Radarr look for the folder named like the job they sent (`nzbname` or the
    uploaded file's name); the meta name then only stands in for an empty stem.
    """
    stem = _NZB_SUFFIX.sub("", posixpath.basename(nzb_filename.replace("\\", "/")))
    stem = name_password(stem)[0].strip()
    first, second = (stem, meta_name) if from_file else (meta_name, stem)
    return safe_name(first or second or "", "release", MAX_RELEASE_BYTES)


def category_folder(category_dir: str) -> str:
    """A category `dir` as the relative folder it names under complete_dir: `tv/hd`
    stays `tv/hd` (each component made safe; empty, `.` and `..` ones dropped)."""
    parts = [
        safe_name(part, "complete", 64)
        for part in category_dir.replace("\\", "/").split("/")
        if part.strip() and part.strip() not in {".", ".."}
    ]
    return "/".join(parts) or "complete"


def release_dir(complete_dir: str, category_dir: str, release: str) -> str:
    """`/<complete_dir>/<category dir>/<release>` as a normalised virtual path."""
    parts = [p for p in complete_dir.split("/") if p and p not in {".", ".."}]
    parts += [category_folder(category_dir), release]
    return "/" + "/".join(parts)


def is_allowed(name: str, allowed_extensions: Sequence[str]) -> bool:
    """True when the name's extension is in the allow-list (an empty list allows all)."""
    if not allowed_extensions:
        return True
    lower = name.lower()
    return any(
        lower.endswith(ext.lower() if ext.startswith(".") else "." + ext.lower())
        for ext in allowed_extensions
    )


def dedupe_names(names: Sequence[str]) -> list[str]:
    """Make names unique deterministically: the second `a.mkv` becomes `a (2).mkv`."""
    seen: dict[str, int] = {}
    result = []
    for name in names:
        key = name.lower()
        count = seen.get(key, 0) + 1
        seen[key] = count
        if count > 1:
            stem, dot, ext = name.rpartition(".")
            name = f"{stem} ({count}).{ext}" if dot and stem else f"{name} ({count})"
            seen[name.lower()] = 1
        result.append(name)
    return result


def uniform_table(
    file_label: str,
    message_ids: Sequence[str],
    first: PartHeader,
    last: PartHeader | None,
    groups: Sequence[str] = (),
) -> SegmentTable | None:
    """The segment table when every part but the last has the first part's size.

    Returns None when the parts are uneven (then `sparse_table` or
    `table_from_parts`); raises ImportFailed when the headers cannot describe
    this file with these segments (segments missing from the NZB, mixed files).
    """
    count = len(message_ids)
    part_size = first.end - first.begin
    if first.begin != 0:
        raise ImportFailed(
            f"{file_label}: first article starts at byte {first.begin}, not 0 "
            "(segments out of order or the first one is missing)"
        )
    if part_size <= 0 or first.total <= 0:
        raise ImportFailed(f"{file_label}: yEnc header announces an empty file")
    expected = -(-first.total // part_size)
    if count == 1:
        if first.end != first.total:
            raise ImportFailed(
                f"{file_label}: NZB lists 1 segment but the file is "
                f"{first.total} bytes and the part holds {part_size}"
            )
        return SegmentTable.uniform(tuple(message_ids), part_size, first.total, tuple(groups))
    if last is None:
        raise ImportFailed(f"{file_label}: last article header missing")
    if last.total != first.total:
        raise ImportFailed(
            f"{file_label}: first and last articles disagree on the file size "
            f"({first.total} vs {last.total}); they belong to different files"
        )
    evenly_cut = last.begin == (count - 1) * part_size
    implied = last.part if last.part > count else expected
    if (last.part > count) or (
        implied > count and (evenly_cut or (count == 2 and last.begin != first.end))
    ):
        raise ImportFailed(
            f"{file_label}: NZB lists {count} segments but the yEnc header "
            f"implies {implied}; the NZB is incomplete"
        )
    if expected == count and evenly_cut and last.end == first.total:
        return SegmentTable.uniform(tuple(message_ids), part_size, first.total, tuple(groups))
    return None


def sparse_table(
    file_label: str,
    message_ids: Sequence[str],
    first: PartHeader,
    last: PartHeader,
    groups: Sequence[str] = (),
) -> SegmentTable:
    """The table of a file of uneven parts from its first and last headers alone.

    The offsets of the middle segments are estimates until the file is read. Call
    it after `uniform_table` returned None for the same headers.
    """
    count = len(message_ids)
    if last.end != first.total:
        raise ImportFailed(f"{file_label}: its articles end at byte {last.end} of {first.total}")
    if last.begin < first.end + (count - 2) or (count == 2 and last.begin != first.end):
        raise ImportFailed(
            f"{file_label}: the first article ends at byte {first.end} and the last "
            f"(segment {count}) starts at byte {last.begin}: {count} segments cannot "
            "hold those bytes (articles out of order or from another file)"
        )
    points = {0: 0, 1: first.end, count - 1: last.begin, count: first.total}
    return SegmentTable.sparse(tuple(message_ids), points, tuple(groups))


def missing_numbers(numbers: Sequence[int]) -> list[int]:
    """Segment numbers absent between the lowest and highest of the NZB's (sorted)."""
    if not numbers or numbers[-1] - numbers[0] + 1 == len(numbers):
        return []
    present = set(numbers)
    return [n for n in range(numbers[0], numbers[-1] + 1) if n not in present]


def table_from_parts(
    file_label: str,
    message_ids: Sequence[str],
    parts: Sequence[PartHeader],
    groups: Sequence[str] = (),
) -> SegmentTable:
    """The segment table from every article's header (parts of uneven size)."""
    order = sorted(range(len(parts)), key=lambda i: parts[i].begin)
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    position = 0
    for rank, index in enumerate(order):
        part = parts[index]
        if part.begin != position:
            raise ImportFailed(
                f"{file_label}: bytes {position}-{part.begin} are in no article "
                "(a segment is missing from the NZB)"
                if part.begin > position
                else f"{file_label}: articles overlap at byte {part.begin}"
            )
        position = part.end
        offsets[rank + 1] = position
    total = parts[0].total
    if position != total:
        raise ImportFailed(f"{file_label}: articles cover {position} of {total} bytes")
    ids = tuple(message_ids[i] for i in order)
    begins = offsets[:-1].copy()
    return SegmentTable(ids, offsets, np.zeros(len(parts), dtype=np.int64), begins, tuple(groups))
