"""Property-based fuzzing of every parser that reads bytes from outside: only our errors escape.

For each parser, random bytes and mutations of a valid input are fed whole and in
random chunks; the only exception allowed out is the parser's own `AltmountError`
subclass. Hostile shapes (entity bombs, deep nesting, huge counts in headers) get
explicit tests that bound time and peak memory.
"""

from __future__ import annotations

import math
import struct
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from altmount._core import _yenc, yenc_py
from altmount.config import parse_config
from altmount.errors import (
    ConfigError,
    NNTPProtocolError,
    NZBParseError,
    Par2Error,
    PathError,
    RangeNotSatisfiable,
    RequestError,
    YencError,
)
from altmount.nntp.protocol import MAX_BODY_SIZE, MULTILINE, ResponseParser
from altmount.nzb.parser import MAX_DEPTH, NZBParser, parse_nzb
from altmount.par2.packets import MAGIC, TYPE_FILE_DESC, Par2Parser, parse_par2
from altmount.stream.httprange import if_range_matches, parse_range, select_range
from altmount.testing.articles import build_nzb, post_release, yenc_article
from altmount.web.davxml import MAX_BODY_BYTES, parse_propfind
from altmount.web.multipart import parse_form
from altmount.web.paths import parse_request_path

#: For the recursive document strategies, which cost more per example.
FUZZ_DOCS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RELEASE = post_release({"Movie.2024.mkv": bytes(range(256)) * 40}, article_size=4000, salt="fz")
NZB = build_nzb(RELEASE.files, meta={"password": "secret"})
ARTICLE = yenc_article(
    bytes(range(256)) * 8, name="a b.bin", part=2, total_parts=3, begin=2048, file_size=6144
)
PAR2 = (Path(__file__).parent.parent / "data" / "par2" / "index.par2").read_bytes()
BYTE_SOUP = st.binary(max_size=2048)
#: Text that can be encoded (no lone surrogates).
TEXT = st.characters(blacklist_categories=("Cs",))


def _mutate(data: st.DataObject, blob: bytes) -> bytes:
    """`blob` with a few bytes changed, a slice dropped or duplicated, and maybe cut short."""
    out = bytearray(blob)
    for _ in range(data.draw(st.integers(0, 6), label="flips")):
        out[data.draw(st.integers(0, len(out) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans(), label="splice"):
        a = data.draw(st.integers(0, len(out)))
        b = data.draw(st.integers(a, min(len(out), a + 200)))
        out[a:a] = out[a:b] if data.draw(st.booleans()) else b""
        if data.draw(st.booleans()):
            del out[a:b]
    return bytes(out[: data.draw(st.integers(0, len(out)), label="cut")])


def _chunks(data: st.DataObject, blob: bytes) -> list[bytes]:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(blob)), max_size=12), label="cuts"))
    edges = [0, *cuts, len(blob)]
    return [blob[a:b] for a, b in zip(edges, edges[1:], strict=False)]


