"""Files known to be corrupted are left out of WebDAV listings (PROPFIND Depth 1 and the HTML
listing of a GET) unless the request says `X-Show-Corrupted: true`."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pytest
from twisted.web.test.requesthelper import DummyRequest

from altmount.config import StreamingConfig
from altmount.metadata import FileRecord, MetadataStore, SegmentTable
from altmount.web.webdav import WebDAVResource

FOLDER = "/complete/movies/Film"
GOOD = f"{FOLDER}/good.mkv"
BAD = f"{FOLDER}/bad.mkv"


class FakeOps:
    """The part of `altmount.ops.Ops` WebDAV listings use: the corrupted set."""

    streaming = StreamingConfig()

    def __init__(self, corrupted: set[str]) -> None:
        self.corrupted = corrupted

    def is_hidden(self, path: str) -> bool:
        return path in self.corrupted


def record(path: str) -> FileRecord:
    return FileRecord(
        path, 800, 1_700_000_000.0, "ok", SegmentTable.uniform(("a@t", "b@t"), 400, 800), "Film"
    )


@pytest.fixture
def store(tmp_path):
    with MetadataStore(tmp_path / "meta", map_size=64 << 20) as store:
        store.put_files([record(GOOD), record(BAD)])
        yield store


def call(resource, method: bytes, path: str, headers=None):
    request = DummyRequest([])
    request.method = method
    request.path = request.uri = path.encode()
    request.content = io.BytesIO(b"")
    for name, value in (headers or {}).items():
        request.requestHeaders.setRawHeaders(name, [value])
    return request, resource.render(request)


def propfind_names(resource, headers=None) -> set[str]:
    request, body = call(resource, b"PROPFIND", FOLDER + "/", {b"Depth": b"1", **(headers or {})})
    assert request.responseCode == 207
    hrefs = [element.text for element in ET.fromstring(body).iter("{DAV:}href")]
    return {href.rsplit("/", 1)[-1] for href in hrefs if not href.endswith("/")}


def listing(resource, headers=None) -> str:
    request, body = call(resource, b"GET", FOLDER + "/", headers)
    assert request.responseCode in (None, 200)
    return body.decode()


def test_propfind_hides_corrupted_file(store):
    """PROPFIND Depth 1 lists the healthy file and not the corrupted one."""
    resource = WebDAVResource(store, None, StreamingConfig(), ops=FakeOps({BAD}))
    assert propfind_names(resource) == {"good.mkv"}


def test_html_listing_hides_corrupted_file(store):
    """The HTML listing of the folder leaves the corrupted file out."""
    page = listing(WebDAVResource(store, None, StreamingConfig(), ops=FakeOps({BAD})))
    assert "good.mkv" in page and "bad.mkv" not in page


@pytest.mark.parametrize("value", [b"true", b"TRUE", b" true "])
def test_show_corrupted_header_lists_everything(store, value):
    """With X-Show-Corrupted: true both listings include the corrupted file."""
    resource = WebDAVResource(store, None, StreamingConfig(), ops=FakeOps({BAD}))
    headers = {b"X-Show-Corrupted": value}
    assert propfind_names(resource, headers) == {"good.mkv", "bad.mkv"}
    assert "bad.mkv" in listing(resource, headers)


@pytest.mark.parametrize("value", [b"false", b"1", b"yes", b""])
def test_other_header_values_keep_it_hidden(store, value):
    """Only the value true reveals corrupted files."""
    resource = WebDAVResource(store, None, StreamingConfig(), ops=FakeOps({BAD}))
    assert propfind_names(resource, {b"X-Show-Corrupted": value}) == {"good.mkv"}


def test_nothing_hidden_without_ops_or_when_healthy(store):
    """Without ops, or with no corrupted file, every file is listed."""
    for ops in (None, FakeOps(set())):
        resource = WebDAVResource(store, None, StreamingConfig(), ops=ops)
        assert propfind_names(resource) == {"good.mkv", "bad.mkv"}
        assert "bad.mkv" in listing(resource)


def test_file_becomes_visible_once_no_longer_corrupted(store):
    """Hiding follows the live corrupted set: a file cleared by a re-check is listed again."""
    ops = FakeOps({BAD})
    resource = WebDAVResource(store, None, StreamingConfig(), ops=ops)
    assert propfind_names(resource) == {"good.mkv"}
    ops.corrupted.clear()
    assert propfind_names(resource) == {"good.mkv", "bad.mkv"}


class RecordingOps(FakeOps):
    """FakeOps that also records the library operations WebDAV reports."""

    def __init__(self, corrupted: set[str]) -> None:
        super().__init__(corrupted)
        self.calls: list[tuple[str, ...]] = []

    def moved(self, src: str, dst: str) -> None:
        self.calls.append(("moved", src, dst))

    def deleted(self, path: str) -> None:
        self.calls.append(("deleted", path))


def test_move_and_delete_tell_ops(store):
    """A MOVE and a DELETE are reported to ops (health records follow the file)."""
    ops = RecordingOps(set())
    resource = WebDAVResource(store, fetcher=None, streaming=StreamingConfig(), ops=ops)
    request, _ = call(resource, b"MOVE", BAD, {b"destination": b"/complete/movies/Film/b.mkv"})
    assert request.responseCode == 201
    request, _ = call(resource, b"DELETE", "/complete/movies/Film/b.mkv")
    assert request.responseCode == 204
    assert ops.calls == [
        ("moved", BAD, "/complete/movies/Film/b.mkv"),
        ("deleted", "/complete/movies/Film/b.mkv"),
    ]
