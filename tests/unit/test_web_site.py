"""The whole site over a StringTransport: routing, auth, streamed GET/HEAD, errors, disconnects."""

from __future__ import annotations

import base64
import logging
import random
import re

import pytest
from twisted.internet.abstract import FileDescriptor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from altmount.config import Config, StreamingConfig, WebDAVConfig
from altmount.errors import ArticleNotFound
from altmount.logsetup import StructuredFormatter
from altmount.metadata import FileRecord, MetadataStore, SegmentTable
from altmount.web.site import SEND_LIMIT, _Channel, build_site

PART = 1000
DATA = random.Random(7).randbytes(10 * PART + 123)
PATH = "/complete/movies/Film/film.mkv"
AUTH = b"Basic " + base64.b64encode(b"usenet:pw")


class MemoryFetcher:
    """Decoded segments straight from DATA; instant unless `manual`."""

    def __init__(self, manual=False, fail_at=None):
        self.manual = manual
        self.fail_at = fail_at
        self.pending: dict[int, Deferred] = {}
        self.cancelled: list[int] = []

    def fetch(self, table, index, priority=0, *, path=""):
        if index == self.fail_at:
            return fail(ArticleNotFound(table.message_ids[index]))
        data = DATA[index * PART : (index + 1) * PART]
        if not self.manual:
            return succeed(data)
        d = Deferred(lambda _d: self.cancelled.append(index))
        self.pending[index] = d
        return d

    def answer(self, index):
        self.pending.pop(index).callback(DATA[index * PART : (index + 1) * PART])


class Response:
    """A parsed HTTP/1.1 response."""

    def __init__(self, raw: bytes):
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.status = int(lines[0].split(b" ")[1])
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            self.headers[name.strip().lower()] = value.strip()


@pytest.fixture
def store(tmp_path):
    with MetadataStore(tmp_path / "meta", map_size=64 << 20) as store:
        ids = tuple(f"p{i}@t" for i in range(11))
        store.put_files(
            [
                FileRecord(
                    PATH,
                    len(DATA),
                    1_700_000_000.0,
                    "ok",
                    SegmentTable.uniform(ids, PART, len(DATA)),
                    "Film",
                )
            ]
        )
        yield store


def config(debug=False, user="usenet", password="pw", missing_article_policy="zero_fill_media"):
    return Config(
        webdav=WebDAVConfig(user=user, password=password, debug=debug),
        streaming=StreamingConfig(
            max_range_size=1 << 20,
            streaming_chunk_size=64 * 1024,
            missing_article_policy=missing_article_policy,
        ),
    )


def connect(site):
    # No idle timeout: it would be a timer on the global reactor that outlives this test
    # (a StringTransport never closes) and fails the next trial test as a dirty reactor.
    site.timeOut = None
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def send(site, method=b"GET", path=b"/", headers=None, auth=True):
    protocol, transport = connect(site)
    lines = [method + b" " + path + b" HTTP/1.1", b"Host: localhost"]
    if auth:
        lines.append(b"Authorization: " + AUTH)
    lines += [name + b": " + value for name, value in (headers or {}).items()]
    protocol.dataReceived(b"\r\n".join(lines) + b"\r\n\r\n")
    return protocol, transport


def request(site, method=b"GET", path=b"/", headers=None, auth=True):
    protocol, transport = send(site, method, path, headers, auth)
    return Response(transport.value()), protocol, transport


def test_live_needs_no_auth(store):
    """/live answers 200 OK without credentials."""
    response, _, _ = request(
        build_site(config(), store, MemoryFetcher()), path=b"/live", auth=False
    )
    assert (response.status, response.body) == (200, b"OK")


@pytest.mark.parametrize("path", [b"/", b"/webdav/", b"/complete/movies/Film/film.mkv"])
def test_webdav_needs_auth(store, path):
    """WebDAV at / and /webdav/ answers 401 with the Basic challenge without credentials."""
    response, _, _ = request(build_site(config(), store, MemoryFetcher()), path=path, auth=False)
    assert response.status == 401
    assert response.headers[b"www-authenticate"] == b'Basic realm="altmount"'


