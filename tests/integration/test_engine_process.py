"""The process decode pool (`engine.pool: process`) with real worker processes.

The pool is driven without a reactor (`process_replies`) for the decode contract,
and inside the assembled server on the real reactor for a byte-exact stream.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import random
import shutil
import signal
import tempfile

import pytest
import yaml
from engine_archive_rig import WebClient
from twisted.internet import defer, reactor
from twisted.trial import unittest

from altmount import _core, engine_process
from altmount.config import parse_config
from altmount.engine_process import BLOCK_SIZE, ProcessDecodePool
from altmount.errors import DecodePoolError, YencError
from altmount.server import Server
from altmount.testing.articles import post_release, yenc_article
from altmount.testing.nntpserver import listen


def article(size: int, seed: int = 3) -> tuple[bytes, bytes]:
    """(data, dot-stuffed yEnc body) of part 2 of a 3-part post."""
    data = random.Random(seed).randbytes(size)
    body = yenc_article(data, name="f.bin", part=2, total_parts=3, begin=size, file_size=3 * size)
    return data, body


def settle(pool: ProcessDecodePool, deferred: defer.Deferred):
    """Pump replies until `deferred` fires; return its result or raise its failure."""
    outcome: list = []
    deferred.addBoth(outcome.append)
    while not outcome:
        pool.process_replies(5.0)
    if isinstance(outcome[0], defer.Failure):
        outcome[0].raiseException()
    return outcome[0]


@pytest.fixture
def pool():
    started = ProcessDecodePool(None, 2)
    started.start()
    yield started
    started.stop()


def test_decode_matches_core(pool):
    """Every header field and byte equals what _core.decode_article gives in-process."""
    for size in (1, 1000, 384_000, 716_800):
        data, body = article(size, seed=size)
        got = settle(pool, pool.decode(body))
        want = _core.decode_article(body)
        assert bytes(got.data) == data
        assert (got.name, got.part, got.total, got.begin, got.end, got.crc, got.crc_ok) == (
            want.name,
            want.part,
            want.total,
            want.begin,
            want.end,
            want.crc,
            want.crc_ok,
        )


def test_view_is_read_only_and_block_returns_when_released(pool):
    """The data is a read-only view of a block; the block is free again once unused."""
    _, body = article(716_800)
    got = settle(pool, pool.decode(body))
    assert isinstance(got.data, memoryview) and got.data.readonly
    piece = memoryview(got.data)[10:20]
    del got
    assert pool.blocks == (1, 0)  # the slice still holds the block
    del piece
    assert pool.blocks == (1, 1)
    settle(pool, pool.decode(body))
    assert pool.blocks == (1, 1)  # reused, not a new block


def test_copy_gives_bytes_and_frees_the_block(pool):
    """copy=True returns bytes and gives the block back at once."""
    data, body = article(384_000)
    got = settle(pool, pool.decode(body, copy=True))
    assert type(got.data) is bytes and got.data == data
    assert pool.blocks == (1, 1)


def test_body_larger_than_a_block_gets_a_one_off_block(pool):
    """A body over BLOCK_SIZE decodes in a block of its own, copied out and unlinked."""
    data, body = article(BLOCK_SIZE)
    assert len(body) > BLOCK_SIZE
    got = settle(pool, pool.decode(body))
    assert type(got.data) is bytes and got.data == data
    assert pool.blocks == (0, 0)


def test_invalid_yenc_raises_the_same_error_as_core(pool):
    """A body that is not yEnc fails with YencError and _core's message."""
    with pytest.raises(YencError) as caught:
        _core.decode_article(b"hello\r\n")
    with pytest.raises(YencError, match=str(caught.value)):
        settle(pool, pool.decode(b"hello\r\n"))
    assert pool.blocks == (1, 1)


def test_killed_worker_fails_its_jobs_and_is_replaced(pool, monkeypatch):
    """Jobs of a worker that dies fail with DecodePoolError; a new worker takes over."""
    monkeypatch.setattr(engine_process, "MIN_WORKER_LIFETIME", 0.0)
    data, body = article(716_800)
    victim = pool.worker_pids()[0]
    os.kill(victim, signal.SIGSTOP)
    pending = [pool.decode(body) for _ in range(4)]  # two land on the stopped worker
    os.kill(victim, signal.SIGKILL)
    outcomes = []
    for deferred in pending:
        try:
            outcomes.append(bytes(settle(pool, deferred).data) == data)
        except DecodePoolError:
            outcomes.append("lost")
    assert outcomes.count("lost") == 2 and outcomes.count(True) == 2
    assert pool.workers == 2 and victim not in pool.worker_pids()
    assert bytes(settle(pool, pool.decode(body)).data) == data


