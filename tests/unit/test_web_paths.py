"""Request paths to virtual paths: decode once, normalise, refuse traversal and tricks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from altmount.errors import PathError
from altmount.web.paths import RequestPath, href_for, join_path, parse_request_path


@pytest.mark.parametrize(
    ("raw", "path", "prefix"),
    [
        (b"/", "/", ""),
        (b"", "/", ""),
        (b"/complete/movies/A.mkv", "/complete/movies/A.mkv", ""),
        (b"//complete///movies//", "/complete/movies", ""),
        (b"/./complete/./x", "/complete/x", ""),
        (b"/webdav", "/", "/webdav"),
        (b"/webdav/", "/", "/webdav"),
        (b"/webdav/complete/A%20B.mkv", "/complete/A B.mkv", "/webdav"),
        (b"/complete/webdav", "/complete/webdav", ""),
        (b"/caf%C3%A9", "/caf\u00e9", ""),
        (b"/100%25", "/100%", ""),
        (b"/%252e%252e", "/%2e%2e", ""),
        (b"/a..b/...", "/a..b/...", ""),
        (b"/a?x=../..", "/a", ""),
        (b"http://example.com/webdav/x", "/x", "/webdav"),
        (b"https://h:8080", "/", ""),
        (b"/%2e/x", "/x", ""),
    ],
)
def test_accepted_paths(raw, path, prefix):
    """Plain, encoded, doubled-slash, dot and absolute-form paths normalise as expected."""
    assert parse_request_path(raw) == RequestPath(path, prefix)


@pytest.mark.parametrize(
    "raw",
    [
        b"/..",
        b"/a/../b",
        b"/a/..",
        b"/%2e%2e",
        b"/%2E%2E/etc/passwd",
        b"/%2e%2e%2f",
        b"/a%2fb",
        b"/a%2Fb",
        b"/%00",
        b"/a%00.mkv",
        b"/..%5c",
        b"/a%5cb",
        b"/a\\b",
        b"/%c0%ae%c0%ae/",
        b"/%c0%af",
        b"/%ff",
        b"/%e2%82",
        b"/%",
        b"/%zz",
        b"/%4",
        b"/a%0ab",
        b"/a%7f",
        b"http://h/../x",
        b"relative/path",
        b"/" + b"a" * 9000,
    ],
)
def test_refused_paths(raw):
    """Traversal, encoded separators, NUL/control bytes and bad UTF-8 are PathError (400)."""
    with pytest.raises(PathError) as info:
        parse_request_path(raw)
    assert info.value.http_status == 400


def test_join_path():
    """Joining under the root and under a directory gives one slash."""
    assert join_path("/", "a") == "/a"
    assert join_path("/a", "b c") == "/a/b c"


def test_href_encoding_and_trailing_slash():
    """Hrefs percent-encode each segment; collections end with a slash."""
    assert href_for("/a b/c#d?.mkv", False) == "/a%20b/c%23d%3F.mkv"
    assert href_for("/dir", True, "/webdav") == "/webdav/dir/"
    assert href_for("/", True) == "/"
    assert href_for("/caf\u00e9", False) == "/caf%C3%A9"


_NAME = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"),
    min_size=1,
    max_size=12,
).filter(lambda name: name not in (".", "..", "webdav"))


@settings(max_examples=200, deadline=None)
@given(st.lists(_NAME, min_size=0, max_size=5), st.booleans())
def test_href_round_trips(names, is_dir):
    """Any virtual path encoded with href_for parses back to itself."""
    path = "/" + "/".join(names)
    parsed = parse_request_path(href_for(path, is_dir).encode("ascii"))
    assert parsed.path == path
    assert parsed.prefix == ""


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60))
def test_arbitrary_bytes_never_crash(raw):
    """Any request target parses to a clean absolute path or raises PathError."""
    try:
        parsed = parse_request_path(b"/" + raw)
    except PathError:
        return
    assert parsed.path.startswith("/")
    assert ".." not in parsed.path.split("/")
    assert "\\" not in parsed.path and "\x00" not in parsed.path