def test_auth_off_when_unconfigured(store):
    """With an empty user and password WebDAV is open."""
    site = build_site(config(user="", password=""), store, MemoryFetcher())
    response, _, _ = request(site, path=b"/webdav/complete/", auth=False)
    assert response.status == 200


def test_reserved_names_go_to_extra_resources_or_404_json(store):
    """Mounted reserved names get their resource (no auth from us); others 404 JSON."""
    api = Resource()
    api.isLeaf = True
    api.render_GET = lambda request: b"api here"
    site = build_site(config(), store, MemoryFetcher(), extra_resources={b"api": api})
    response, _, _ = request(site, path=b"/api/queue", auth=False)
    assert (response.status, response.body) == (200, b"api here")
    response, _, _ = request(site, path=b"/sabnzbd/api", auth=False)
    assert response.status == 404
    assert response.headers[b"content-type"] == b"application/json"


def test_extra_resources_must_use_reserved_names(store):
    """Mounting anything but a reserved name is a programming error."""
    with pytest.raises(ValueError):
        build_site(config(), store, MemoryFetcher(), extra_resources={b"other": Resource()})


def test_full_get_streams_whole_file(store):
    """GET without Range is 200 with the whole file and the file headers."""
    response, _, _ = request(
        build_site(config(), store, MemoryFetcher()), path=b"/webdav/complete/movies/Film/film.mkv"
    )
    assert response.status == 200
    assert response.body == DATA
    assert response.headers[b"content-length"] == str(len(DATA)).encode()
    assert response.headers[b"accept-ranges"] == b"bytes"
    assert response.headers[b"content-type"] == b"video/x-matroska"
    assert response.headers[b"etag"].startswith(b'"')
    assert response.headers[b"last-modified"] == b"Tue, 14 Nov 2023 22:13:20 GMT"


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        (b"bytes=0-0", 0, 1),
        (b"bytes=999-1000", 999, 1001),
        (b"bytes=5000-", 5000, len(DATA)),
        (b"bytes=-123", len(DATA) - 123, len(DATA)),
        (b"bytes=2500-7499", 2500, 7500),
    ],
)
def test_range_get(store, header, start, end):
    """A Range GET is 206 with Content-Range and exactly the requested bytes."""
    response, _, _ = request(
        build_site(config(), store, MemoryFetcher()), path=PATH.encode(), headers={b"Range": header}
    )
    assert response.status == 206
    assert response.body == DATA[start:end]
    assert response.headers[b"content-range"] == b"bytes %d-%d/%d" % (start, end - 1, len(DATA))
    assert response.headers[b"content-length"] == str(end - start).encode()


def test_unsatisfiable_range_is_416(store):
    """A Range past the end is 416 with Content-Range bytes */size."""
    response, _, _ = request(
        build_site(config(), store, MemoryFetcher()),
        path=PATH.encode(),
        headers={b"Range": b"bytes=20000-"},
    )
    assert response.status == 416
    assert response.headers[b"content-range"] == b"bytes */%d" % len(DATA)


def test_head_sends_headers_only_and_fetches_nothing(store):
    """HEAD answers the GET headers, no body, and requests no segment."""
    fetcher = MemoryFetcher(manual=True)
    response, _, _ = request(
        build_site(config(), store, fetcher), method=b"HEAD", path=PATH.encode()
    )
    assert response.status == 200
    assert response.headers[b"content-length"] == str(len(DATA)).encode()
    assert response.body == b""
    assert fetcher.pending == {}


def test_client_disconnect_cancels_pending_fetches(store):
    """When the client goes away mid-stream every pending fetch is cancelled."""
    fetcher = MemoryFetcher(manual=True)
    protocol, transport = send(build_site(config(), store, fetcher), path=PATH.encode())
    fetcher.answer(0)
    assert Response(transport.value()).body == DATA[:PART]
    pending = sorted(fetcher.pending)
    assert len(pending) >= 2
    protocol.connectionLost(Failure(ConnectionDone()))
    assert sorted(fetcher.cancelled) == pending