@contextmanager
def bounded(seconds: float, megabytes: float) -> Iterator[None]:
    """Fail if the block takes longer than `seconds` or allocates more than `megabytes` at peak."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < seconds, f"took {elapsed:.2f} s"
    assert peak < megabytes * 2**20, f"peak {peak / 2**20:.1f} MiB"


# -- NZB ----------------------------------------------------------------------------


def _nzb_outcome(chunks: list[bytes]) -> object:
    parser = NZBParser()
    try:
        for chunk in chunks:
            parser.feed(chunk)
        return parser.close()
    except NZBParseError:
        return NZBParseError


@FUZZ
@given(BYTE_SOUP)
def test_nzb_random_bytes(blob: bytes) -> None:
    """Random bytes parse or raise NZBParseError."""
    _nzb_outcome([blob])


@FUZZ
@given(st.data())
def test_nzb_mutations_any_chunking(data: st.DataObject) -> None:
    """A damaged NZB gives the same result whole and in random chunks, and only NZBParseError."""
    blob = _mutate(data, NZB)
    assert _nzb_outcome(_chunks(data, blob)) == _nzb_outcome([blob])


_XML_NAMES = st.sampled_from(["nzb", "file", "segments", "segment", "groups", "group", "x", "head"])


@st.composite
def _xml(draw: st.DrawFn, depth: int = 0) -> str:
    name = draw(_XML_NAMES)
    attrs = draw(
        st.dictionaries(
            st.sampled_from(["number", "bytes", "subject", "date", "poster", "type"]),
            st.text(TEXT, max_size=30).map(lambda s: s.replace('"', "&quot;").replace("<", "&lt;")),
            max_size=3,
        )
    )
    attr_text = "".join(f' {k}="{v}"' for k, v in attrs.items())
    children = []
    if depth < 3:
        children = draw(st.lists(_xml(depth + 1), max_size=3))
    text = draw(
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="<&"), max_size=20)
    )
    return f"<{name}{attr_text}>{text}{''.join(children)}</{name}>"


@FUZZ_DOCS
@given(_xml())
def test_nzb_random_documents(document: str) -> None:
    """Random well-formed documents of NZB element names parse or raise NZBParseError."""
    _nzb_outcome([document.encode("utf-8")])


def test_nzb_billion_laughs_refused_cheaply() -> None:
    """The billion laughs is refused before any entity is expanded."""
    levels = ['<!ENTITY a0 "lol">'] + [
        f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10)
    ]
    bomb = f"<?xml version='1.0'?><!DOCTYPE nzb [{''.join(levels)}]><nzb>&a9;</nzb>".encode()
    with bounded(0.5, 4), pytest.raises(NZBParseError):
        parse_nzb(bomb)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_nzb_entity_bomb_in_other_encodings_refused(encoding: str) -> None:
    """An entity declaration hidden from the byte scan by UTF-16 is still refused."""
    text = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE n [<!ENTITY a "x">]><nzb>&a;</nzb>'
    with pytest.raises(NZBParseError):
        parse_nzb(text.encode(encoding))


def test_nzb_deep_nesting_bounded() -> None:
    """100,000 nested elements are refused at MAX_DEPTH, in little time and memory."""
    blob = b"<nzb>" + b"<a>" * 100_000 + b"</a>" * 100_000 + b"</nzb>"
    with bounded(1.0, 16), pytest.raises(NZBParseError, match=str(MAX_DEPTH)):
        parse_nzb(blob)


def test_nzb_huge_numbers_refused() -> None:
    """Segment numbers and sizes beyond int64 are refused, not turned into giant ints."""
    blob = (
        b'<nzb><file subject="x"><segments><segment number="1" bytes="'
        + b"9" * 5000
        + b'">a@b</segment></segments></file></nzb>'
    )
    with pytest.raises(NZBParseError):
        parse_nzb(blob)


# -- PAR2 ---------------------------------------------------------------------------


def _par2_outcome(chunks: list[bytes]) -> object:
    parser = Par2Parser()
    try:
        for chunk in chunks:
            parser.feed(chunk)
        return parser.close()
    except Par2Error:
        return Par2Error


@FUZZ
@given(BYTE_SOUP)
def test_par2_random_bytes(blob: bytes) -> None:
    """Random bytes, with and without a PAR2 magic in front, parse or raise Par2Error."""
    _par2_outcome([blob])
    _par2_outcome([MAGIC + blob])


@FUZZ
@given(st.data())
def test_par2_mutations_any_chunking(data: st.DataObject) -> None:
    """A damaged PAR2 file gives the same result whole and in random chunks."""
    blob = _mutate(data, PAR2)
    assert _par2_outcome(_chunks(data, blob)) == _par2_outcome([blob])


def test_par2_huge_length_headers_bounded() -> None:
    """Headers claiming 2**63-byte packets cost linear time, not a giant buffer."""
    fake = MAGIC + struct.pack("<Q", (1 << 63) - 4) + b"\0" * 32 + TYPE_FILE_DESC
    with bounded(2.0, 32), pytest.raises(Par2Error):
        parse_par2(fake * 20_000)


# -- yEnc (both implementations) ----------------------------------------------------

DECODERS: list[Callable[[bytes], object]] = [_yenc.decode_article, yenc_py.decode_article]


@pytest.mark.parametrize("decode", DECODERS, ids=["cython", "python"])
@FUZZ
@given(st.data())
def test_yenc_mutations(decode: Callable[[bytes], object], data: st.DataObject) -> None:
    """A damaged article decodes or raises YencError, in both implementations."""
    try:
        decode(_mutate(data, ARTICLE))
    except YencError:
        pass


_HEADER_VALUES = st.one_of(
    st.integers(-5, 10**30).map(str), st.text(max_size=12), st.just("9" * 5000)
)


@pytest.mark.parametrize("decode", DECODERS, ids=["cython", "python"])
@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["part", "total", "line", "size", "begin", "end", "pcrc32", "crc32"]),
        _HEADER_VALUES,
        max_size=6,
    ),
    st.binary(max_size=300),
)
def test_yenc_random_headers(
    decode: Callable[[bytes], object], fields: dict[str, str], payload: bytes
) -> None:
    """Any header values (negative, 30 digits, 5000 digits, text) give YencError at worst."""
    line = " ".join(f"{k}={v}" for k, v in fields.items())
    body = (
        f"=ybegin {line} name=x\r\n=ypart {line}\r\n".encode("utf-8", "replace")
        + payload
        + f"\r\n=yend {line}\r\n".encode("utf-8", "replace")
    )
    try:
        decode(body)
    except YencError:
        pass


@pytest.mark.parametrize("decode", DECODERS, ids=["cython", "python"])
def test_yenc_huge_announced_size_allocates_nothing(decode: Callable[[bytes], object]) -> None:
    """size=10**17 with four data bytes is a size error, with no giant allocation."""
    body = b"=ybegin line=128 size=100000000000000000 name=x\r\nabcd\r\n=yend size=4\r\n"
    with bounded(0.5, 4), pytest.raises(YencError):
        decode(body)


# -- NNTP responses -----------------------------------------------------------------


def _nntp_outcome(expects: list[str], chunks: list[bytes]) -> object:
    parser = ResponseParser()
    for verb in expects:
        parser.expect(MULTILINE.get(verb, frozenset()))
    events: list[object] = []
    try:
        for chunk in chunks:
            events.extend(parser.feed(chunk))
    except NNTPProtocolError:
        events.append(NNTPProtocolError)
    return events


_NNTP_LINES = st.one_of(
    st.sampled_from(
        [
            b"222 0 <a@b> body\r\n",
            b"430 no such article\r\n",
            b"220 article\r\n",
            b".\r\n",
            b"..dot\r\n",
            b"=ybegin size=1 name=x\r\n",
            b"\r\n",
            b"200 hi\r\n",
            b"9x9\r\n",
        ]
    ),
    st.binary(max_size=40),
)


@FUZZ
@given(
    st.lists(st.sampled_from(["BODY", "ARTICLE", "STAT", "HEAD", "CAPABILITIES"]), max_size=6),
    st.lists(_NNTP_LINES, max_size=20),
    st.data(),
)
def test_nntp_responses_any_chunking(
    expects: list[str], lines: list[bytes], data: st.DataObject
) -> None:
    """Random server output gives the same events (or the same refusal) whole and in random
    chunks; only NNTPProtocolError escapes."""
    blob = b"".join(lines)
    whole = _nntp_outcome(expects, [blob])
    chunked = _nntp_outcome(expects, _chunks(data, blob))
    if NNTPProtocolError in whole:
        assert chunked[-1] is NNTPProtocolError  # events fed before the bad line may be out
    else:
        assert chunked == whole


def test_nntp_endless_body_is_capped() -> None:
    """A data block that never ends is refused once it passes MAX_BODY_SIZE, not buffered on."""
    parser = ResponseParser()
    parser.expect(MULTILINE["BODY"])
    parser.feed(b"222 0 <a@b>\r\n")
    chunk = b"x" * (1 << 20)
    with pytest.raises(NNTPProtocolError):
        for _ in range(MAX_BODY_SIZE // len(chunk) + 2):
            parser.feed(chunk)


def test_nntp_endless_status_line_is_capped() -> None:
    """A status line without CRLF is refused at MAX_STATUS_LINE bytes."""
    parser = ResponseParser()
    with pytest.raises(NNTPProtocolError):
        for _ in range(100):
            parser.feed(b"2" * 1000)


# -- HTTP Range / If-Range ----------------------------------------------------------

_RANGE_PARTS = st.one_of(
    st.sampled_from(["bytes=", "-", ",", " ", "0", "1", "99", "items=", "=", "9" * 5000, "\t"]),
    st.integers(0, 10**25).map(str),
)


@FUZZ
@given(
    st.one_of(
        st.lists(_RANGE_PARTS, max_size=12).map("".join),
        st.text(max_size=60),
        st.binary(max_size=60),
    ),
    st.one_of(st.none(), st.text(max_size=60), st.just("Sun, 06 Nov 99999999999 08:49:37 GMT")),
    st.integers(0, 10**15),
)
def test_range_headers(header: str | bytes, if_range: str | None, size: int) -> None:
    """Any Range/If-Range pair gives a span inside the file, None, or RangeNotSatisfiable."""
    try:
        span = select_range(header, if_range, size, '"1-2"', 1.0)
    except RangeNotSatisfiable:
        return
    if span is not None:
        start, end = span
        assert 0 <= start < end <= size


def test_range_with_5000_digit_numbers() -> None:
    """Numbers beyond any file size (and Python's int-string limit) mean 'past the end'."""
    huge = "9" * 5000
    assert parse_range(f"bytes=0-{huge}", 100) == (0, 100)
    assert parse_range(f"bytes=-{huge}", 100) == (0, 100)
    with pytest.raises(RangeNotSatisfiable):
        parse_range(f"bytes={huge}-", 100)


def test_if_range_with_absurd_date() -> None:
    """An If-Range date whose year overflows is a non-match, not an OverflowError."""
    assert not if_range_matches("Sun, 06 Nov 99999999999 08:49:37 GMT", '"x"', 0)


# -- WebDAV PROPFIND bodies and request paths ---------------------------------------


@FUZZ_DOCS
@given(
    st.one_of(
        BYTE_SOUP,
        _xml().map(lambda s: s.encode()),
        st.sampled_from(
            [
                '<?xml version="1.0" encoding="x-bogus"?><a/>',
                '<?xml version="1.0" encoding="utf-32"?><a/>',
            ]
        ).map(str.encode),
    )
)
def test_propfind_bodies(body: bytes) -> None:
    """Any PROPFIND body parses or raises RequestError."""
    try:
        parse_propfind(body)
    except RequestError:
        pass


def test_propfind_entity_bomb_and_nesting_bounded() -> None:
    """A DOCTYPE bomb is refused, and a body of maximal nesting parses in bounded memory."""
    bomb = b'<!DOCTYPE D [<!ENTITY a "' + b"x" * 1000 + b'">]><propfind xmlns="DAV:">&a;</propfind>'
    with pytest.raises(RequestError):
        parse_propfind(bomb)
    depth = (MAX_BODY_BYTES - 100) // 8
    nested = b'<propfind xmlns="DAV:">' + b"<a>" * depth + b"</a>" * depth + b"</propfind>"
    with bounded(1.0, 32), pytest.raises(RequestError):
        parse_propfind(nested)


@FUZZ
@given(
    st.one_of(
        BYTE_SOUP,
        st.lists(
            st.sampled_from(
                [
                    b"/",
                    b"..",
                    b".",
                    b"%2e",
                    b"%2E%2e",
                    b"%2f",
                    b"%00",
                    b"\\",
                    b"%5c",
                    b"%c0%ae",
                    b"%",
                    b"http://h",
                    b"a",
                    b"%ff",
                    b"?",
                    b"#",
                ]
            ),
            max_size=16,
        ).map(b"".join),
    )
)
def test_request_paths(raw: bytes) -> None:
    """Any request target decodes to a normalised absolute path without '..', or PathError."""
    try:
        target = parse_request_path(raw)
    except PathError:
        return
    assert target.path.startswith("/")
    assert ".." not in target.path.split("/")
    assert "\\" not in target.path and "\0" not in target.path


@FUZZ
@given(
    BYTE_SOUP,
    st.sampled_from(
        [
            b"multipart/form-data; boundary=b",
            b"text/plain",
            b"multipart/form-data",
            b"multipart/form-data; boundary=",
        ]
    ),
)
def test_multipart_bodies(body: bytes, content_type: bytes) -> None:
    """Any upload body with any Content-Type gives parts or RequestError."""
    try:
        parse_form(body, content_type)
    except RequestError:
        pass


# -- YAML config --------------------------------------------------------------------

_YAML_SCALARS = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats().map(repr),
    st.sampled_from(
        [
            ".nan",
            ".inf",
            "-.inf",
            "true",
            "null",
            "~",
            "''",
            "[]",
            "{}",
            "9" * 5000,
            "!!binary aGk=",
            "!!python/object:os.system x",
            "&a x",
            "*a",
            "? [a]",
        ]
    ),
    st.text(max_size=20),
)
_YAML_KEYS = st.sampled_from(
    [
        "webdav",
        "port",
        "user",
        "password",
        "metadata",
        "root_path",
        "providers",
        "host",
        "sabnzbd",
        "addurl_timeout_seconds",
        "streaming",
        "max_range_size",
        "log",
        "level",
        "x",
    ]
)


