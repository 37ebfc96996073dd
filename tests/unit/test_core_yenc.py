"""yEnc article decoding: both `_core` implementations, real and hand-made articles."""

from __future__ import annotations

import os
import random
import zlib
from collections.abc import Callable, Iterable

import pytest
import sabyenc3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from altmount._core import DecodedArticle, yenc_py
from altmount.errors import YencError

try:
    from altmount._core import _yenc
except ImportError:  # pure-Python CI run without the extension built
    _yenc = None

Decode = Callable[
    [bytes | bytearray | memoryview | list[bytes] | tuple[bytes, ...]], DecodedArticle
]
IMPLS = [pytest.param(yenc_py.decode_article, id="python")]
if _yenc is not None:
    IMPLS.append(pytest.param(_yenc.decode_article, id="cython"))
needs_cython = pytest.mark.skipif(_yenc is None, reason="Cython extension not built")

CRITICAL = frozenset({0x00, 0x0A, 0x0D, 0x3D})
UNSAFE_ESCAPED = frozenset({0x00, 0x0A, 0x0D})  # never put raw CR/LF/NUL on the wire


def encode(
    data: bytes, line: int = 128, escape: Iterable[int] = (), split_at: Iterable[int] = ()
) -> bytes:
    """A tiny yEnc encoder: CRLF-joined lines, not dot-stuffed.

    `escape` escapes extra data positions (yEnc allows escaping anything);
    `split_at` makes an escape of that position end its line, the escaped
    character starting the next one (what some old encoders do).
    """
    escape, split_at = set(escape), set(split_at)
    lines: list[bytes] = []
    cur = bytearray()
    for i, byte in enumerate(data):
        o = (byte + 42) & 0xFF
        e = (o + 64) & 0xFF
        if o in CRITICAL or (i in escape and e not in UNSAFE_ESCAPED):
            if i in split_at:
                cur.append(0x3D)
                lines.append(bytes(cur))
                cur = bytearray([e])
            else:
                cur += bytes((0x3D, e))
        else:
            cur.append(o)
        if len(cur) >= line:
            lines.append(bytes(cur))
            cur = bytearray()
    if cur:
        lines.append(bytes(cur))
    return b"\r\n".join(lines)


def dot_stuff(text: bytes) -> bytes:
    """Double the dot starting any line (RFC 3977 3.1.1)."""
    return b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in text.split(b"\r\n"))


def article(
    data: bytes,
    *,
    enc: bytes | None = None,
    name: bytes = b"my file.bin",
    part: int | None = None,
    begin: int = 0,
    total: int | None = None,
    crc_key: bytes | None = b"pcrc32",
    crc: int | None = None,
    terminator: bool = True,
    junk: bytes = b"",
) -> bytes:
    """Wrap encoded data in =ybegin/=ypart/=yend, dot-stuff it, maybe add the terminator."""
    enc = encode(data) if enc is None else enc
    total = len(data) if total is None else total
    if part is None:
        head = b"=ybegin line=128 size=%d name=%s\r\n" % (total, name)
    else:
        head = b"=ybegin part=%d total=9 line=128 size=%d name=%s\r\n" % (part, total, name)
        head += b"=ypart begin=%d end=%d\r\n" % (begin + 1, begin + len(data))
    tail = b"=yend size=%d" % len(data)
    if part is not None:
        tail += b" part=%d" % part
    if crc_key is not None:
        tail += b" %s=%08x" % (crc_key, zlib.crc32(data) if crc is None else crc)
    body = junk + head + dot_stuff(enc) + b"\r\n" + tail + b"\r\n"
    return body + b".\r\n" if terminator else body


def outcome(decode: Decode, body: bytes) -> tuple[object, ...]:
    """The result, or the exception's class and message, for comparing implementations."""
    try:
        return ("ok", decode(body))
    except YencError as exc:
        return ("error", type(exc), str(exc))


def assert_same(body: bytes) -> tuple[object, ...]:
    """Both implementations agree on `body`; return the twin's outcome."""
    expected = outcome(yenc_py.decode_article, body)
    if _yenc is not None:
        assert outcome(_yenc.decode_article, body) == expected
    return expected


