"""The sendfile path's edges: which requests may use it, and its file handles."""

from __future__ import annotations

import os
import tempfile

from twisted.internet import reactor
from twisted.web.test.requesthelper import DummyRequest

from altmount.stream import cache_disk
from altmount.web.sendfile import direct_capable


def test_requests_without_a_plain_tcp_socket_do_not_write_directly():
    """A request whose channel is not a plain TCP socket (here a test double) falls back."""
    assert direct_capable(DummyRequest([b"x"]), reactor) is False


def test_a_file_segment_reads_and_closes_once():
    """A FileSegment reads from its offset, and closing twice or dropping it is safe."""
    with tempfile.TemporaryDirectory() as root:
        message_id = "part1@x"
        cache_disk.scan(root)
        cache_disk.write_entry(root, message_id, b"0123456789", 700, 0)
        segment = cache_disk.open_entry(root, message_id)
        assert (len(segment), segment.begin, segment.read(3, 4)) == (10, 700, b"3456")
        fd = segment.fd
        segment.close()
        segment.close()
        try:
            os.fstat(fd)
            closed = False
        except OSError:
            closed = True
        assert closed and segment.fd == -1
        before = len(os.listdir("/proc/self/fd"))
        again = cache_disk.open_entry(root, message_id)
        assert len(os.listdir("/proc/self/fd")) == before + 1
        del again
        assert len(os.listdir("/proc/self/fd")) == before
