"""WebDAVResource, method by method, with DummyRequest and a real metadata store."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pytest
from twisted.web.test.requesthelper import DummyRequest

from altmount.config import StreamingConfig
from altmount.errors import MetadataError
from altmount.metadata import FileRecord, MetadataStore, SegmentTable
from altmount.web.webdav import WebDAVResource, content_type_for

D = "{DAV:}"
MOVIE = "/complete/movies/A Movie (2020)/a movie.mkv"


def record(path: str, size: int = 1000, mtime: float = 1_700_000_000.0) -> FileRecord:
    ids = tuple(f"{abs(hash(path))}.{i}@t" for i in range(-(-size // 400) or 1))
    table = SegmentTable.uniform(ids, 400, size) if size else SegmentTable((), [0], [], [])
    return FileRecord(path, size, mtime, "ok", table, "release")


@pytest.fixture
def store(tmp_path):
    with MetadataStore(tmp_path / "meta", map_size=64 << 20) as store:
        store.put_files(
            [
                record(MOVIE),
                record("/complete/tv/show.s01e01.mp4", 5),
                record("/complete/movies/notes & <x>.nfo", 7),
            ]
        )
        yield store


@pytest.fixture
def resource(store):
    return WebDAVResource(store, fetcher=None, streaming=StreamingConfig())


def call(resource, method: bytes, path: bytes, headers=None, body: bytes = b""):
    request = DummyRequest([])
    request.method = method
    request.path = request.uri = path
    request.content = io.BytesIO(body)
    for name, value in (headers or {}).items():
        request.requestHeaders.setRawHeaders(name, [value])
    result = resource.render(request)
    return request, result


def header(request, name: bytes):
    values = request.responseHeaders.getRawHeaders(name)
    return values[0] if values else None


def test_options_advertises_dav():
    """OPTIONS says DAV class 1, the allowed methods and MS-Author-Via."""
    resource = WebDAVResource(store=None, fetcher=None, streaming=StreamingConfig())
    request, body = call(resource, b"OPTIONS", b"/")
    assert header(request, b"dav") == b"1"
    assert header(request, b"ms-author-via") == b"DAV"
    allow = header(request, b"allow").decode()
    assert {m.strip() for m in allow.split(",")} == {
        "OPTIONS",
        "PROPFIND",
        "GET",
        "HEAD",
        "MKCOL",
        "DELETE",
        "MOVE",
    }
    assert body == b""


@pytest.mark.parametrize("method", [b"PUT", b"POST", b"LOCK", b"PROPPATCH", b"COPY"])
def test_other_methods_are_405(resource, method):
    """Methods we do not implement answer 405 with Allow."""
    request, body = call(resource, method, b"/complete")
    assert request.responseCode == 405
    assert b"PROPFIND" in header(request, b"allow")
    assert method in body


def propfind(resource, path: bytes, depth: bytes | None, body: bytes = b""):
    headers = {b"depth": depth} if depth is not None else {}
    request, result = call(resource, b"PROPFIND", path, headers, body)
    return request, result


def test_propfind_depth_0_on_file(resource):
    """Depth 0 on a file answers one response with its live properties."""
    path = b"/webdav/complete/movies/A%20Movie%20%282020%29/a%20movie.mkv"
    request, body = propfind(resource, path, b"0")
    assert request.responseCode == 207
    assert header(request, b"content-type").startswith(b"application/xml")
    (response,) = ET.fromstring(body).findall(f"{D}response")
    assert response.findtext(f"{D}href") == (
        "/webdav/complete/movies/A%20Movie%20%282020%29/a%20movie.mkv"
    )
    prop = response.find(f"{D}propstat/{D}prop")
    assert prop.findtext(f"{D}getcontentlength") == "1000"
    assert prop.findtext(f"{D}getcontenttype") == "video/x-matroska"
    assert prop.findtext(f"{D}getetag") == '"3e8-18bcfe56800"'
    assert prop.findtext(f"{D}getlastmodified") == "Tue, 14 Nov 2023 22:13:20 GMT"


def test_propfind_depth_1_lists_children(resource):
    """Depth 1 on a collection answers it and its members; collections end with '/'."""
    request, body = propfind(resource, b"/complete/movies", b"1")
    hrefs = [r.findtext(f"{D}href") for r in ET.fromstring(body).findall(f"{D}response")]
    assert hrefs == [
        "/complete/movies/",
        "/complete/movies/A%20Movie%20%282020%29/",
        "/complete/movies/notes%20%26%20%3Cx%3E.nfo",
    ]


def test_propfind_depth_1_on_root(resource):
    """The root lists its top-level directories."""
    request, body = propfind(resource, b"/", b"1")
    hrefs = [r.findtext(f"{D}href") for r in ET.fromstring(body).findall(f"{D}response")]
    assert hrefs == ["/", "/complete/"]


@pytest.mark.parametrize("depth", [None, b"infinity", b"Infinity"])
def test_propfind_infinite_depth_refused(resource, depth):
    """Missing or infinite Depth gets 403 with the propfind-finite-depth precondition."""
    request, body = propfind(resource, b"/", depth)
    assert request.responseCode == 403
    assert ET.fromstring(body).find(f"{D}propfind-finite-depth") is not None


def test_propfind_bad_depth_and_bad_body_are_400(resource):
    """An unknown Depth or a malformed body is a 400 with a short text message."""
    request, body = propfind(resource, b"/", b"2")
    assert request.responseCode == 400 and b"Depth" in body
    request, body = propfind(resource, b"/", b"1", b"<D:propfind xmlns:D='DAV:'>")
    assert request.responseCode == 400 and b"well-formed" in body


def test_propfind_named_props_with_unknown(resource):
    """Requested unknown properties come back in a 404 propstat."""
    body = (
        b'<propfind xmlns="DAV:" xmlns:Z="urn:z"><prop><getcontentlength/><Z:x/></prop></propfind>'
    )
    request, result = propfind(resource, b"/complete/tv/show.s01e01.mp4", b"0", body)
    statuses = [p.findtext(f"{D}status") for p in ET.fromstring(result).iter(f"{D}propstat")]
    assert statuses == ["HTTP/1.1 200 OK", "HTTP/1.1 404 Not Found"]


def test_propfind_missing_is_404(resource):
    """PROPFIND of a path that does not exist is 404."""
    request, _ = propfind(resource, b"/nope", b"0")
    assert request.responseCode == 404


def test_bad_path_is_400(resource):
    """Traversal attempts are refused with 400 before touching the store."""
    request, body = propfind(resource, b"/complete/%2e%2e/x", b"0")
    assert request.responseCode == 400 and b".." in body


def test_delete_file_and_directory(resource, store):
    """DELETE removes a file or a whole directory from metadata: 204, then 404."""
    request, _ = call(resource, b"DELETE", b"/complete/tv/show.s01e01.mp4")
    assert request.responseCode == 204
    assert store.stat("/complete/tv/show.s01e01.mp4") is None
    request, _ = call(resource, b"DELETE", b"/webdav/complete/movies/")
    assert request.responseCode == 204
    assert store.get_file(MOVIE) is None
    request, _ = call(resource, b"DELETE", b"/complete/movies")
    assert request.responseCode == 404


def test_delete_root_and_finite_depth_refused(resource):
    """The root cannot be deleted; DELETE with Depth 0 is a 400."""
    request, _ = call(resource, b"DELETE", b"/")
    assert request.responseCode == 403
    request, _ = call(resource, b"DELETE", b"/complete", {b"depth": b"0"})
    assert request.responseCode == 400


def test_move_to_new_name_is_201(resource, store):
    """MOVE to a new path (absolute URL, same host) renames: 201."""
    request, _ = call(
        resource,
        b"MOVE",
        b"/complete/tv/show.s01e01.mp4",
        {
            b"destination": b"http://dav.local:8080/webdav/complete/tv/renamed%20show.mp4",
            b"host": b"dav.local:8080",
        },
    )
    assert request.responseCode == 201
    assert store.get_file("/complete/tv/renamed show.mp4").size == 5
    assert store.stat("/complete/tv/show.s01e01.mp4") is None


def test_move_overwrite(resource, store):
    """Overwrite F onto an existing file is 412; Overwrite T replaces it: 204."""
    src, dst = b"/complete/tv/show.s01e01.mp4", b"/complete/movies/notes%20%26%20%3Cx%3E.nfo"
    request, _ = call(resource, b"MOVE", src, {b"destination": dst, b"overwrite": b"F"})
    assert request.responseCode == 412
    request, _ = call(resource, b"MOVE", src, {b"destination": dst})
    assert request.responseCode == 204
    assert store.get_file("/complete/movies/notes & <x>.nfo").size == 5


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 400),
        ({b"destination": b"http://elsewhere/x", b"host": b"here"}, 502),
        ({b"destination": b"/complete/tv/show.s01e01.mp4"}, 403),
        ({b"destination": b"/missing/dir/x.mp4"}, 409),
        ({b"destination": b"/x", b"overwrite": b"maybe"}, 400),
        ({b"destination": b"/%2e%2e/x"}, 400),
    ],
)
def test_move_refusals(resource, headers, status):
    """MOVE without a usable Destination, to another host, onto itself or nowhere is refused."""
    request, _ = call(resource, b"MOVE", b"/complete/tv/show.s01e01.mp4", headers)
    assert request.responseCode == status


def test_move_missing_source_is_404(resource):
    """MOVE of a path that does not exist is 404."""
    request, _ = call(resource, b"MOVE", b"/nope", {b"destination": b"/other"})
    assert request.responseCode == 404


def test_mkcol_makes_a_folder(resource, store):
    """MKCOL of a new name in an existing folder is 201 and the folder lists empty."""
    request, _ = call(resource, b"MKCOL", b"/webdav/library/")
    assert request.responseCode == 201
    request, _ = call(resource, b"MKCOL", b"/library/Show%20%C5%8C%20(2024)")
    assert request.responseCode == 201
    assert store.stat("/library/Show Ō (2024)").is_dir
    assert store.listdir("/library/Show Ō (2024)") == []


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (b"/complete", b"", 405),
        (b"/complete/tv/show.s01e01.mp4", b"", 405),
        (b"/", b"", 405),
        (b"/no/such/parent", b"", 409),
        (b"/complete/tv/show.s01e01.mp4/sub", b"", 409),
        (b"/webdav/api", b"", 403),
        (b"/webdav/ui", b"", 403),
        (b"/newdir", b"<x/>", 415),
        (b"/a/%2e%2e", b"", 400),
    ],
)
def test_mkcol_refusals(resource, store, path, body, status):
    """MKCOL where a name exists (405), without a parent (409), of a reserved top-level
    name (403), with a body (415) or on a bad path (400) makes nothing."""
    before = sorted(e.path for e in store.listdir("/"))
    request, _ = call(resource, b"MKCOL", path, body=body)
    assert request.responseCode == status
    assert sorted(e.path for e in store.listdir("/")) == before


def test_library_move_into_new_folder_reads_the_same_record(resource, store):
    """mkdir + mv as Sonarr does it: the moved file keeps its segment table, the
    release folder keeps its other files."""
    before = store.get_file(MOVIE)
    assert call(resource, b"MKCOL", b"/library")[0].responseCode == 201
    assert call(resource, b"MKCOL", b"/library/Movie%20(2020)")[0].responseCode == 201
    dst = b"/library/Movie%20(2020)/Movie%20(2020).mkv"
    request, _ = call(resource, b"MOVE", MOVIE.replace(" ", "%20").encode(), {b"destination": dst})
    assert request.responseCode == 201
    after = store.get_file("/library/Movie (2020)/Movie (2020).mkv")
    assert after.segments.message_ids == before.segments.message_ids
    assert list(after.segments.offsets) == list(before.segments.offsets)
    assert (after.size, after.mtime, after.release) == (before.size, before.mtime, before.release)
    assert store.get_file(MOVIE) is None
    assert store.get_file("/complete/movies/notes & <x>.nfo") is not None


def test_move_folder_across_the_tree(resource, store):
    """MOVE of a folder carries every file below it to the new place."""
    request, _ = call(resource, b"MOVE", b"/complete/movies", {b"destination": b"/films"})
    assert request.responseCode == 201
    assert store.get_file("/films/A Movie (2020)/a movie.mkv").size == 1000
    assert store.stat("/complete/movies") is None
    assert [e.name for e in store.listdir("/complete")] == ["tv"]


def test_move_to_reserved_top_level_name_is_403(resource, store):
    """MOVE onto /api (served by the site, never by WebDAV) is refused."""
    request, _ = call(resource, b"MOVE", b"/complete/tv", {b"destination": b"/webdav/api"})
    assert request.responseCode == 403
    assert store.stat("/complete/tv").is_dir


def test_get_directory_lists_html(resource):
    """GET of a directory is an HTML page linking each entry, names escaped."""
    request, body = call(resource, b"GET", b"/webdav/complete/movies/")
    assert request.responseCode is None or request.responseCode == 200
    assert header(request, b"content-type") == b"text/html; charset=utf-8"
    assert b'href="/webdav/complete/movies/A%20Movie%20%282020%29/"' in body
    assert b"notes &amp; &lt;x&gt;.nfo" in body
    assert header(request, b"content-length") == str(len(body)).encode()


def test_head_file_sends_headers_and_fetches_nothing(resource):
    """HEAD of a file sets length, type, ETag and ranges support and returns no body."""
    request, body = call(
        resource, b"HEAD", b"/complete/tv/show.s01e01.mp4", {b"range": b"bytes=1-2"}
    )
    assert body == b""
    assert request.responseCode == 206
    assert header(request, b"content-length") == b"2"
    assert header(request, b"content-range") == b"bytes 1-2/5"
    assert header(request, b"accept-ranges") == b"bytes"
    assert header(request, b"content-type") == b"video/mp4"


def test_get_unsatisfiable_range_is_416(resource):
    """A range past the end is 416 with Content-Range bytes */size."""
    request, body = call(resource, b"GET", b"/complete/tv/show.s01e01.mp4", {b"range": b"bytes=5-"})
    assert request.responseCode == 416
    assert header(request, b"content-range") == b"bytes */5"


def test_get_missing_is_404(resource):
    """GET of a missing path is 404."""
    request, _ = call(resource, b"GET", b"/complete/none.mkv")
    assert request.responseCode == 404


def test_metadata_error_is_500_without_traceback():
    """A store failure becomes a 500 with one short line, not a traceback."""

    class BrokenStore:
        def get_file(self, path):
            raise MetadataError("metadata record truncated: 3 bytes")

    resource = WebDAVResource(BrokenStore(), fetcher=None, streaming=StreamingConfig())
    request, body = call(resource, b"GET", b"/x.mkv")
    assert request.responseCode == 500
    assert body == b"metadata store error: metadata record truncated: 3 bytes\n"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.MKV", "video/x-matroska"),
        ("a.mp4", "video/mp4"),
        ("a.m2ts", "video/mp2t"),
        ("a.srt", "application/x-subrip"),
        ("a.txt", "text/plain"),
        ("noext", "application/octet-stream"),
    ],
)
def test_content_types(name, expected):
    """Media types come from our table first, then mimetypes, else octet-stream."""
    assert content_type_for(name) == expected
