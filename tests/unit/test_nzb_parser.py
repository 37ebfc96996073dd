"""Tests for altmount.nzb.parser: real-looking NZBs, chunked feeding, hostile input."""

from __future__ import annotations

import ast
import random
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import altmount.nzb
from altmount.errors import NZBParseError
from altmount.nzb import NZB, NZBFile, NZBParser, NZBSegment, parse_nzb
from altmount.nzb.parser import MAX_DEPTH, MAX_SUBJECT_BYTES

NYUU_NZB = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE nzb PUBLIC "-//newzBin//DTD NZB 1.1//EN" "http://www.newzbin.com/DTD/nzb/nzb-1.1.dtd">
<nzb xmlns="http://www.newzbin.com/DTD/2003/nzb">
\t<head>
\t\t<meta type="title">Some.Movie.2020.1080p</meta>
\t\t<meta type="password">s3cr\xc3\xa9t</meta>
\t\t<meta type="name">Some.Movie.2020.1080p.WEB</meta>
\t\t<meta type="tag">one</meta>
\t\t<meta type="tag">two</meta>
\t</head>
\t<file poster="Nyuu &lt;nyuu@nyuu.local&gt;" date="1700000000" subject="[1/2] - &quot;Some.Movie.2020.1080p.mkv&quot; yEnc (1/3) 2100000">
\t\t<groups>
\t\t\t<group>alt.binaries.test</group>
\t\t\t<group>alt.binaries.misc</group>
\t\t</groups>
\t\t<segments>
\t\t\t<segment bytes="739541" number="2">QwErTyUiOpAsDfGhJkLzXcVb-1700000000002@nyuu</segment>
\t\t\t<segment bytes="739612" number="1">&lt;QwErTyUiOpAsDfGhJkLzXcVb-1700000000001@nyuu&gt;</segment>
\t\t\t<segment bytes="620847" number="3">QwErTyUiOpAsDfGhJkLzXcVb-1700000000003@nyuu</segment>
\t\t</segments>
\t</file>
\t<file poster="Nyuu &lt;nyuu@nyuu.local&gt;" date="1700000001" subject="[2/2] - &quot;Some.Movie.2020.1080p.par2&quot; yEnc (1/1) 4242">
\t\t<groups>
\t\t\t<group>alt.binaries.test</group>
\t\t</groups>
\t\t<segments>
\t\t\t<segment bytes="4500" number="1">ZxCvBnMaSdFgHjKlQwErTyUi-1700000000004@nyuu</segment>
\t\t</segments>
\t</file>
</nzb>
"""

EXPECTED = NZB(
    files=(
        NZBFile(
            subject='[1/2] - "Some.Movie.2020.1080p.mkv" yEnc (1/3) 2100000',
            poster="Nyuu <nyuu@nyuu.local>",
            date=1700000000,
            groups=("alt.binaries.test", "alt.binaries.misc"),
            segments=(
                NZBSegment(1, 739612, "QwErTyUiOpAsDfGhJkLzXcVb-1700000000001@nyuu"),
                NZBSegment(2, 739541, "QwErTyUiOpAsDfGhJkLzXcVb-1700000000002@nyuu"),
                NZBSegment(3, 620847, "QwErTyUiOpAsDfGhJkLzXcVb-1700000000003@nyuu"),
            ),
            filename="Some.Movie.2020.1080p.mkv",
        ),
        NZBFile(
            subject='[2/2] - "Some.Movie.2020.1080p.par2" yEnc (1/1) 4242',
            poster="Nyuu <nyuu@nyuu.local>",
            date=1700000001,
            groups=("alt.binaries.test",),
            segments=(NZBSegment(1, 4500, "ZxCvBnMaSdFgHjKlQwErTyUi-1700000000004@nyuu"),),
            filename="Some.Movie.2020.1080p.par2",
        ),
    ),
    meta={
        "title": ("Some.Movie.2020.1080p",),
        "password": ("s3cr\u00e9t",),
        "name": ("Some.Movie.2020.1080p.WEB",),
        "tag": ("one", "two"),
    },
)


def _nzb(body: str, namespace: bool = False) -> bytes:
    """Wrap `<file>` elements in a minimal NZB document."""
    xmlns = ' xmlns="http://www.newzbin.com/DTD/2003/nzb"' if namespace else ""
    return f'<?xml version="1.0"?>\n<nzb{xmlns}>\n{body}\n</nzb>\n'.encode()


def _file(segments: str, subject: str = "&quot;a.bin&quot; yEnc (1/1)") -> str:
    return (
        f'<file poster="p" date="1" subject="{subject}">'
        f"<groups><group>alt.binaries.test</group></groups>"
        f"<segments>{segments}</segments></file>"
    )


def _feed(data: bytes, sizes: list[int]) -> NZB:
    parser = NZBParser()
    position = 0
    for size in sizes:
        parser.feed(data[position : position + size])
        position += size
    parser.feed(data[position:])
    return parser.close()


def test_nyuu_nzb_whole() -> None:
    """A nyuu-style NZB with namespace and <head> parses to the expected model."""
    assert parse_nzb(NYUU_NZB) == EXPECTED


def test_nyuu_nzb_byte_by_byte() -> None:
    """Feeding one byte at a time gives the same result as feeding it whole."""
    assert _feed(NYUU_NZB, [1] * len(NYUU_NZB)) == EXPECTED


@pytest.mark.parametrize("seed", range(20))
def test_nyuu_nzb_random_chunks(seed: int) -> None:
    """Feeding random chunk sizes gives the same result as feeding it whole."""
    rng = random.Random(seed)
    sizes = [rng.randint(0, 97) for _ in range(len(NYUU_NZB) // 20)]
    assert _feed(NYUU_NZB, sizes) == EXPECTED


def test_properties() -> None:
    """password, name and total_bytes come from the meta and the segments."""
    nzb = parse_nzb(NYUU_NZB)
    assert nzb.password == "s3cr\u00e9t"
    assert nzb.name == "Some.Movie.2020.1080p.WEB"
    assert nzb.files[0].total_bytes == 739612 + 739541 + 620847


def test_no_namespace_and_no_head() -> None:
    """An NZB without namespace or <head> parses, with password and name None."""
    nzb = parse_nzb(_nzb(_file('<segment bytes="5" number="1">a@b</segment>')))
    assert nzb.password is None and nzb.name is None
    assert nzb.files[0].segments == (NZBSegment(1, 5, "a@b"),)


def test_duplicate_numbers_keep_first() -> None:
    """Segments with a repeated number are dropped after the first one."""
    body = _file(
        '<segment bytes="5" number="2">two@x</segment>'
        '<segment bytes="5" number="1">one@x</segment>'
        '<segment bytes="9" number="2">again@x</segment>'
    )
    segments = parse_nzb(_nzb(body)).files[0].segments
    assert [s.message_id for s in segments] == ["one@x", "two@x"]


def test_file_without_segments_is_dropped() -> None:
    """A <file> with no segments disappears; the others stay."""
    body = _file("") + _file('<segment bytes="5" number="1">a@b</segment>')
    assert len(parse_nzb(_nzb(body)).files) == 1


def test_no_files_is_an_error() -> None:
    """An NZB whose files all lack segments is refused, saying so."""
    with pytest.raises(NZBParseError, match="NZB has no files"):
        parse_nzb(_nzb(_file("") + _file("")))


def test_foreign_elements_are_ignored() -> None:
    """Elements of another namespace or unknown names do not disturb parsing."""
    body = '<x:extra xmlns:x="urn:other"><file subject="z"/></x:extra>' + _file(
        '<segment bytes="5" number="1">a@b<unknown/></segment>'
    )
    nzb = parse_nzb(_nzb(body, namespace=True))
    assert len(nzb.files) == 1 and nzb.files[0].segments[0].message_id == "a@b"


@pytest.mark.parametrize(
    ("segment", "match"),
    [
        ('<segment bytes="5" number="x">a@b</segment>', "number='x'"),
        ('<segment bytes="5" number="-1">a@b</segment>', "number='-1'"),
        ('<segment bytes="1.5" number="1">a@b</segment>', "bytes='1.5'"),
        ('<segment bytes="5" number="\u0663">a@b</segment>', "number="),
        ('<segment bytes="5" number="99999999999999999999">a@b</segment>', "number="),
        ('<segment number="1">a@b</segment>', "no 'bytes'"),
        ('<segment bytes="5" number="1"> </segment>', "empty message-id"),
        ('<segment bytes="5" number="1">&lt;&gt;</segment>', "empty message-id"),
        ('<segment bytes="5" number="1">a@b&#13;&#10;QUIT</segment>', "not printable"),
        ('<segment bytes="5" number="1">a b@c</segment>', "not printable"),
    ],
)
def test_bad_segments_name_the_line(segment: str, match: str) -> None:
    """Bad numbers, sizes and message-ids raise NZBParseError with the line number."""
    with pytest.raises(NZBParseError, match=r"NZB line 3: .*" + match):
        parse_nzb(_nzb(_file(segment)))


def test_malformed_xml_names_line_and_column() -> None:
    """A syntax error reports expat's reason at a 1-based line and column."""
    data = b"<nzb>\n<file subject='a'>\n  <segments><<\n</nzb>"
    with pytest.raises(NZBParseError, match=r"^NZB line 3, column 14: not well-formed"):
        parse_nzb(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x01\x02\xff\xfe garbage",
        b"%PDF-1.4 not xml",
        b"<nzb><file>",
        b"<html><body/></html>",
        b'<?xml version="1.0" encoding="bogus-enc"?><nzb/>',
        b'<?xml version="1.0" encoding="shift_jis"?><nzb/>',
    ],
)
def test_not_an_nzb(data: bytes) -> None:
    """Empty input, binary garbage, truncation, another root or encoding: NZBParseError."""
    with pytest.raises(NZBParseError):
        parse_nzb(data)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE nzb [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<nzb><file subject="&lol9;"/></nzb>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE nzb [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<nzb><file subject="x"><segments><segment bytes="1" number="1">&xxe;</segment></segments></file></nzb>
"""


@pytest.mark.parametrize("data", [BILLION_LAUGHS, EXTERNAL_ENTITY])
def test_entity_declarations_are_refused(data: bytes) -> None:
    """Entity bombs and external entities are refused before any expansion."""
    with pytest.raises(NZBParseError, match="unsafe"):
        parse_nzb(data)


@pytest.mark.parametrize("data", [BILLION_LAUGHS, EXTERNAL_ENTITY])
def test_entity_declarations_refused_byte_by_byte(data: bytes) -> None:
    """The byte scan catches `<!ENTITY` even when it is split across feeds."""
    with pytest.raises(NZBParseError, match="unsafe"):
        _feed(data, [1] * len(data))


def test_entity_declarations_refused_in_utf16() -> None:
    """In UTF-16 the byte scan cannot see `<!ENTITY`; expat's handlers still refuse it."""
    data = BILLION_LAUGHS.decode().replace('"1.0"?>', '"1.0" encoding="utf-16"?>').encode("utf-16")
    with pytest.raises(NZBParseError, match="unsafe"):
        parse_nzb(data)


def test_internal_subset_without_entities_is_refused() -> None:
    """Any DOCTYPE internal subset is refused, entities or not."""
    with pytest.raises(NZBParseError, match="internal subset"):
        parse_nzb(b'<!DOCTYPE nzb [<!ATTLIST nzb a CDATA "x">]><nzb/>')


def test_external_dtd_is_not_fetched() -> None:
    """A SYSTEM DTD pointing at a local file is neither read nor used to expand entities."""
    body = _file('<segment bytes="5" number="1">a@b</segment>', subject="x &amp; y")
    data = b'<!DOCTYPE nzb SYSTEM "file:///etc/passwd">\n' + _nzb(body).split(b"\n", 1)[1]
    nzb = parse_nzb(data.replace(b"a@b", b"a@b&passwd;"))
    assert nzb.files[0].segments[0].message_id == "a@b"


def test_long_subject_is_refused() -> None:
    """A 10 KB subject is refused as hostile."""
    with pytest.raises(NZBParseError, match=f"longer than {MAX_SUBJECT_BYTES}"):
        parse_nzb(_nzb(_file('<segment bytes="5" number="1">a@b</segment>', "x" * 10_000)))


def test_deep_nesting_is_refused() -> None:
    """Elements nested beyond MAX_DEPTH are refused."""
    depth = MAX_DEPTH + 5
    data = b"<nzb>" + b"<x>" * depth + b"</x>" * depth + b"</nzb>"
    with pytest.raises(NZBParseError, match="nested deeper"):
        parse_nzb(data)


def test_size_limit() -> None:
    """More bytes than the parser's limit are refused before parsing them."""
    parser = NZBParser(max_bytes=100)
    parser.feed(b"<nzb>" + b" " * 90)
    with pytest.raises(NZBParseError, match="larger than"):
        parser.feed(b" " * 10)


def test_segment_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file with more segments than MAX_SEGMENTS_PER_FILE is refused."""
    monkeypatch.setattr("altmount.nzb.parser.MAX_SEGMENTS_PER_FILE", 3)
    segments = "".join(f'<segment bytes="5" number="{i}">m{i}@x</segment>' for i in range(4))
    with pytest.raises(NZBParseError, match="more than 3 segments"):
        parse_nzb(_nzb(_file(segments)))


def test_hostile_subject_names_are_sanitised() -> None:
    """`../`, absolute and NUL-bearing names in subjects yield safe base names."""
    body = "".join(
        _file('<segment bytes="5" number="1">a@b</segment>', subject=subject)
        for subject in (
            "&quot;../../etc/cron.d/evil&quot; yEnc (1/1)",
            "&quot;/etc/passwd&quot; yEnc (1/1)",
            "&quot;..&quot; yEnc (1/1)",
        )
    )
    names = [f.filename for f in parse_nzb(_nzb(body)).files]
    assert names == ["evil", "passwd", ""]


def test_nul_character_reference_is_refused() -> None:
    """XML cannot carry NUL, even as a character reference."""
    with pytest.raises(NZBParseError, match="line 3"):
        parse_nzb(_nzb(_file('<segment bytes="5" number="1">a@b</segment>', "a&#0;b.mkv")))


def _big_nzb(target: int) -> bytes:
    """A nyuu-style NZB of about `target` bytes, 1000 segments per file."""
    parts = [
        b'<?xml version="1.0" encoding="utf-8"?>\n<nzb xmlns="http://www.newzbin.com/DTD/2003/nzb">\n'
    ]
    size = 0
    index = 0
    while size < target:
        index += 1
        lines = [
            f'<file poster="nyuu &lt;nyuu@nyuu&gt;" date="1700000000" subject="[{index}/99] - '
            f'&quot;Release.part{index:03d}.rar&quot; yEnc (1/1000)"><groups>'
            "<group>alt.binaries.test</group></groups><segments>\n"
        ]
        lines += [
            f'<segment bytes="{739000 + i}" number="{i}">AbcdefghijklmnopqrstuvwX-{index:04d}{i:06d}@nyuu</segment>\n'
            for i in range(1, 1001)
        ]
        lines.append("</segments></file>\n")
        chunk = "".join(lines).encode()
        parts.append(chunk)
        size += len(chunk)
    parts.append(b"</nzb>\n")
    return b"".join(parts)


@pytest.fixture(scope="module")
def big_nzb() -> bytes:
    """A 50 MiB NZB built once for the performance tests."""
    return _big_nzb(50 << 20)


def test_50mb_nzb_parses_in_linear_time(big_nzb: bytes) -> None:
    """A 50 MiB NZB (about 600,000 segments) parses completely, in time proportional to its
    size: ten times a 5 MiB one's, measured in the same run (a quadratic step would make
    it a hundred times), so a loaded machine cannot fail it."""

    def timed_parse(data: bytes) -> tuple[float, int]:
        start = time.perf_counter()
        nzb = parse_nzb(data)
        return time.perf_counter() - start, sum(len(f.segments) for f in nzb.files)

    small_s, small_segments = timed_parse(_big_nzb(5 << 20))
    big_s, big_segments = timed_parse(big_nzb)
    print(f"5 MiB NZB: {small_s:.2f} s; 50 MiB NZB: {big_s:.2f} s, {big_segments} segments")
    assert big_segments > 500_000 and 9 * small_segments < big_segments < 11 * small_segments
    assert big_s < 30 * small_s


def test_50mb_nzb_memory_is_bounded_by_the_result(big_nzb: bytes) -> None:
    """Peak memory while parsing is the size of the result plus a small constant."""
    tracemalloc.start()
    try:
        nzb = parse_nzb(big_nzb)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"50 MiB NZB: result {current / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB")
    assert len(nzb.files) > 500
    assert peak - current < 8 << 20


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_parse_or_raise_nzb_error(data: bytes) -> None:
    """Random bytes either parse or raise NZBParseError, never anything else."""
    try:
        parse_nzb(data)
    except NZBParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_nzb_parses_or_raises_nzb_error(data: st.DataObject) -> None:
    """A valid NZB with random bytes overwritten parses or raises NZBParseError."""
    mutated = bytearray(NYUU_NZB)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(mutated) - 1))
        mutated[position] = data.draw(st.integers(0, 255))
    try:
        parse_nzb(bytes(mutated))
    except NZBParseError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 200), max_size=40))
def test_any_chunking_gives_the_same_result(sizes: list[int]) -> None:
    """However the input is split into feeds, the result is the same."""
    assert _feed(NYUU_NZB, sizes) == EXPECTED


def test_nzb_package_does_no_io() -> None:
    """The nzb package imports no twisted, socket, lmdb, sqlite3 or time (sans-IO)."""
    forbidden = {"twisted", "socket", "lmdb", "sqlite3", "time"}
    package = Path(altmount.nzb.__file__).parent
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not {name.split(".")[0] for name in names} & forbidden, source.name
