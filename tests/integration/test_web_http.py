"""The real site on 127.0.0.1 over real HTTP: WebDAV, ranges, auth, and disconnect cleanup.

The server runs in a child process (its own reactor) built from the real site,
the real SegmentFetcher and decode thread pool, and a router stand-in that
serves yEnc articles from memory after a delay, so no NNTP server is needed.
Run as a script (`python test_web_http.py STORE_DIR`) it is that server.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import random
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ARTICLE = 100_000
SLOW_ARTICLE = 50_000
MOVIE = "/complete/movies/Big Film (2024)/big film.mkv"
SLOW = "/complete/slow/slow.mkv"
SECRET = "/complete/movies/Secret/secret.mkv"
SECRET_KEY = bytes(range(32))
SECRET_IV = bytes(range(16))
#: The file is a window of the plaintext (as in a solid 7z folder): it starts this far in.
SECRET_OFFSET = 21
AUTH = {"Authorization": "Basic " + base64.b64encode(b"usenet:secret").decode()}
D = "{DAV:}"


def movie_bytes() -> bytes:
    return random.Random(1).randbytes(3 * 1024 * 1024 + 12345)


def slow_bytes() -> bytes:
    return random.Random(2).randbytes(4 * 1024 * 1024)


def secret_bytes() -> bytes:
    return random.Random(3).randbytes(1024 * 1024 + 77)


def secret_ciphertext() -> bytes:
    """AES-256-CBC of 21 bytes of other data + the file, zero-padded to a block."""
    from cryptography.hazmat.primitives.ciphers import Cipher as AesCipher
    from cryptography.hazmat.primitives.ciphers import algorithms, modes

    plain = b"p" * SECRET_OFFSET + secret_bytes()
    plain += bytes(-len(plain) % 16)
    return AesCipher(algorithms.AES(SECRET_KEY), modes.CBC(SECRET_IV)).encryptor().update(plain)


def serve(store_dir: str) -> None:
    """Child process: build the site over a memory 'Usenet' and print the port."""
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    from twisted.python.threadpool import ThreadPool
    from twisted.web.resource import Resource

    from altmount.config import Config, StreamingConfig, WebDAVConfig
    from altmount.metadata import Cipher, FileRecord, MetadataStore, SegmentTable
    from altmount.stream.fetcher import SegmentFetcher
    from altmount.testing.articles import post_release
    from altmount.web.site import build_site

    class DelayedRouter:
        """Answers body() from memory after a delay; cancellation drops the timer."""

        def __init__(self, articles, delays):
            self.articles = articles
            self.delays = delays

        def body_from(self, message_id, priority=0, exclude=frozenset()):
            call = None
            d = Deferred(lambda _d: call.cancel())
            delay = self.delays[message_id.split(".")[0]]
            call = reactor.callLater(delay, d.callback, (self.articles[message_id], "delayed"))
            return d

    class Stats(Resource):
        isLeaf = True

        def render_GET(self, request):
            stats = fetcher.stats()
            request.setHeader(b"Content-Type", b"application/json")
            return json.dumps({name: getattr(stats, name) for name in stats.__slots__}).encode()

    movie = post_release({"big film.mkv": movie_bytes()}, article_size=ARTICLE, salt="m")
    slow = post_release({"slow.mkv": slow_bytes()}, article_size=SLOW_ARTICLE, salt="s")
    store = MetadataStore(store_dir, map_size=64 << 20)
    delays = {}
    for path, release, size in ((MOVIE, movie, ARTICLE), (SLOW, slow, SLOW_ARTICLE)):
        posted = release.files[0]
        table = SegmentTable.uniform(posted.message_ids, size, len(posted.data))
        store.put_files([FileRecord(path, len(posted.data), 1_700_000_000.0, "ok", table, "r")])
        delays[posted.message_ids[0].split(".")[0]] = 0.002 if release is movie else 0.05
    secret = post_release({"secret.bin": secret_ciphertext()}, article_size=ARTICLE, salt="c")
    posted = secret.files[0]
    table = SegmentTable.uniform(posted.message_ids, ARTICLE, len(posted.data))
    cipher = Cipher(SECRET_KEY, SECRET_IV, SECRET_OFFSET, len(secret_bytes()))
    store.put_files(
        [FileRecord(SECRET, cipher.size, 1_700_000_000.0, "ok", table, "r", "", cipher)]
    )
    delays[posted.message_ids[0].split(".")[0]] = 0.002
    pool = ThreadPool(minthreads=1, maxthreads=2, name="decode")
    pool.start()
    reactor.addSystemEventTrigger("during", "shutdown", pool.stop)
    router = DelayedRouter({**movie.articles, **slow.articles, **secret.articles}, delays)
    fetcher = SegmentFetcher(reactor, router, pool, 4)
    config = Config(
        webdav=WebDAVConfig(user="usenet", password="secret", bind_address="127.0.0.1", port=1),
        streaming=StreamingConfig(
            max_range_size=2 << 20, streaming_chunk_size=1 << 20, max_download_workers=4
        ),
    )
    site = build_site(config, store, fetcher, extra_resources={b"metrics": Stats()})
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    print(port.getHost().port, flush=True)
    reactor.run()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store_dir = tmp_path_factory.mktemp("store")
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    child = subprocess.Popen(
        [sys.executable, __file__, str(store_dir)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = child.stdout.readline()
        assert line, "test server did not start"
        yield int(line)
    finally:
        child.terminate()
        child.wait(timeout=10)


def fetch(port, method, path, headers=None, body=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def quoted(path: str) -> str:
    from urllib.parse import quote

    return quote(path)


def stats(port) -> dict:
    return json.loads(fetch(port, "GET", "/metrics")[2])


def test_live_without_auth(server):
    """/live answers 200 OK without credentials."""
    assert fetch(server, "GET", "/live")[::2] == (200, b"OK")


def test_webdav_without_auth_is_401(server):
    """WebDAV refuses requests without credentials with a Basic challenge."""
    status, headers, _ = fetch(server, "GET", quoted(MOVIE))
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Basic realm="altmount"'


def test_full_get(server):
    """A plain GET streams the whole file, byte for byte, with its length."""
    status, headers, body = fetch(server, "GET", "/webdav" + quoted(MOVIE), AUTH)
    assert status == 200
    assert body == movie_bytes()
    assert int(headers["Content-Length"]) == len(body)
    assert headers["Content-Type"] == "video/x-matroska"


@pytest.mark.parametrize(
    "header",
    [
        "bytes=0-0",
        "bytes=99999-100000",
        "bytes=150000-1234567",
        "bytes=-1",
        "bytes=-250000",
        "bytes=3000000-",
        "bytes=0-99999999",
    ],
)
def test_range_get(server, header):
    """Range GETs (open, closed, suffix, across segments) answer 206 with exactly those bytes."""
    data = movie_bytes()
    size = len(data)
    spec = header.removeprefix("bytes=")
    first, _, last = spec.partition("-")
    if not first:
        start, end = size - min(int(last), size), size
    else:
        start, end = int(first), min(int(last) + 1, size) if last else size
    status, headers, body = fetch(server, "GET", quoted(MOVIE), {**AUTH, "Range": header})
    assert status == 206
    assert headers["Content-Range"] == f"bytes {start}-{end - 1}/{size}"
    assert body == data[start:end]


@pytest.mark.parametrize(
    "header",
    [
        None,
        "bytes=0-0",
        "bytes=5-20",
        "bytes=99990-300017",
        "bytes=-1",
        "bytes=-100",
        "bytes=1048000-",
    ],
)
def test_encrypted_member_decrypts_any_range(server, header):
    """An encrypted archive member streams as plaintext: whole, from mid-block, across
    articles and to its unaligned end, reading only the ciphertext blocks it needs."""
    data = secret_bytes()
    headers = {**AUTH, "Range": header} if header else AUTH
    status, got_headers, body = fetch(server, "GET", quoted(SECRET), headers)
    if header is None:
        assert (status, body) == (200, data)
        assert int(got_headers["Content-Length"]) == len(data)
        return
    spec = header.removeprefix("bytes=")
    first, _, last = spec.partition("-")
    if not first:
        start, end = len(data) - int(last), len(data)
    else:
        start, end = int(first), min(int(last) + 1, len(data)) if last else len(data)
    assert status == 206
    assert got_headers["Content-Range"] == f"bytes {start}-{end - 1}/{len(data)}"
    assert body == data[start:end]


def test_unsatisfiable_range(server):
    """A range past the end is 416 with the size in Content-Range."""
    status, headers, _ = fetch(server, "GET", quoted(MOVIE), {**AUTH, "Range": "bytes=99999999-"})
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{len(movie_bytes())}"


def test_head(server):
    """HEAD gives the length and validators and no body."""
    status, headers, body = fetch(server, "HEAD", quoted(MOVIE), AUTH)
    assert (status, body) == (200, b"")
    assert int(headers["Content-Length"]) == len(movie_bytes())
    assert headers["Accept-Ranges"] == "bytes" and headers["ETag"].startswith('"')


def test_propfind_depth_0_and_1(server):
    """PROPFIND Depth 0 describes the collection; Depth 1 adds its members with sizes."""
    directory = "/webdav" + quoted("/complete/movies/Big Film (2024)") + "/"
    status, _, body = fetch(server, "PROPFIND", directory, {**AUTH, "Depth": "0"})
    assert status == 207
    (only,) = ET.fromstring(body).findall(f"{D}response")
    assert only.findtext(f"{D}href") == directory
    assert only.find(f"{D}propstat/{D}prop/{D}resourcetype/{D}collection") is not None
    status, _, body = fetch(server, "PROPFIND", directory, {**AUTH, "Depth": "1"})
    responses = ET.fromstring(body).findall(f"{D}response")
    assert [r.findtext(f"{D}href") for r in responses] == [directory, directory + "big%20film.mkv"]
    prop = responses[1].find(f"{D}propstat/{D}prop")
    assert int(prop.findtext(f"{D}getcontentlength")) == len(movie_bytes())
    assert prop.findtext(f"{D}displayname") == "big film.mkv"


def test_client_disconnect_cancels_fetches(server):
    """A client that hangs up mid-stream leaves no download active or queued within a second."""
    before = stats(server)["segments"]
    connection = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    connection.request("GET", quoted(SLOW), headers=AUTH)
    response = connection.getresponse()
    assert response.status == 200
    assert len(response.read(200_000)) == 200_000
    during = stats(server)
    assert during["active"] + during["queued"] > 0
    connection.sock.shutdown(2)
    connection.close()
    deadline = time.monotonic() + 1.0
    while True:
        after = stats(server)
        if after["active"] == 0 and after["queued"] == 0:
            break
        assert time.monotonic() < deadline, f"fetches still running: {after}"
        time.sleep(0.02)
    total = len(slow_bytes()) // SLOW_ARTICLE
    assert after["segments"] - before < total // 2


if __name__ == "__main__":
    serve(sys.argv[1])
