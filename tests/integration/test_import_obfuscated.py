"""Imports over real sockets: fake NNTP server on 127.0.0.1 with 50 ms latency → Engine.

The obfuscated release is protected by a PAR2 set made by the real `par2` tool
(par2cmdline); every file, PAR2 files included, is posted under a random hex
stem with no extension, so only the PAR2 FileDesc packets know the real names.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from engine_archive_rig import MKV, EngineCase
from twisted.internet import defer
from twisted.trial import unittest

from altmount.errors import ImportFailed
from altmount.testing.articles import post_release
from altmount.testing.nntpserver import Faults

LATENCY = 0.05
ARTICLE = 64 * 1024


def episodes(count: int, size: int) -> dict[str, bytes]:
    """`count` Matroska-looking files of about `size` bytes with real episode names."""
    rng = random.Random(count)
    return {
        f"Show.S01E{i:02d}.1080p.mkv": MKV + rng.randbytes(size + i * 1001)
        for i in range(1, count + 1)
    }


def obfuscate_with_par2(files: dict[str, bytes]):
    """PAR2 the files with par2cmdline, then post everything under random stems."""
    rng = random.Random(99)
    with tempfile.TemporaryDirectory() as folder:
        for name, data in files.items():
            (Path(folder) / name).write_bytes(data)
        subprocess.run(
            ["par2", "create", "-q", "-q", "-r10", "release.par2", *files], cwd=folder, check=True
        )
        par2 = {p.name: p.read_bytes() for p in Path(folder).glob("*.par2")}
    posted = {rng.randbytes(16).hex(): data for data in [*files.values(), *par2.values()]}
    subjects = {
        stem: f'[{i + 1}/{len(posted)}] - "{stem}" yEnc (1/1)' for i, stem in enumerate(posted)
    }
    return post_release(posted, article_size=ARTICLE, subjects=subjects), par2


class ImportOverSockets(EngineCase):
    """An Engine over one fake provider with injected latency; torn down after each test."""

    timeout = 30
    max_connections = 10

    @defer.inlineCallbacks
    def test_obfuscated_release_named_from_par2_tool_output(self):
        """Real names come back from par2cmdline's index; sizes and segment tables are exact."""
        if shutil.which("par2") is None:
            raise unittest.SkipTest("the par2 tool is not installed (apt-get install par2)")
        files = episodes(3, 300_000)
        release, par2 = obfuscate_with_par2(files)
        engine = self.start(release.articles, Faults(latency=LATENCY))
        started = time.perf_counter()
        result = yield engine.importer.import_nzb(release.nzb, "Show.S01.1080p.nzb", "tv")
        elapsed = time.perf_counter() - started
        by_name = {r.path.rsplit("/", 1)[1]: r for r in result.files}
        self.assertEqual(sorted(by_name), sorted(files))
        posted = {p.data: p.message_ids for p in release.files}
        for name, data in files.items():
            self.assertEqual(by_name[name].size, len(data))
            self.assertEqual(by_name[name].segments.message_ids, posted[data])
        self.assertEqual(result.release_dir, "/complete/tv/Show.S01.1080p")
        self.assertEqual(result.warnings, ())
        self.assertLess(elapsed, 2.0)

    @defer.inlineCallbacks
    def test_dead_post_fails_fast(self):
        """A release no provider has fails after the first round, not after a timeout."""
        release = post_release(episodes(4, 200_000), article_size=ARTICLE)
        engine = self.start(
            release.articles, Faults(latency=LATENCY, missing=set(release.articles))
        )
        started = time.perf_counter()
        with self.assertRaises(ImportFailed) as raised:
            yield engine.importer.import_nzb(release.nzb, "Dead.nzb")
        self.assertIn("dead post", str(raised.exception))
        self.assertLess(time.perf_counter() - started, 1.0)
        self.assertEqual(engine.store.listdir("/"), [])
