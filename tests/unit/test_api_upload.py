"""The /api root: routing to SABnzbd, POST /api/queue/upload, multipart parsing, body cap."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import random
from typing import Any

from twisted.internet import defer
from twisted.internet.testing import StringTransport
from twisted.web.server import NOT_DONE_YET, Site
from twisted.web.test.requesthelper import DummyRequest

from altmount.config import Config
from altmount.queue.model import QueueItem, State, resolve_priority
from altmount.web.api import ApiRoot
from altmount.web.multipart import BodyLimitedRequest, parse_form
from altmount.web.sabnzbd import SABnzbdAPI

KEY = "fedcba9876543210fedcba9876543210"
NZB = b'<?xml version="1.0"?><nzb xmlns="http://www.newzbin.com/DTD/2003/nzb"></nzb>'
BOUNDARY = b"xYzBoundary"


class AddOnlyQueue:
    """The part of QueueService the upload route uses."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.added: list[tuple[bytes, QueueItem]] = []

    def api_key(self) -> defer.Deferred:
        return defer.succeed(KEY)

    def add(self, nzb, nzb_name, category=None, priority=None, source="api", paused=False):
        category_config = self.config.category(category)
        level, _ = resolve_priority(priority, category_config.priority)
        item = QueueItem(
            len(self.added) + 1,
            "SABnzbd_nzo_aaaaaaaaaaaa",
            nzb_name,
            category_config.name,
            level,
            State.PENDING,
            0,
            "",
            1.0,
            1.0,
            None,
            None,
            "",
            0,
            source,
        )
        self.added.append((nzb, item))
        return defer.succeed(item)


def _form(*fields: tuple[str, str | None, bytes]) -> bytes:
    chunks = []
    for name, filename, data in fields:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        chunks.append(
            b"--"
            + BOUNDARY
            + b"\r\nContent-Disposition: "
            + disposition.encode()
            + b"\r\n\r\n"
            + data
            + b"\r\n"
        )
    return b"".join(chunks) + b"--" + BOUNDARY + b"--\r\n"


def _root(**webdav: Any) -> tuple[ApiRoot, AddOnlyQueue]:
    config = Config()
    config = dataclasses.replace(
        config,
        webdav=dataclasses.replace(config.webdav, **webdav),
        sabnzbd=dataclasses.replace(config.sabnzbd, enabled=True),
    )
    queue = AddOnlyQueue(config)
    sabnzbd = SABnzbdAPI(config, queue, downloader=None)  # type: ignore[arg-type]
    return ApiRoot(config, queue, sabnzbd), queue  # type: ignore[arg-type]


def _post(
    root: ApiRoot,
    body: bytes,
    *,
    headers: dict[bytes, bytes] | None = None,
    args: dict[bytes, bytes] | None = None,
    postpath: list[bytes] | None = None,
    method: bytes = b"POST",
) -> DummyRequest:
    request = DummyRequest(postpath if postpath is not None else [b"queue", b"upload"])
    request.method = method
    request.content = io.BytesIO(body)
    request.requestHeaders.setRawHeaders(
        b"content-type", [b"multipart/form-data; boundary=" + BOUNDARY]
    )
    for name, value in (headers or {}).items():
        request.requestHeaders.setRawHeaders(name, [value])
    for name, value in (args or {}).items():
        request.addArg(name, value)
    result = root.render(request)
    if result != NOT_DONE_YET:
        request.write(result)
        request.finish()
    return request


def _json(request: DummyRequest) -> Any:
    return json.loads(b"".join(request.written))


BASIC = {b"authorization": b"Basic " + base64.b64encode(b"usenet:usenet")}


def test_upload_with_basic_auth_is_201() -> None:
    """A multipart upload with Basic auth enqueues the NZB and answers 201 with the item."""
    root, queue = _root()
    body = _form(
        ("file", "Movie.2021.nzb", NZB), ("category", None, b"movies"), ("priority", None, b"high")
    )
    request = _post(root, body, headers=BASIC)
    assert request.responseCode == 201
    item = _json(request)
    assert (item["nzb_name"], item["category"], item["priority"], item["state"]) == (
        "Movie.2021.nzb",
        "movies",
        "high",
        "pending",
    )
    assert queue.added[0][0] == NZB and queue.added[0][1].source == "api"


def test_upload_with_api_key_header_or_param() -> None:
    """X-Api-Key or apikey= authorize an upload as well as Basic auth."""
    root, queue = _root()
    body = _form(("file", "a.nzb", NZB))
    assert _post(root, body, headers={b"x-api-key": KEY.encode()}).responseCode == 201
    assert _post(root, body, args={b"apikey": KEY.encode()}).responseCode == 201
    assert len(queue.added) == 2