# --- real articles -------------------------------------------------------------


@pytest.mark.parametrize("decode", IMPLS)
def test_real_multipart_article(decode: Decode) -> None:
    """A nyuu-sized part encoded by sabyenc3 decodes to its data with the =ypart slice."""
    data = os.urandom(716_800)
    enc, crc = sabyenc3.encode(data)
    got = decode(article(data, enc=enc, part=3, begin=1_433_600, total=5_000_000))
    assert got == DecodedArticle(data, "my file.bin", 3, 5_000_000, 1_433_600, 2_150_400, crc, True)


@pytest.mark.parametrize("decode", IMPLS)
def test_real_single_part_article(decode: Decode) -> None:
    """A single-part article covers the whole file and uses the crc32 of =yend."""
    data = os.urandom(5000)
    enc, crc = sabyenc3.encode(data)
    got = decode(article(data, enc=enc, crc_key=b"crc32"))
    assert (got.data, got.part, got.begin, got.end, got.total) == (data, 0, 0, 5000, 5000)
    assert (got.crc, got.crc_ok) == (crc, True)


@pytest.mark.parametrize("decode", IMPLS)
@pytest.mark.parametrize("terminator", [True, False])
def test_terminator_is_optional(decode: Decode, terminator: bool) -> None:
    """The body decodes the same with or without the `.\\r\\n` terminator line."""
    data = os.urandom(3000)
    assert decode(article(data, part=1, terminator=terminator)).data == data


@pytest.mark.parametrize("decode", IMPLS)
def test_junk_before_ybegin(decode: Decode) -> None:
    """Blank and junk lines before =ybegin are skipped."""
    data = os.urandom(2000)
    body = article(data, part=2, begin=2000, total=9000, junk=b"\r\n\r\nposted by x =y\r\n")
    assert decode(body).data == data


@pytest.mark.parametrize("decode", IMPLS)
def test_name_keeps_spaces_and_utf8(decode: Decode) -> None:
    """The name is the rest of the =ybegin line, spaces and UTF-8 included."""
    name = "Ä movie (2024) part=1 size=2.mkv"
    got = decode(article(b"abc", name=name.encode(), part=1))
    assert got.name == name


@pytest.mark.parametrize("decode", IMPLS)
def test_latin1_name(decode: Decode) -> None:
    """A name that is not UTF-8 is read as Latin-1."""
    assert decode(article(b"abc", name=b"caf\xe9.bin")).name == "café.bin"


@pytest.mark.parametrize("decode", IMPLS)
@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_buffer_inputs(decode: Decode, kind: type) -> None:
    """bytearray and memoryview bodies decode like bytes."""
    data = os.urandom(4000)
    body = article(data, part=1)
    assert decode(kind(bytearray(body))) == decode(body)


# --- dots, escapes, line ends ------------------------------------------------------


@pytest.mark.parametrize("decode", IMPLS)
def test_dot_stuffed_lines(decode: Decode) -> None:
    """Lines starting with '.', '..' and a line that is just '.' survive dot-stuffing."""
    dot = (ord(".") - 42) & 0xFF  # encodes to '.'
    data = bytes([dot, 1, 2, dot, dot, 5, dot, dot, dot, 7, dot])
    enc = encode(data[:3], line=3) + b"\r\n" + encode(data[3:6], line=3)
    enc += b"\r\n" + encode(data[6:10], line=4) + b"\r\n" + encode(data[10:], line=1)
    assert b"\r\n.\r\n" not in dot_stuff(enc) and dot_stuff(enc).endswith(b"\r\n..")
    assert decode(article(data, enc=enc, part=1)).data == data


@pytest.mark.parametrize("decode", IMPLS)
def test_escaped_dot_at_line_start(decode: Decode) -> None:
    """A line starting with an escape of '.' and one that is just '..' decode right."""
    data = bytes(range(256)) * 3
    dot_positions = [i for i, b in enumerate(data) if (b + 42) & 0xFF == ord(".")]
    body = article(data, enc=encode(data, line=1, escape=dot_positions[:1]), part=1)
    assert b"\r\n..\r\n" in body
    assert decode(body).data == data