def test_error_before_first_byte_is_502(store, caplog):
    """With missing_article_policy fail, a missing first article is a 502 with a readable message."""
    with caplog.at_level(logging.ERROR):
        response, _, transport = request(
            build_site(config(missing_article_policy="fail"), store, MemoryFetcher(fail_at=0)),
            path=PATH.encode(),
        )
    assert response.status == 502
    assert b"not found" in response.body
    assert response.headers[b"content-length"] == str(len(response.body)).encode()
    assert b"content-range" not in response.headers
    assert any("segment 0" in r.getMessage() for r in caplog.records)


def test_missing_article_is_zero_filled_by_default(store):
    """By default a missing article of a media file is served as zeros of its exact size."""
    response, _, _ = request(
        build_site(config(), store, MemoryFetcher(fail_at=1)), path=PATH.encode()
    )
    assert response.status == 200
    assert response.body == DATA[:PART] + bytes(PART) + DATA[2 * PART :]


def test_error_mid_stream_closes_connection(store):
    """With policy fail, a missing article after bytes went out closes the connection: no lies."""
    fetcher = MemoryFetcher(manual=True)
    site = build_site(config(missing_article_policy="fail"), store, fetcher)
    protocol, transport = send(site, path=PATH.encode())
    for index in range(3):
        fetcher.answer(index)
    fetcher.pending.pop(3).errback(ArticleNotFound("p3@t"))
    response = Response(transport.value())
    assert response.status == 200
    assert response.body == DATA[: 3 * PART]
    assert transport.disconnecting


def test_debug_logs_each_request(store, caplog):
    """With webdav.debug each request is one line: its id, method, path, status, bytes, time."""
    site = build_site(config(debug=True), store, MemoryFetcher())
    with caplog.at_level(logging.INFO, logger="altmount.web.site"):
        response, _, _ = request(site, path=PATH.encode(), headers={b"Range": b"bytes=0-99"})
    (record,) = [r for r in caplog.records if r.name == "altmount.web.site"]
    request_id = response.headers[b"x-request-id"].decode()
    assert re.fullmatch(r"[0-9a-f]{8}", request_id)
    line = StructuredFormatter().format(record)
    pattern = (
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO    altmount\.web\.site: "
        rf"\[request_id={request_id}\] GET {re.escape(PATH)} -> 206, 100 bytes, \d+\.\d ms"
    )
    assert re.fullmatch(pattern, line), line


def test_each_request_gets_its_own_id(store):
    """Every response carries a fresh X-Request-Id, with or without webdav.debug."""
    site = build_site(config(), store, MemoryFetcher())
    ids = {request(site, path=b"/live", auth=False)[0].headers[b"x-request-id"] for _ in range(5)}
    assert len(ids) == 5


def test_debug_line_masks_credentials_in_the_query(store, caplog):
    """An apikey or ma_password in the URL is logged as ***."""
    site = build_site(config(debug=True), store, MemoryFetcher())
    with caplog.at_level(logging.INFO, logger="altmount.web.site"):
        request(site, path=b"/live?apikey=0123456789abcdef&ma_password=hunter22&mode=queue")
    (line,) = [r.getMessage() for r in caplog.records if r.name == "altmount.web.site"]
    assert "0123456789abcdef" not in line and "hunter22" not in line
    assert "apikey=***&ma_password=***&mode=queue" in line


def test_http_connections_send_article_sized_writes() -> None:
    """A socket transport of the site sends up to SEND_LIMIT per send(), not Twisted's 128 KiB."""
    transport = FileDescriptor(reactor=Clock())
    channel = _Channel()
    channel.callLater = Clock().callLater
    channel.makeConnection(transport)
    assert transport.SEND_LIMIT == SEND_LIMIT > FileDescriptor.SEND_LIMIT
    channel.connectionLost(Failure(ConnectionDone()))
