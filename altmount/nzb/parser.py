"""Streaming, hostile-input-safe NZB parser (no I/O).

`NZBParser` is fed bytes in any chunking and returns an `NZB` on `close()`;
`parse_nzb(data)` does both at once. It drives expat directly with handlers,
so no element tree is ever built and memory holds only the result.

NZBs come from indexers and users, so they are treated as hostile:

* DTD internal subsets and entity declarations are refused before expat can
  expand anything (billion laughs, external entities). Two layers: a byte scan
  for `<!ENTITY`, and expat handlers that fire on the DOCTYPE and on any entity
  declaration, whatever the document encoding. Parameter entities and external
  references are never fetched (expat has no fetcher and we install none).
* Size, nesting depth, segments per file, subject length and text lengths are
  bounded by the constants below.
* Message-ids and group names end up in NNTP commands, so anything but
  printable ASCII (CR/LF injection) is refused.
"""

from __future__ import annotations

import re
from typing import NoReturn
from xml.parsers import expat

from altmount.errors import NZBParseError
from altmount.nzb.model import NZB, NZBFile, NZBSegment
from altmount.nzb.subject import filename_from_subject

__all__ = [
    "parse_nzb",
    "NZBParser",
    "NZB_NAMESPACE",
    "MAX_NZB_BYTES",
    "MAX_DEPTH",
    "MAX_SEGMENTS_PER_FILE",
    "MAX_SUBJECT_BYTES",
    "MAX_TEXT_CHARS",
]

NZB_NAMESPACE = "http://www.newzbin.com/DTD/2003/nzb"

#: The largest NZB accepted. Big season packs run to ~20 MiB (about 200,000
#: segments); 64 MiB leaves room for those while capping parse time (~3 s) and
#: the memory of the parsed result (~150 MiB) for a hostile upload.
MAX_NZB_BYTES = 64 << 20
#: Real NZBs nest 4 deep (nzb/file/segments/segment); anything deeper is junk.
MAX_DEPTH = 32
#: 1,000,000 articles of ~700 KB is a 700 GB file: more is not a real post.
MAX_SEGMENTS_PER_FILE = 1_000_000
#: Usenet subjects are at most a few hundred bytes; 4 KiB is generous.
MAX_SUBJECT_BYTES = 4096
#: Text of one <segment>, <group> or <meta>; a message-id is at most 250 octets
#: (RFC 3977 section 3.6), padding whitespace included this is plenty.
MAX_TEXT_CHARS = 4096

_INTEGER = re.compile(r"[0-9]{1,18}")  # fits int64 for the segment tables
# Spaces and control characters would split or end an NNTP command.
_UNPRINTABLE = re.compile(r"[^\x21-\x7e]")
_ENTITY_DECL = b"<!ENTITY"


def parse_nzb(data: bytes) -> NZB:
    """Parse a whole NZB document; raise `NZBParseError` on anything wrong."""
    parser = NZBParser()
    parser.feed(data)
    return parser.close()