@pytest.mark.parametrize("decode", IMPLS)
@pytest.mark.parametrize("line", [1, 2, 7, 63, 64, 65, 128])
def test_every_char_escaped(decode: Decode, line: int) -> None:
    """Escaping every character (allowed by yEnc) decodes at any line length."""
    data = bytes(range(256)) * 2
    assert decode(article(data, enc=encode(data, line=line, escape=range(512)))).data == data


@needs_cython
@pytest.mark.parametrize("offset", range(0, 140))
def test_escape_positions_agree(offset: int) -> None:
    """An escape at every offset of a line (across SIMD block edges) decodes the same."""
    data = bytearray(os.urandom(700))
    data[offset] = (0x3D - 42) & 0xFF  # encodes to '=', always escaped
    data[offset + 257] = (0x0A - 42) & 0xFF
    result = assert_same(article(bytes(data), part=1))
    assert result[0] == "ok" and result[1].data == bytes(data)


@pytest.mark.parametrize("decode", IMPLS)
def test_split_escape_reading(decode: Decode) -> None:
    """An escape ending a line applies to the next line's first char when that passes the CRC."""
    data = bytes(range(256)) * 4
    critical = [i for i, b in enumerate(data) if (b + 42) & 0xFF in CRITICAL]
    enc = encode(data, line=40, split_at=critical)
    assert b"=\r\n" in enc
    got = decode(article(data, enc=enc, part=1))
    assert (got.data, got.crc_ok) == (data, True)


@pytest.mark.parametrize("decode", IMPLS)
def test_escaped_cr_reading(decode: Decode) -> None:
    """'=' before CRLF is an escaped CR (rapidyenc's reading) when that passes the checks."""
    enc = b"ab=\r\n.cd"  # the article builder stuffs the dot: "ab=\r\n..cd"
    data = bytes(c - 42 for c in b"ab") + bytes([(13 - 106) & 0xFF]) + bytes(c - 42 for c in b".cd")
    got = decode(article(data, enc=enc, part=1))
    assert (got.data, got.crc_ok) == (data, True)


@pytest.mark.parametrize("decode", IMPLS)
def test_dangling_escape_at_end_is_dropped(decode: Decode) -> None:
    """A '=' as the last data character adds nothing."""
    data = bytes([ord("x") - 42])
    assert decode(article(data, enc=b"x=", part=1)).data == data


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("decode", IMPLS)
def test_crc_mismatch_is_a_flag(decode: Decode) -> None:
    """A flipped data byte gives crc_ok=False, not an exception."""
    data = os.urandom(20_000)
    enc, crc = sabyenc3.encode(data)
    i = enc.index(b"a") if b"a" in enc else 200
    bad = enc[:i] + b"b" + enc[i + 1 :]
    got = decode(article(data, enc=bad, part=1))
    assert (got.crc, got.crc_ok, len(got.data)) == (crc, False, len(data))


@pytest.mark.parametrize("decode", IMPLS)
def test_no_crc_is_ok(decode: Decode) -> None:
    """Without pcrc32/crc32 the CRC is None and crc_ok is True."""
    got = decode(article(b"hello", crc_key=None, part=1))
    assert (got.data, got.crc, got.crc_ok) == (b"hello", None, True)


@pytest.mark.parametrize("decode", IMPLS)
def test_file_crc_of_a_part_is_ignored(decode: Decode) -> None:
    """crc32 (whole file) in a part's =yend is not compared with the part."""
    got = decode(article(b"hello", crc_key=b"crc32", crc=1234, part=2, begin=5, total=20))
    assert (got.crc, got.crc_ok) == (None, True)