@st.composite
def _yaml(draw: st.DrawFn, indent: int = 0) -> str:
    lines = []
    for key in draw(st.lists(_YAML_KEYS, max_size=4)):
        pad = " " * indent
        if indent < 6 and draw(st.booleans()):
            lines.append(f"{pad}{key}:")
            lines.append(draw(_yaml(indent + 2)) or f"{pad}  - {draw(_YAML_SCALARS)}")
        else:
            lines.append(f"{pad}{key}: {draw(_YAML_SCALARS)}")
    return "\n".join(lines)


@FUZZ
@given(
    st.one_of(
        _yaml(), st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1"))
    )
)
def test_config_random_yaml(text: str) -> None:
    """Any text gives a Config or ConfigError; a Config has only finite numbers."""
    try:
        config, _ = parse_config(text)
    except ConfigError:
        return
    assert math.isfinite(config.sabnzbd.addurl_timeout_seconds)


@pytest.mark.parametrize(
    "text",
    [
        "webdav: " + "[" * 1100 + "]" * 1100,
        "webdav:\n  port: " + "9" * 5000,
        "metadata: {root_path: /m}\nsabnzbd:\n  addurl_timeout_seconds: .nan",
        "metadata: {root_path: /m}\nhealth:\n  check_interval_seconds: .inf",
    ],
    ids=["deep-nesting", "5000-digit-int", "nan", "inf"],
)
def test_config_hostile_values_are_config_errors(text: str) -> None:
    """Deep nesting, giant integers, NaN and infinity are ConfigErrors naming the problem."""
    with pytest.raises(ConfigError):
        parse_config(text)


def test_config_alias_bomb_bounded() -> None:
    """A YAML alias bomb (9**9 leaves) under a key gives a short ConfigError, quickly."""
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"] + [
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)
    ]
    text = "\n".join(levels) + "\nwebdav:\n  debug: *a8\n  port: *a8\n"
    with bounded(2.0, 64), pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert len(str(caught.value)) < 2000
