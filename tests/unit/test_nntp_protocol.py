"""The sans-IO NNTP response parser and command encoding."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from altmount.errors import NNTPProtocolError
from altmount.nntp.protocol import (
    MAX_BODY_SIZE,
    MAX_STATUS_LINE,
    MULTILINE,
    ArticleBody,
    NNTPStatus,
    Response,
    ResponseParser,
    body_chunks,
    encode_command,
    message_id_arg,
)
from altmount.testing.articles import dot_stuff, post_release

BODY = MULTILINE["BODY"]
BODY_RESPONSE = b"222 0 <a@b>\r\nline one\r\n..dotted\r\n\r\nlast\r\n.\r\n"
BODY_EVENT = Response(222, "0 <a@b>", b"line one\r\n..dotted\r\n\r\nlast\r\n")

# Greeting, a body, a 430, an empty body, a STAT answer: the shapes a client meets.
CONVERSATION = (
    b"200 ready\r\n" + BODY_RESPONSE + b"430 no such article\r\n"
    b"222 0 <e@f>\r\n.\r\n" + b"223 0 <g@h>\r\n"
)
EXPECTED = [
    Response(200, "ready"),
    BODY_EVENT,
    Response(430, "no such article"),
    Response(222, "0 <e@f>", b""),
    Response(223, "0 <g@h>"),
]


def _parser() -> ResponseParser:
    parser = ResponseParser()
    for multiline_on in (frozenset(), BODY, BODY, BODY, frozenset()):
        parser.expect(multiline_on)
    return parser


def _feed_chunks(data: bytes, sizes: list[int]) -> list[Response]:
    parser = _parser()
    events: list[Response] = []
    at = 0
    for size in sizes:
        events += parser.feed(data[at : at + size])
        at += size
    events += parser.feed(data[at:])
    return events


def test_whole_conversation():
    """A whole conversation fed at once yields every response in order."""
    assert _parser().feed(CONVERSATION) == EXPECTED


def test_byte_by_byte():
    """Feeding one byte at a time yields the same responses."""
    assert _feed_chunks(CONVERSATION, [1] * len(CONVERSATION)) == EXPECTED


def test_random_chunks():
    """Random chunkings of the conversation all yield the same responses."""
    rng = random.Random(7)
    for _ in range(200):
        sizes = [rng.randint(1, 12) for _ in range(rng.randint(0, 40))]
        assert _feed_chunks(CONVERSATION, sizes) == EXPECTED


def test_terminator_split_across_feeds():
    """A terminator split at every possible point is still found."""
    for cut in range(len(BODY_RESPONSE) - 6, len(BODY_RESPONSE)):
        parser = ResponseParser()
        parser.expect(BODY)
        assert parser.feed(BODY_RESPONSE[:cut]) == []
        assert parser.feed(BODY_RESPONSE[cut:]) == [BODY_EVENT]


def test_real_article_round_trip():
    """A yEnc article from post_release comes back byte for byte, still dot-stuffed."""
    release = post_release({"f.bin": random.Random(1).randbytes(50_000)}, article_size=20_000)
    parser = ResponseParser()
    wire = b""
    for message_id, body in release.articles.items():
        parser.expect(BODY)
        wire += f"222 0 <{message_id}>\r\n".encode() + body + b".\r\n"
    events = parser.feed(wire)
    assert [e.body for e in events] == list(release.articles.values())


def test_body_keeps_the_received_chunks():
    """A body arriving in three reads is handed out as those reads, not joined; only
    the pieces of a read shared with a status line or the terminator are copied."""
    parser = ResponseParser()
    parser.expect(BODY)
    middle = b"y" * 1000 + b"\r\n"
    events = parser.feed(b"222 0 <a>\r\nfirst\r\n")
    events += parser.feed(middle)
    events += parser.feed(b"last\r\n.\r\n")
    [event] = events
    assert event.body.chunks == (b"first\r\n", middle, b"last\r\n")
    assert event.body.chunks[1] is middle
    assert len(event.body) == 7 + len(middle) + 6


@pytest.mark.parametrize(
    ("reads", "chunks"),
    [
        ([b"abc\r", b"\n", b".", b"\r\n"], (b"abc\r", b"\n")),  # whole chunks dropped
        ([b"abc\r\n.", b"\r\n"], (b"abc\r\n",)),  # a chunk cut short
        ([b"abc", b"\r\n.\r\n"], (b"abc", b"\r\n")),
    ],
)
def test_terminator_split_over_reads_leaves_the_chunks_clean(reads, chunks):
    """A terminator that starts in earlier reads is taken off the chunks kept so far."""
    parser = ResponseParser()
    parser.expect(BODY)
    events = parser.feed(b"222 0 <a>\r\n")
    for data in reads:
        events += parser.feed(data)
    [event] = events
    assert event.body.chunks == chunks and len(event.body) == len(b"".join(chunks))


def test_article_body_value():
    """An ArticleBody measures, joins, compares and hashes as its content."""
    body = ArticleBody([b"ab", b"", b"cd"])
    assert len(body) == 4 and bytes(body) == b"abcd"
    assert body == b"abcd" and b"abcd" == body and body == bytearray(b"abcd")
    assert body == ArticleBody([b"abcd"]) and body != b"abc" and body != ArticleBody([b"x"])
    assert body != "abcd" and hash(body) == hash(b"abcd")
    assert repr(body) == "<ArticleBody 4 bytes in 3 chunk(s)>"
    assert body_chunks(body) == (b"ab", b"", b"cd") and body_chunks(b"xy") == (b"xy",)


def test_single_line_when_code_not_multiline():
    """An error code to a BODY command carries no body."""
    parser = ResponseParser()
    parser.expect(BODY)
    assert parser.feed(b"430 no\r\n223 x\r\n") == [Response(430, "no"), Response(223, "x")]


def test_status_without_text():
    """A bare three-digit status line is accepted with empty text."""
    parser = ResponseParser()
    parser.expect()
    assert parser.feed(b"281\r\n") == [Response(281, "")]


def test_pending_counts_expected_and_open_bodies():
    """`pending` counts announced responses, including one whose body is arriving."""
    parser = ResponseParser()
    parser.expect(BODY)
    parser.expect()
    parser.feed(b"222 0 <a>\r\npartial")
    assert parser.pending == 2


@pytest.mark.parametrize(
    "line", [b"abc hello\r\n", b"20 short\r\n", b"2000 long\r\n", b"999 x\r\n"]
)
def test_garbage_status_line(line):
    """A status line that is not three digits (1-5 first) is a protocol error."""
    parser = ResponseParser()
    parser.expect()
    with pytest.raises(NNTPProtocolError):
        parser.feed(line)


def test_overlong_status_line():
    """More than MAX_STATUS_LINE bytes without CRLF is a protocol error."""
    parser = ResponseParser()
    parser.expect()
    parser.feed(b"200 " + b"x" * (MAX_STATUS_LINE - 4))
    with pytest.raises(NNTPProtocolError, match="longer than"):
        parser.feed(b"yy")


def test_parser_stays_dead_after_error():
    """After a protocol error every later feed raises again."""
    parser = ResponseParser()
    with pytest.raises(NNTPProtocolError):
        parser.feed(b"xyz\r\n")
    with pytest.raises(NNTPProtocolError):
        parser.feed(b"200 ok\r\n")


def test_body_limit():
    """A data block beyond MAX_BODY_SIZE is a protocol error."""
    parser = ResponseParser()
    parser.expect(BODY)
    parser.feed(b"222 0 <a>\r\n")
    chunk = b"y" * (1024 * 1024)
    with pytest.raises(NNTPProtocolError, match="larger than"):
        for _ in range(MAX_BODY_SIZE // len(chunk) + 2):
            parser.feed(chunk)


def test_status_enum_values():
    """The status enum carries the RFC numbers."""
    assert NNTPStatus.NO_SUCH_ARTICLE == 430 and NNTPStatus.AUTH_FAILED == 481


def test_encode_command():
    """Commands are encoded with CRLF; message-ids get angle brackets."""
    assert encode_command("BODY", message_id_arg("a.1@x")) == b"BODY <a.1@x>\r\n"
    assert encode_command("DATE") == b"DATE\r\n"


@pytest.mark.parametrize("bad", ["", "a b", "a\r\nQUIT", "<a>", "a>"])
def test_message_id_arg_rejects_unsafe(bad):
    """Message-ids that could inject commands or break framing are refused."""
    with pytest.raises(ValueError):
        message_id_arg(bad)


def test_encode_command_rejects_long_lines():
    """A command line beyond 512 bytes is refused (RFC 3977 3.1)."""
    with pytest.raises(ValueError):
        encode_command("BODY", "<" + "x" * 600 + ">")


_lines = st.lists(
    st.binary(max_size=30).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")), max_size=8
)


@settings(max_examples=150, deadline=None)
@given(bodies=st.lists(_lines, min_size=1, max_size=4), data=st.data())
def test_property_any_bodies_any_chunks(bodies, data):
    """Any dot-stuffed bodies, cut anywhere, come back exactly as sent."""
    wire = b""
    expected = []
    parser = ResponseParser()
    for index, lines in enumerate(bodies):
        body = dot_stuff(b"".join(line + b"\r\n" for line in lines))
        parser.expect(BODY)
        wire += f"222 {index}\r\n".encode() + body + b".\r\n"
        expected.append(Response(222, str(index), body))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    events = []
    start = 0
    for cut in [*cuts, len(wire)]:
        events += parser.feed(wire[start:cut])
        start = cut
    assert events == expected
    for event in events:  # no empty chunks; the size is the chunks' sum
        assert all(event.body.chunks) and len(event.body) == sum(map(len, event.body.chunks))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_property_random_bytes_parse_or_protocol_error(noise):
    """Arbitrary bytes either parse or raise NNTPProtocolError, never anything else."""
    parser = ResponseParser()
    for _ in range(5):
        parser.expect(BODY)
    try:
        parser.feed(noise)
    except NNTPProtocolError:
        pass