@pytest.mark.parametrize("decode", IMPLS)
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"hello\r\nworld\r\n.\r\n", "not a yEnc article: no =ybegin header"),
        (b"=ybegin line=128 size=5 name=x\r\nabcde\r\n", "truncated article: no =yend"),
        (b"=ybegin line=128 size=5 name=x\r\n=ypart begin=1 end=5\r\n.\r\n", "truncated"),
        (b"=ybegin line=128 size=5x name=x\r\nab\r\n=yend\r\n", "size='5x' is not a decimal"),
        (b"=ybegin line=1 size=5\r\nab\r\n=yend\r\n", "=ybegin header: no name= field"),
        (b"=ybegin name=a size=5\r\nab\r\n=yend\r\n", "=ybegin header: no size= field"),
        (b"=ybegin part=1 size=9 name=x\r\n=ypart end=3\r\nab\r\n=yend\r\n", "no begin= field"),
        (b"=ybegin size=9 name=x\r\n=ypart begin=-1 end=3\r\nab\r\n=yend\r\n", "begin='-1'"),
        (b"=ybegin size=2 name=x\r\nab\r\n=yend pcrc32=xyz\r\n", "pcrc32='xyz' is not a CRC32"),
        (b"=ybegin size=9 name=x\r\n=ypart begin=0 end=2\r\nab\r\n=yend\r\n", "begin=0 end=2"),
        (b"=ybegin size=9 name=x\r\n=ypart begin=5 end=2\r\nab\r\n=yend\r\n", "begin=5 end=2"),
        (b"=ybegin size=9 name=x\r\n=ypart begin=8 end=10\r\nab\r\n=yend\r\n", "9-byte file"),
        (b"=ybegin part=1 size=2 name=x\r\nab\r\n=yend part=2\r\n", "=yend part=2 does not"),
    ],
)
def test_malformed_articles(decode: Decode, body: bytes, message: str) -> None:
    """Malformed headers and truncated bodies raise YencError naming the problem."""
    with pytest.raises(YencError, match=message.replace("(", r"\(")):
        decode(body)


@pytest.mark.parametrize("decode", IMPLS)
def test_wrong_ypart_size(decode: Decode) -> None:
    """Data shorter than =ypart announces names both numbers."""
    body = (
        article(b"abcd", part=1).replace(b"end=4", b"end=5").replace(b"size=4 name", b"size=9 name")
    )
    with pytest.raises(YencError, match=r"decoded 4 bytes but =ypart begin=1 end=5 announces 5"):
        decode(body)


@pytest.mark.parametrize("decode", IMPLS)
def test_wrong_yend_size(decode: Decode) -> None:
    """Data whose length differs from =yend size names both numbers."""
    body = article(b"abcd", part=1).replace(b"=yend size=4", b"=yend size=3")
    with pytest.raises(YencError, match=r"decoded 4 bytes but =yend size=3"):
        decode(body)


@pytest.mark.parametrize("decode", IMPLS)
def test_wrong_single_part_size(decode: Decode) -> None:
    """A single-part article whose data differs from =ybegin size is an error."""
    body = article(b"abcd").replace(b"line=128 size=4", b"line=128 size=6")
    with pytest.raises(YencError, match=r"decoded 4 bytes but =ybegin size=6"):
        decode(body)


# --- differential ----------------------------------------------------------------------


@st.composite
def articles(draw: st.DrawFn) -> bytes:
    """Articles with random data, line lengths, extra and split escapes and framing."""
    data = draw(st.binary(max_size=400))
    line = draw(st.integers(1, 140))
    positions = st.sets(st.integers(0, max(len(data) - 1, 0)), max_size=30)
    enc = encode(data, line, escape=draw(positions), split_at=draw(positions))
    multipart = draw(st.booleans())
    return article(
        data,
        enc=enc,
        part=draw(st.integers(1, 99)) if multipart else None,
        begin=draw(st.integers(0, 1000)) if multipart else 0,
        total=len(data) + 1000 if multipart else None,
        crc_key=draw(st.sampled_from([b"pcrc32", b"crc32", None])),
        crc=draw(st.sampled_from([None, 0, 0xDEADBEEF])),
        terminator=draw(st.booleans()),
        junk=draw(st.sampled_from([b"", b"\r\n", b"junk =ybegin\r\n", b"x\x00y\r\n"])),
        name=draw(st.sampled_from([b"a", b"a b.bin", b"", b"n\x00x", b"x name=y"])),
    )


