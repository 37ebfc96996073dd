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

import yaml
from twisted.internet import defer, reactor
from twisted.trial import unittest

from altmount.config import parse_config
from altmount.engine import Engine
from altmount.errors import ImportFailed
from altmount.testing.articles import post_release
from altmount.testing.nntpserver import Faults, listen

LATENCY = 0.05
ARTICLE = 64 * 1024
MKV = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska"


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


class ImportOverSockets(unittest.TestCase):
    """An Engine over one fake provider with injected latency; torn down after each test."""

    timeout = 30

    def setUp(self) -> None:
        self.engine: Engine | None = None
        self.factories = []

    @defer.inlineCallbacks
    def tearDown(self):
        if self.engine is not None:
            yield self.engine.close()
        for factory in self.factories:
            yield factory.when_idle()

    def start(self, articles, faults: Faults) -> Engine:
        """An engine whose only provider serves `articles` with `faults`."""
        port, factory = listen(reactor, articles, faults)
        self.addCleanup(port.stopListening)
        self.factories.append(factory)
        # Not self.mktemp(): that would leave the store in the working directory.
        folder = tempfile.mkdtemp(prefix="altmount-import-")
        self.addCleanup(shutil.rmtree, folder, True)
        root = folder + "/metadata"
        text = yaml.safe_dump(
            {
                "metadata": {"root_path": root, "map_size_mb": 64},
                "database": {"path": root + ".db"},
                "import": {"segment_sample_percentage": 10},
                "providers": [
                    {
                        "name": "fake",
                        "host": "127.0.0.1",
                        "tls": False,
                        "port": port.getHost().port,
                        "max_connections": 10,
                    }
                ],
            }
        )
        config, _ = parse_config(text, base_dir=".")
        self.engine = Engine(reactor, config)
        return self.engine

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