def test_stop_fails_pending_and_unlinks_shared_memory():
    """stop() fails decodes in flight and leaves nothing in /dev/shm."""
    before = set(os.listdir("/dev/shm"))
    pool = ProcessDecodePool(None, 1)
    pool.start()
    _, body = article(716_800)
    pending = pool.decode(body)
    created = set(os.listdir("/dev/shm")) - before
    pool.stop()
    with pytest.raises(DecodePoolError):
        settle(pool, pending)
    assert created and not created & set(os.listdir("/dev/shm"))
    with pytest.raises(DecodePoolError):
        settle(pool, pool.decode(body))


# -- in the server -------------------------------------------------------------------

SIZE = 3 * 1024 * 1024 + 777
DATA = random.Random(5).randbytes(SIZE)
RELEASE = post_release({"movie.mkv": DATA}, article_size=256 * 1024, salt="procpool")
AUTH = b"Basic " + base64.b64encode(b"u:p")


class ServerWithProcessPool(unittest.TestCase):
    """`engine.pool: process` serves byte-exact files and ranges over real sockets."""

    timeout = 60
    POOL = "process"

    @defer.inlineCallbacks
    def setUp(self):
        nntp, self.factory = listen(reactor, RELEASE.articles)
        self.addCleanup(nntp.stopListening)
        folder = tempfile.mkdtemp(prefix="altmount-procpool-")
        self.addCleanup(shutil.rmtree, folder, True)
        text = yaml.safe_dump(
            {
                "webdav": {"port": 8080, "bind_address": "127.0.0.1", "user": "u", "password": "p"},
                "metadata": {"root_path": os.path.join(folder, "md"), "map_size_mb": 64},
                "database": {"path": os.path.join(folder, "db.sqlite")},
                "engine": {"pool": self.POOL, "decode_workers": 2},
                "providers": [
                    {
                        "name": "A",
                        "host": "127.0.0.1",
                        "port": nntp.getHost().port,
                        "tls": False,
                        "max_connections": 4,
                    }
                ],
            }
        )
        config, _ = parse_config(text, base_dir=".")
        config = dataclasses.replace(config, webdav=dataclasses.replace(config.webdav, port=0))
        self.server = Server(reactor, config)
        port = yield self.server.start()
        yield self.server.probed
        result = yield self.server.engine.importer.import_nzb(RELEASE.nzb, "Movie.nzb")
        self.url = f"http://127.0.0.1:{port.getHost().port}{result.files[0].path}".encode()
        self.web = WebClient()

    @defer.inlineCallbacks
    def tearDown(self):
        yield self.web.close()
        yield self.server.stop()
        yield self.factory.when_idle()

    @defer.inlineCallbacks
    def get(self, range_: str | None = None):
        headers = {b"Authorization": [AUTH]}
        if range_:
            headers[b"Range"] = [range_.encode()]
        response, data = yield self.web.request(b"GET", self.url, headers)
        return response.code, data

    @defer.inlineCallbacks
    def test_full_get_and_ranges_byte_exact(self):
        """A full GET and random ranges decoded in worker processes are byte-exact."""
        self.assertEqual(self.server.engine.process_pool is not None, self.POOL == "process")
        code, data = yield self.get()
        self.assertEqual((code, data == DATA), (200, True))
        rng = random.Random(9)
        for _ in range(5):
            start = rng.randrange(SIZE)
            end = min(SIZE - 1, start + rng.randrange(1, 600_000))
            code, data = yield self.get(f"bytes={start}-{end}")
            self.assertEqual((code, data == DATA[start : end + 1]), (206, True))


class ServerWithInlineDecode(ServerWithProcessPool):
    """`engine.pool: inline` (decode on the reactor thread) serves byte-exact files and ranges."""

    POOL = "inline"