@needs_cython
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(articles())
def test_differential_generated(body: bytes) -> None:
    """Cython and twin agree on generated articles (valid or not)."""
    assert_same(body)


@needs_cython
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    articles(),
    st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(b"=\r\n. 0ay\x00")), max_size=4),
)
def test_differential_mutated(body: bytes, edits: list[tuple[int, int]]) -> None:
    """Cython and twin agree after random bytes of an article are overwritten."""
    raw = bytearray(body)
    for pos, value in edits:
        raw[pos % len(raw)] = value
    assert_same(bytes(raw))


@needs_cython
@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_differential_garbage(tail: bytes) -> None:
    """Cython and twin agree on a header followed by arbitrary bytes."""
    assert_same(b"=ybegin part=1 size=50 name=x\r\n=ypart begin=1 end=20\r\n" + tail)
    assert_same(b"=ybegin line=128 size=20 name=y\r\n" + tail + b"\r\n=yend size=20 crc32=0")


@needs_cython
@pytest.mark.parametrize(
    "body",
    [
        b"=ybegin size=3 name=x\r\n=\r\n=ab\r\n=yend size=3 crc32=1\r\n",
        b"=ybegin size=3 name=x\r\n..\r\n..\r\n.\r\n=yend size=3\r\n",
        b"=ybegin size=3 name=x\r\nab=\r\n\r\n=\r\n=yend\r\n",
        b"=ybegin size=3 name=x\r\n=ypart begin=1 end=3\r\nabc=\r\n=yend pcrc32=0\r\n",
        b"=ybegin size=3 name=x\n=ypart begin=1 end=3\nabc\n=yend size=3 pcrc32=0\n",
        b"=ybegin size=3 name=x\r\nab\r=yend\r\n=yend size=3 crc32=0\r\n",
        b"=ybegin size=3 name=x\r\na=ypart begin=1 end=2\r\nb\r\n=yend size=3 crc32=0\r\n",
        b"=ybegin size=0 name=x\r\n=yend size=0 crc32=0\r\n",
        b"=ybegin size=0 name=x\r\n=yend size=0 crc32=00000000",
        b"=ybegin\r\n=yend\r\n",
        b"=ybegin size=1 name=x\r\n=yend\r\n",
        b".\r\n",
        b"",
    ],
)
def test_differential_edge_cases(body: bytes) -> None:
    """Cython and twin agree on hand-written edge cases."""
    assert_same(body)


# --- chunked bodies ---------------------------------------------------------------


