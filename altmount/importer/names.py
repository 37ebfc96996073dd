"""Naming posted files, obfuscated or not (no I/O).

A file's name comes from, in order of trust: its PAR2 FileDesc packet (matched
by the MD5 of the first 16 KiB and the size), the yEnc header name when it has
an extension we know, the subject's name likewise, and finally the magic bytes
of its first article for the extension (kept on whatever stem the post gave).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

from altmount.importer.layout import MAX_NAME_BYTES, safe_name
from altmount.importer.magic import MAGIC_PREFIX, sniff_extension
from altmount.importer.pipeline import Candidate, Head, ImportFile
from altmount.par2 import MAGIC as PAR2_MAGIC
from altmount.par2 import Par2Set

__all__ = [
    "KNOWN_EXTENSIONS",
    "head_of",
    "has_known_extension",
    "is_par2",
    "match_par2",
    "choose_name",
]

#: Extensions a real release file has; obfuscated stems ("a8f3e2c9d1") have none of these.
KNOWN_EXTENSIONS = frozenset(
    ".mkv .mp4 .m4v .avi .mov .wmv .webm .mpg .mpeg .m2ts .mts .ts .vob .iso .img .flv "
    ".mp3 .flac .m4a .m4b .aac .ac3 .dts .wav .ogg .opus .wma "
    ".rar .7z .zip .par2 .sfv .md5 .nfo .nzb .txt .srr .srt .sub .idx .ass .ssa .jpg "
    ".jpeg .png .gif .nfo .epub .pdf .cbz .cbr .exe".split()
)
#: Split archive volumes: old-style RAR (.r00, .s01), 7z/zip/HJSplit parts (.001).
_VOLUME = re.compile(r"\.(?:[rs]\d{2}|\d{3})$", re.IGNORECASE)
_PAR2_NAME = re.compile(r"\.par2$", re.IGNORECASE)
#: PAR2's second hash covers this much of the file start.
HASH_16K = 16 * 1024


def head_of(data: bytes, whole_file: bool) -> Head:
    """The small summary of a first article's decoded data the pipeline keeps.

    `whole_file` is True when the article is the whole file (so a short one still
    gives the file's 16 KiB hash).
    """
    md5 = hashlib.md5(data[:HASH_16K]).digest() if len(data) >= HASH_16K or whole_file else None
    keep = HASH_16K if data.startswith(PAR2_MAGIC) else MAGIC_PREFIX
    return Head(md5, bytes(data[:keep]))


def has_known_extension(name: str, extra: Iterable[str] = ()) -> bool:
    """True when the name ends in an extension a real release file has."""
    lower = name.lower()
    _, dot, ext = lower.rpartition(".")
    if not dot or not ext:
        return False
    extras = {e.lower() if e.startswith(".") else "." + e.lower() for e in extra}
    return "." + ext in KNOWN_EXTENSIONS or "." + ext in extras or bool(_VOLUME.search(lower))


def is_par2(file: ImportFile) -> bool:
    """True for a PAR2 file, by name (yEnc or subject) or by its first bytes."""
    return (
        file.head.prefix.startswith(PAR2_MAGIC)
        or bool(_PAR2_NAME.search(file.first.name))
        or bool(_PAR2_NAME.search(file.nzb_file.filename))
    )


def match_par2(files: Sequence[ImportFile], par2: Par2Set) -> dict[int, str]:
    """Names from PAR2 FileDesc packets for the files they describe, by `ImportFile.index`.

    A file matches a description with the same size and 16 KiB MD5. When the
    first article was too short for that hash, a size that only one file and
    one description share is taken as the match.
    """
    by_hash: dict[tuple[bytes, int], list[str]] = {}
    by_size: dict[int, list[str]] = {}
    for described in par2.files:
        name = safe_name(described.name, "")
        if name:
            by_hash.setdefault((described.md5_16k, described.size), []).append(name)
            by_size.setdefault(described.size, []).append(name)
    sizes: dict[int, int] = {}
    for file in files:
        sizes[file.table.size] = sizes.get(file.table.size, 0) + 1
    names: dict[int, str] = {}
    for file in files:
        size = file.table.size
        if file.head.md5_16k is not None:
            candidates = by_hash.get((file.head.md5_16k, size))
            if candidates:
                # Identical files share a hash; hand their names out in order.
                names[file.index] = candidates.pop(0)
        elif sizes[size] == 1 and len(by_size.get(size, ())) == 1:
            names[file.index] = by_size[size][0]
    return names


def choose_name(
    file: ImportFile, par2_name: str | None, extra_extensions: Sequence[str]
) -> Candidate:
    """The candidate for one file, named by the most trusted source that has a name."""
    fallback = f"file{file.index + 1}"
    yenc = safe_name(file.first.name, "")
    subject = safe_name(file.nzb_file.filename, "")
    if par2_name:
        return Candidate(par2_name, file.table, "par2")
    for name, origin in ((yenc, "yenc"), (subject, "subject")):
        if name and has_known_extension(name, extra_extensions):
            return Candidate(name, file.table, origin)
    stem = yenc or subject or fallback
    extension = sniff_extension(file.head.prefix)
    if extension:
        if not stem.lower().endswith(extension):
            stem = safe_name(stem, fallback, MAX_NAME_BYTES - len(extension)) + extension
        return Candidate(stem, file.table, "magic")
    return Candidate(stem, file.table, "yenc" if yenc else "subject" if subject else "index")
