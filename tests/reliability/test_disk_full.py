"""The metadata store on a full disk: imports fail with a clear error, files keep streaming.

Needs root to mount a 2 MiB tmpfs under the metadata directory; skipped otherwise.
"""

from __future__ import annotations

import os
import subprocess
import tempfile

from reliability_harness import Rig, generate
from twisted.internet import defer

from altmount.errors import AltmountError
from altmount.testing.articles import post_release

ARTICLE = 256 * 1024
DATA = generate(2 * 1024 * 1024, 5)
FIRST = post_release({"first.mkv": DATA}, article_size=ARTICLE, salt="rel-full1")
#: Many small files: a metadata write of several pages.
SECOND = post_release(
    {f"second{n}.mkv": generate(20_000, n) for n in range(40)},
    article_size=ARTICLE,
    salt="rel-full2",
)


class DiskFull(Rig):
    """A metadata store whose file system fills up while the server runs."""

    def mount(self) -> str:
        if os.geteuid() != 0:
            self.skipTest("mounting a tmpfs needs root")
        where = tempfile.mkdtemp(prefix="altmount-full-")
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", where],
            capture_output=True,
            text=True,
        )
        if mounted.returncode != 0:
            os.rmdir(where)
            self.skipTest(f"mount -t tmpfs not permitted: {mounted.stderr.strip()}")
        self.addCleanup(os.rmdir, where)
        self.addCleanup(subprocess.run, ["umount", "-l", where], check=False)
        return where

    @defer.inlineCallbacks
    def test_import_fails_cleanly_and_files_keep_streaming(self):
        """With the disk full an import fails naming the store; the imported file streams
        exactly; once space is back the same import succeeds."""
        where = self.mount()
        articles = {**FIRST.articles, **SECOND.articles}
        a, _ = self.provider("A", articles)
        yield self.start(
            [a],
            metadata={"root_path": os.path.join(where, "metadata"), "map_size_mb": 16},
            health={"enabled": False},
        )
        record = yield self.import_release(FIRST, "First.nzb")
        filler = os.path.join(where, "filler")
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
        with self.assertRaises(AltmountError) as raised:
            yield self.import_release(SECOND, "Second.nzb")
        message = str(raised.exception)
        self.assertTrue("space" in message.lower() or "metadata" in message.lower(), message)
        response, data, _ = yield self.get(self.url(record))
        self.assertEqual(response.code, 200)
        self.assertTrue(data == DATA, "bytes differ")
        os.unlink(filler)
        again = yield self.import_release(SECOND, "Second.nzb")
        self.assertTrue(again.path.endswith(".mkv"))
        response, data, _ = yield self.get(self.url(record))
        self.assertTrue(data == DATA, "bytes differ after the disk filled up")