def chunked(body: bytes, cuts: Iterable[int]) -> list[bytes]:
    """`body` cut at the given offsets (as an NNTP parser hands it out)."""
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(body)}), len(body)]
    return [body[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


BIG_DATA = os.urandom(716_800)
BIG_ENC, BIG_CRC = sabyenc3.encode(BIG_DATA)
BIG = article(BIG_DATA, enc=BIG_ENC, part=3, begin=1_433_600, total=5_000_000)


@pytest.mark.parametrize("decode", IMPLS)
@pytest.mark.parametrize(
    "cuts",
    [
        [1],  # the header split
        [30, 70],  # =ybegin and =ypart lines cut
        [4096, 4097],  # the probe's edge
        [300_000, 600_000],  # what socket reads give
        [len(BIG) - 3],  # inside the terminator
        [len(BIG) - 30],  # inside the =yend line
        [len(BIG) - 1500],  # the =yend line within the last chunk, the data not
        list(range(0, len(BIG), 65_536)),
    ],
    ids=lambda cuts: f"{len(cuts)}cuts@{cuts[0]}",
)
def test_chunked_body_decodes_like_joined(decode: Decode, cuts: list[int]) -> None:
    """A body given as its chunks, cut anywhere, decodes as the joined body does."""
    chunks = chunked(BIG, cuts)
    got = decode(chunks)
    assert got == decode(BIG)
    assert got.data == BIG_DATA and got.crc_ok
    assert decode(tuple(chunks)) == got


@pytest.mark.parametrize("decode", IMPLS)
def test_chunked_body_of_buffers(decode: Decode) -> None:
    """Chunks that are bytearray or memoryview, and empty chunks, decode like bytes."""
    body = article(os.urandom(5000), part=1)
    chunks = [bytearray(body[:100]), b"", memoryview(body[100:3000]), body[3000:]]
    assert decode(chunks) == decode(body)
    assert outcome(decode, []) == outcome(decode, b"")


@needs_cython
def test_chunked_fast_path_does_not_join(monkeypatch: pytest.MonkeyPatch) -> None:
    """sabyenc3 gets the chunks themselves, not one joined copy of them."""
    seen: list[list[bytes]] = []

    def spy(chunks: list[bytes]) -> tuple[bytes, str, bool]:
        seen.append(chunks)
        return sabyenc3.decode_usenet_chunks(chunks)

    monkeypatch.setattr(_yenc, "decode_usenet_chunks", spy)
    chunks = chunked(BIG, [300_000, 600_000])
    assert _yenc.decode_article(chunks).data == BIG_DATA
    assert len(seen) == 1 and all(a is b for a, b in zip(seen[0], chunks, strict=True))


def assert_same_chunked(body: bytes, cuts: Iterable[int]) -> None:
    """The twin on the joined body and Cython on its chunks agree."""
    expected = outcome(yenc_py.decode_article, body)
    assert outcome(yenc_py.decode_article, chunked(body, cuts)) == expected
    if _yenc is not None:
        assert outcome(_yenc.decode_article, chunked(body, cuts)) == expected


@needs_cython
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(articles(), st.lists(st.integers(0, 600), max_size=4))
def test_differential_chunked(body: bytes, cuts: list[int]) -> None:
    """Cython on any chunking of an article agrees with the twin on the whole body."""
    assert_same_chunked(body, cuts)


@needs_cython
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(5000, 9000),
    st.integers(0, 2**32),
    st.sampled_from([b"pcrc32", b"crc32", None]),
    st.lists(st.integers(0, 10_000), min_size=1, max_size=3),
    st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(b"=\r\n. y")), max_size=3),
)
def test_differential_chunked_long(
    size: int,
    seed: int,
    crc_key: bytes | None,
    cuts: list[int],
    edits: list[tuple[int, int]],
) -> None:
    """Bodies longer than the probe, cut and damaged anywhere: Cython agrees with the twin."""
    data = random.Random(seed).randbytes(size)
    raw = bytearray(article(data, part=2, begin=100, total=20_000, crc_key=crc_key))
    for pos, value in edits:
        raw[pos % len(raw)] = value
    assert_same_chunked(bytes(raw), cuts)


# --- the end of an NNTP data block ----------------------------------------------------

FINDERS = [pytest.param(yenc_py.find_body_end, id="python")]
if _yenc is not None:
    FINDERS.append(pytest.param(_yenc.find_body_end, id="cython"))


@pytest.mark.parametrize("find", FINDERS)
def test_find_body_end(find: Callable[..., int]) -> None:
    """The first CRLF.CRLF at or after `start`; stuffed dots and bare dots do not count."""
    wire = b"222 0 <a>\r\n..x\r\n.\r\r\n.\n\r\n.\r\n222 1 <b>\r\n.\r\n"
    first = wire.index(b"\r\n.\r\n")
    assert find(wire) == first
    assert find(wire, first) == first
    assert find(wire, first + 1) == wire.rindex(b"\r\n.\r\n")
    assert find(wire, len(wire)) == -1 and find(b"") == -1 and find(b"\r\n.\r") == -1
    assert find(memoryview(wire)[2:]) == first - 2
    with pytest.raises(ValueError):
        find(wire, -1)


@needs_cython
@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([b"\r", b"\n", b".", b"a", b"\r\n.\r\n"]), max_size=60), st.data())
def test_differential_find_body_end(pieces: list[bytes], data: st.DataObject) -> None:
    """Cython, twin and bytes.find agree on CR/LF/dot soup at every start."""
    wire = b"".join(pieces)
    start = data.draw(st.integers(0, len(wire) + 2))
    assert _yenc.find_body_end(wire, start) == yenc_py.find_body_end(wire, start)
    assert yenc_py.find_body_end(wire, start) == wire.find(b"\r\n.\r\n", start)
