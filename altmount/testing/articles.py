"""Make Usenet releases in memory: yEnc articles and the NZB that lists them.

Used by the fake NNTP server, the demo provider, tests and benchmarks. No I/O.
The articles are what a poster such as nyuu sends: `=ybegin`/`=ypart`/`=yend`
framing around CRLF-wrapped yEnc lines, dot-stuffed for NNTP (RFC 3977 3.1.1).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

import sabyenc3

__all__ = [
    "DEFAULT_ARTICLE_SIZE",
    "PostedFile",
    "Release",
    "dot_stuff",
    "yenc_article",
    "post_release",
    "uneven_sizes",
    "build_nzb",
]

#: nyuu's default article size; what most real posts use.
DEFAULT_ARTICLE_SIZE = 716_800
NZB_NAMESPACE = "http://www.newzbin.com/DTD/2003/nzb"


def dot_stuff(body: bytes) -> bytes:
    """Double every '.' that starts a line, as NNTP requires on the wire."""
    stuffed = body.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed


def yenc_article(
    data: bytes,
    *,
    name: str,
    part: int,
    total_parts: int,
    begin: int,
    file_size: int,
    line_length: int = 128,
) -> bytes:
    """Return the dot-stuffed NNTP body of one yEnc part holding `data`.

    `begin` is the 0-based offset of `data` in the posted file.
    """
    encoded, crc = sabyenc3.encode(data)
    if line_length != 128:
        raise ValueError("sabyenc3 wraps lines at 128 characters; other widths are not supported")
    if total_parts > 1:
        head = (
            f"=ybegin part={part} total={total_parts} line={line_length} "
            f"size={file_size} name={name}\r\n"
            f"=ypart begin={begin + 1} end={begin + len(data)}\r\n"
        )
        tail = f"\r\n=yend size={len(data)} part={part} pcrc32={crc:08x}\r\n"
    else:
        head = f"=ybegin line={line_length} size={file_size} name={name}\r\n"
        tail = f"\r\n=yend size={len(data)} crc32={crc:08x}\r\n"
    return dot_stuff(head.encode() + encoded + tail.encode())


@dataclass(frozen=True, slots=True)
class PostedFile:
    """One file of a release as posted: its name, bytes, subject and article ids."""

    name: str
    data: bytes
    subject: str
    message_ids: tuple[str, ...]
    encoded_sizes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Release:
    """A posted release: the files, the NZB bytes and every article body by message-id."""

    files: tuple[PostedFile, ...]
    nzb: bytes
    articles: Mapping[str, bytes] = field(repr=False)


def _message_id(name: str, part: int, salt: str) -> str:
    digest = hashlib.sha1(f"{salt}\0{name}".encode()).hexdigest()[:20]
    return f"{digest}.{part}@altmount.test"


def uneven_sizes(total: int, low: int, high: int, seed: int = 0) -> list[int]:
    """Part sizes between `low` and `high` (the last may be shorter) summing to `total`,
    as posters that cut unevenly produce."""
    if not 0 < low <= high:
        raise ValueError("need 0 < low <= high")
    rng = random.Random(seed)
    sizes: list[int] = []
    left = total
    while left > 0:
        size = min(left, rng.randint(low, high))
        sizes.append(size)
        left -= size
    return sizes


def post_release(
    files: Mapping[str, bytes],
    *,
    article_size: int = DEFAULT_ARTICLE_SIZE,
    part_sizes: Mapping[str, Sequence[int]] | None = None,
    group: str = "alt.binaries.test",
    poster: str = "altmount <altmount@altmount.test>",
    subjects: Mapping[str, str] | None = None,
    meta: Mapping[str, str] | None = None,
    salt: str = "",
) -> Release:
    """Cut each file into yEnc articles and build the NZB listing them.

    `subjects` overrides the subject per file name (e.g. obfuscated posts);
    by default it is nyuu's `"name" yEnc (1/N)` style. `part_sizes` cuts a file
    into parts of these decoded sizes instead of `article_size` each (an uneven
    post; see `uneven_sizes`); they must add up to the file's size.
    """
    if article_size <= 0:
        raise ValueError("article_size must be positive")
    articles: dict[str, bytes] = {}
    posted: list[PostedFile] = []
    for name, data in files.items():
        cuts = list((part_sizes or {}).get(name, ()))
        if cuts and (sum(cuts) != len(data) or min(cuts) <= 0):
            raise ValueError(f"part sizes of {name} must be positive and add up to {len(data)}")
        if not cuts:
            cuts = [article_size] * max(1, -(-len(data) // article_size))
        total_parts = len(cuts)
        ids: list[str] = []
        sizes: list[int] = []
        begin = 0
        for index in range(total_parts):
            chunk = data[begin : begin + cuts[index]]
            body = yenc_article(
                chunk,
                name=name,
                part=index + 1,
                total_parts=total_parts,
                begin=begin,
                file_size=len(data),
            )
            message_id = _message_id(name, index + 1, salt)
            articles[message_id] = body
            ids.append(message_id)
            sizes.append(len(body))
            begin += len(chunk)
        subject = (subjects or {}).get(name, f'"{name}" yEnc (1/{total_parts})')
        posted.append(PostedFile(name, data, subject, tuple(ids), tuple(sizes)))
    nzb = build_nzb(posted, group=group, poster=poster, meta=meta or {})
    return Release(tuple(posted), nzb, articles)


def build_nzb(
    files: Iterable[PostedFile],
    *,
    group: str = "alt.binaries.test",
    poster: str = "altmount <altmount@altmount.test>",
    meta: Mapping[str, str] | None = None,
    date: int = 1_700_000_000,
) -> bytes:
    """Serialise posted files as an NZB 1.1 document (the shape nyuu writes)."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<!DOCTYPE nzb PUBLIC "-//newzBin//DTD NZB 1.1//EN" '
        '"http://www.newzbin.com/DTD/nzb/nzb-1.1.dtd">',
        f'<nzb xmlns="{NZB_NAMESPACE}">',
    ]
    if meta:
        lines.append("  <head>")
        for key, value in meta.items():
            lines.append(f"    <meta type={quoteattr(key)}>{escape(value)}</meta>")
        lines.append("  </head>")
    for posted in files:
        lines.append(
            f"  <file poster={quoteattr(poster)} date=\"{date}\" subject={quoteattr(posted.subject)}>"
        )
        lines.append(f"    <groups><group>{escape(group)}</group></groups>")
        lines.append("    <segments>")
        for number, (message_id, size) in enumerate(
            zip(posted.message_ids, posted.encoded_sizes, strict=True), start=1
        ):
            lines.append(
                f'      <segment bytes="{size}" number="{number}">{escape(message_id)}</segment>'
            )
        lines.append("    </segments>")
        lines.append("  </file>")
    lines.append("</nzb>")
    return ("\n".join(lines) + "\n").encode()