def test_upload_unauthorized() -> None:
    """No or wrong credentials: 401 with the JSON error shape and a Basic challenge."""
    root, queue = _root()
    body = _form(("file", "a.nzb", NZB))
    for headers in ({}, {b"x-api-key": b"wrong"}):
        request = _post(root, body, headers=headers)
        assert request.responseCode == 401
        assert _json(request)["error"]["code"] == "unauthorized"
        assert request.responseHeaders.getRawHeaders(b"www-authenticate")
    assert queue.added == []


def test_upload_without_file_is_400() -> None:
    """A form with no 'file' part is a 400 naming the field."""
    root, _ = _root()
    request = _post(root, _form(("category", None, b"tv")), headers=BASIC)
    assert request.responseCode == 400
    assert "file" in _json(request)["error"]["message"]


def test_upload_bad_priority_is_400() -> None:
    """A priority that is neither a name nor a SABnzbd number is a 400."""
    root, _ = _root()
    request = _post(
        root, _form(("file", "a.nzb", NZB), ("priority", None, b"urgent")), headers=BASIC
    )
    assert request.responseCode == 400 and _json(request)["error"]["code"] == "bad_request"


def test_routes_and_methods() -> None:
    """Unknown routes are 404 and GET on the upload route is 405, both in JSON."""
    root, _ = _root()
    assert _post(root, b"", postpath=[b"nothing"], headers=BASIC).responseCode == 404
    wrong_method = _post(root, b"", method=b"GET", headers=BASIC)
    assert wrong_method.responseCode == 405
    assert _json(wrong_method)["error"]["code"] == "method_not_allowed"


def test_mode_goes_to_sabnzbd() -> None:
    """/api?mode=version is answered by the SABnzbd handler."""
    root, _ = _root()
    request = _post(root, b"", postpath=[], method=b"GET", args={b"mode": b"version"})
    assert _json(request) == {"version": "4.3.0"}


def test_parse_form_keeps_filenames() -> None:
    """parse_form returns each part's name, file name and exact bytes (binary safe)."""
    data = bytes(range(256)) * 4 + b"\r\n--not-the-boundary\r\n"
    parts = parse_form(
        _form(("file", "x.nzb", data), ("cat", None, b"tv")),
        b"multipart/form-data; boundary=" + BOUNDARY,
    )
    assert [(p.name, p.filename, p.data) for p in parts] == [
        ("file", "x.nzb", data),
        ("cat", None, b"tv"),
    ]


def test_parse_form_rejects_non_multipart() -> None:
    """A body without a multipart content type is a RequestError, not a crash."""
    from altmount.errors import RequestError

    try:
        parse_form(b"a=b", b"application/x-www-form-urlencoded")
    except RequestError as exc:
        assert exc.http_status == 400
    else:
        raise AssertionError("expected RequestError")


class _Echo:
    """A resource that counts the requests that reach it."""

    isLeaf = True

    def __init__(self) -> None:
        self.seen = 0

    def render(self, request: Any) -> bytes:
        self.seen += 1
        return b"ok"

    def getChildWithDefault(self, path: bytes, request: Any) -> Any:
        return self


def _site_channel(max_body: int) -> tuple[Any, StringTransport, _Echo]:
    class Limited(BodyLimitedRequest):
        pass

    Limited.max_body = max_body
    echo = _Echo()
    site = Site(echo, requestFactory=Limited)  # type: ignore[arg-type]
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    return channel, transport, echo


def test_body_over_limit_refused_by_length() -> None:
    """A Content-Length above the cap gets 413 and the connection closed, nothing rendered."""
    channel, transport, echo = _site_channel(1000)
    channel.dataReceived(
        b"POST /api/queue/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"a" * 5000
    )
    assert transport.value().startswith(b"HTTP/1.1 413")
    assert transport.disconnecting and echo.seen == 0
    channel.connectionLost(None)


def test_chunked_body_over_limit_refused() -> None:
    """A chunked body is counted as it arrives and refused once past the cap."""
    channel, transport, echo = _site_channel(1000)
    channel.dataReceived(b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(3):
        channel.dataReceived(b"200\r\n" + b"b" * 0x200 + b"\r\n")
    channel.dataReceived(b"0\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 413")
    assert echo.seen == 0
    channel.connectionLost(None)


def test_body_under_limit_passes_in_random_chunks() -> None:
    """A body under the cap, fed in random chunks, reaches the resource normally."""
    channel, transport, echo = _site_channel(10_000)
    raw = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n\r\n" + b"c" * 3000
    rng = random.Random(4)
    offset = 0
    while offset < len(raw):
        step = rng.randint(1, 400)
        channel.dataReceived(raw[offset : offset + step])
        offset += step
    assert b" 200 " in transport.value().split(b"\r\n", 1)[0] and echo.seen == 1
    channel.connectionLost(None)