class NZBParser:
    """Incremental NZB parser: `feed()` bytes in any chunks, then `close()`.

    Every problem raises `NZBParseError` naming the line (and column for XML
    syntax errors); after an error the parser must be discarded.
    """

    def __init__(self, max_bytes: int = MAX_NZB_BYTES) -> None:
        self._max_bytes = max_bytes
        self._fed = 0
        self._tail = b""  # end of the previous chunk, so the scan sees split markers
        self._stack: list[str] = []
        self._files: list[NZBFile] = []
        self._meta: dict[str, list[str]] = {}
        self._empty_files = 0
        # State of the <file> being parsed.
        self._file_attrs: tuple[str, str, int] | None = None
        self._groups: list[str] = []
        self._segments: dict[int, NZBSegment] = {}
        self._segment_count = 0
        # Text collection for the <segment>/<group>/<meta> being parsed.
        self._target: str | None = None
        self._target_depth = 0
        self._text: list[str] = []
        self._text_len = 0
        self._segment_attrs: tuple[int, int] = (0, 0)
        self._meta_type = ""
        self._local_names: dict[str, str] = {}
        self._expat = self._make_expat()

    def _make_expat(self) -> expat.XMLParserType:
        parser = expat.ParserCreate(namespace_separator=" ")
        parser.buffer_text = True
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartDoctypeDeclHandler = self._on_doctype
        parser.EntityDeclHandler = self._on_entity_decl
        parser.UnparsedEntityDeclHandler = self._on_entity_decl
        parser.ExternalEntityRefHandler = self._on_external_ref
        parser.StartElementHandler = self._on_start
        parser.EndElementHandler = self._on_end
        parser.CharacterDataHandler = self._on_text
        return parser

    def feed(self, data: bytes) -> None:
        """Parse the next chunk of the document."""
        self._fed += len(data)
        if self._fed > self._max_bytes:
            limit = self._max_bytes
            shown = f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit} bytes"
            raise NZBParseError(f"NZB is larger than {shown}; refusing to parse it")
        keep = len(_ENTITY_DECL) - 1
        if _ENTITY_DECL in self._tail + data[:keep] or _ENTITY_DECL in data:
            raise NZBParseError("NZB declares XML entities (<!ENTITY); refused as unsafe")
        self._tail = data[-keep:] if len(data) >= keep else (self._tail + data)[-keep:]
        self._parse(data, final=False)

    def close(self) -> NZB:
        """Finish parsing and return the NZB."""
        if self._fed == 0:
            raise NZBParseError("NZB is empty")
        self._parse(b"", final=True)
        if not self._files:
            detail = (
                f"all {self._empty_files} <file> elements have no segments"
                if self._empty_files
                else "no <file> elements"
            )
            raise NZBParseError(f"NZB has no files ({detail})")
        meta = {kind: tuple(values) for kind, values in self._meta.items()}
        return NZB(files=tuple(self._files), meta=meta)

    def _parse(self, data: bytes, final: bool) -> None:
        try:
            self._expat.Parse(data, final)
        except expat.ExpatError as exc:
            message = expat.errors.messages[exc.code]
            raise NZBParseError(
                f"NZB line {exc.lineno}, column {exc.offset + 1}: {message}"
            ) from None
        except (LookupError, UnicodeError, ValueError) as exc:
            # pyexpat lets codec errors of a declared encoding escape as-is.
            raise NZBParseError(f"NZB cannot be decoded: {exc}") from None

    def _fail(self, message: str) -> NoReturn:
        raise NZBParseError(f"NZB line {self._expat.CurrentLineNumber}: {message}")

    # -- expat handlers: the DTD ------------------------------------------------

    def _on_doctype(
        self, name: str, sysid: str | None, pubid: str | None, has_internal_subset: bool
    ) -> None:
        if has_internal_subset:
            self._fail("DOCTYPE with an internal subset is refused as unsafe")

    def _on_entity_decl(self, name: str, *_args: object) -> None:
        self._fail(f"entity declaration {name!r} is refused as unsafe")

    def _on_external_ref(self, *_args: object) -> int:
        self._fail("external entity reference is refused as unsafe")

    # -- expat handlers: elements ----------------------------------------------

    def _on_start(self, name: str, attrs: dict[str, str]) -> None:
        local = self._local_names.get(name)
        if local is None:
            local = self._local_names[name] = _local_name(name)
        depth = len(self._stack)
        if depth >= MAX_DEPTH:
            self._fail(f"elements nested deeper than {MAX_DEPTH}")
        if depth == 0 and local != "nzb":
            self._fail(f"not an NZB: the root element is <{name}>, expected <nzb>")
        parent = self._stack[-1] if self._stack else ""
        self._stack.append(local)
        if self._target is not None:
            return
        if local == "file" and parent == "nzb":
            self._begin_file(attrs)
        elif self._file_attrs is not None and local == "segment" and parent == "segments":
            self._begin_segment(attrs)
            self._collect("segment")
        elif self._file_attrs is not None and local == "group" and parent == "groups":
            self._collect("group")
        elif local == "meta" and parent == "head":
            self._meta_type = attrs.get("type", "")
            self._collect("meta")

    def _on_end(self, name: str) -> None:
        local = self._stack.pop()
        if self._target is not None:
            if len(self._stack) != self._target_depth:
                return
            text = (self._text[0] if len(self._text) == 1 else "".join(self._text)).strip()
            self._target = None
            if local == "segment":
                self._end_segment(text)
            elif local == "group":
                self._end_group(text)
            elif self._meta_type:
                self._meta.setdefault(self._meta_type, []).append(text)
        elif local == "file" and self._file_attrs is not None and len(self._stack) == 1:
            self._end_file()

    def _on_text(self, data: str) -> None:
        if self._target is None:
            return
        self._text_len += len(data)
        if self._text_len > MAX_TEXT_CHARS:
            self._fail(f"<{self._target}> text longer than {MAX_TEXT_CHARS} characters")
        self._text.append(data)

    def _collect(self, target: str) -> None:
        self._target = target
        self._target_depth = len(self._stack) - 1
        self._text = []
        self._text_len = 0

    # -- building files ------------------------------------------------------------

    def _begin_file(self, attrs: dict[str, str]) -> None:
        subject = attrs.get("subject", "")
        if len(subject) > MAX_SUBJECT_BYTES or len(subject.encode("utf-8")) > MAX_SUBJECT_BYTES:
            self._fail(f"<file> subject longer than {MAX_SUBJECT_BYTES} bytes")
        date_text = attrs.get("date", "").strip()
        date = int(date_text) if _INTEGER.fullmatch(date_text) else 0
        self._file_attrs = (subject, attrs.get("poster", ""), date)
        self._groups = []
        self._segments = {}
        self._segment_count = 0

    def _begin_segment(self, attrs: dict[str, str]) -> None:
        self._segment_count += 1
        if self._segment_count > MAX_SEGMENTS_PER_FILE:
            self._fail(f"<file> has more than {MAX_SEGMENTS_PER_FILE} segments")
        self._segment_attrs = (
            self._integer_attr(attrs, "number"),
            self._integer_attr(attrs, "bytes"),
        )

    def _integer_attr(self, attrs: dict[str, str], key: str) -> int:
        value = attrs.get(key)
        if value is None:
            self._fail(f"<segment> has no {key!r} attribute")
        # isdecimal() alone would accept non-ASCII digits such as "\u0663".
        if not (value.isascii() and value.isdecimal() and len(value) <= 18):
            if not _INTEGER.fullmatch(value.strip()):
                self._fail(f"<segment> {key}={value[:40]!r} is not a non-negative integer")
        return int(value)

    def _end_segment(self, text: str) -> None:
        message_id = text[1:-1] if text.startswith("<") and text.endswith(">") else text
        if not message_id:
            self._fail("<segment> has an empty message-id")
        if not _is_message_id(message_id):
            self._fail(f"<segment> message-id {message_id[:80]!r} is not printable ASCII")
        number, size = self._segment_attrs
        # Duplicate part numbers: keep the first, as SABnzbd does.
        if number not in self._segments:
            self._segments[number] = NZBSegment(number=number, bytes=size, message_id=message_id)

    def _end_group(self, text: str) -> None:
        if not text:
            return
        if _UNPRINTABLE.search(text):
            self._fail(f"<group> {text[:80]!r} contains spaces or control characters")
        self._groups.append(text)

    def _end_file(self) -> None:
        assert self._file_attrs is not None
        subject, poster, date = self._file_attrs
        self._file_attrs = None
        if not self._segments:
            self._empty_files += 1
            return
        segments = tuple(self._segments[number] for number in sorted(self._segments))
        self._segments = {}
        self._files.append(
            NZBFile(
                subject=subject,
                poster=poster,
                date=date,
                groups=tuple(self._groups),
                segments=segments,
                filename=filename_from_subject(subject),
            )
        )


def _is_message_id(text: str) -> bool:
    """True if `text` is printable US-ASCII without spaces or angle brackets."""
    return (
        text.isascii()
        and text.isprintable()
        and " " not in text
        and "<" not in text
        and ">" not in text
    )


def _local_name(name: str) -> str:
    """`nzb` for both `nzb` and `{NZB_NAMESPACE} nzb`; foreign names keep their URI."""
    uri, _, local = name.rpartition(" ")
    return local if not uri or uri == NZB_NAMESPACE else name
