"""Archives and disc images inside archives, made by the real `rar`, `7zz` and `genisoimage`
(and the Blu-ray-like UDF 2.50 writer of tests/data/iso), posted to the fake NNTP server on
127.0.0.1, imported by an Engine and read back at random ranges, byte for byte."""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml
from test_archive_7z import make_7z
from test_archive_rar import make_rar, media, need_rar
from twisted.internet import defer, reactor
from twisted.trial import unittest

from altmount import _core
from altmount.archive.nested import MAX_NESTING
from altmount.config import parse_config
from altmount.engine import Engine
from altmount.errors import ImportFailed
from altmount.stream.cbc import cipher_span, decrypt_range
from altmount.testing.articles import post_release
from altmount.testing.nntpserver import Faults, listen

ARTICLE = 40_000
VOLUME = 150_001  # not a multiple of the article size
PASSWORD = "nested sécret"
_ISO = Path(__file__).parent.parent / "data" / "iso"


def iso_writer(name: str):
    """A test-side image writer from tests/data/iso."""
    spec = importlib.util.spec_from_file_location(name, _ISO / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def need(tool: str) -> None:
    """Skip without `tool`, except under CI where it is required."""
    if shutil.which(tool) is None:
        if os.environ.get("CI") == "true":
            raise AssertionError(f"{tool} is required under CI (scripts/inn2-setup.sh installs it)")
        raise unittest.SkipTest(f"{tool} is not installed")


def genisoimage(files: dict[str, bytes], *switches: str) -> bytes:
    """An image of `files` made by genisoimage with `switches`."""
    need("genisoimage")
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "source"
        for path, data in files.items():
            (source / path).parent.mkdir(parents=True, exist_ok=True)
            (source / path).write_bytes(data)
        image = Path(folder) / "disc.iso"
        subprocess.run(
            ["genisoimage", "-quiet", *switches, "-o", str(image), str(source)], check=True
        )
        return image.read_bytes()


class NestedImports(unittest.TestCase):
    """An Engine over one fake provider; each test posts a release and reads it back."""

    timeout = 60

    def setUp(self) -> None:
        self.engine: Engine | None = None
        self.factories = []

    @defer.inlineCallbacks
    def tearDown(self):
        if self.engine is not None:
            yield self.engine.close()
        for factory in self.factories:
            yield factory.when_idle()

    def start(self, articles) -> Engine:
        """An engine whose only provider serves `articles`."""
        port, factory = listen(reactor, articles, Faults())
        self.addCleanup(port.stopListening)
        self.factories.append(factory)
        folder = tempfile.mkdtemp(prefix="altmount-nested-")
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
                        "max_connections": 20,
                    }
                ],
            }
        )
        config, _ = parse_config(text, base_dir=".")
        self.engine = Engine(reactor, config)
        return self.engine

    @defer.inlineCallbacks
    def imported(self, volumes: dict[str, bytes], password: str | None = None):
        """Post the volumes (the password in the NZB's meta), import; (ImportResult, engine)."""
        meta = {"password": password} if password is not None else None
        release = post_release(volumes, article_size=ARTICLE, meta=meta)
        engine = self.start(release.articles)
        result = yield engine.importer.import_nzb(release.nzb, "Release.nzb", "movies")
        return result, engine

    @defer.inlineCallbacks
    def read(self, engine: Engine, record, start: int, end: int):
        """Bytes [start, end) of a record through plan_range, the provider, assemble_range
        and, for an encrypted member, the CBC decryption the WebDAV server uses."""
        cipher = record.cipher
        span = cipher_span(cipher, start, end) if cipher else None
        low, high = (span.start, span.end) if span else (start, end)
        table = record.segments
        plan = _core.plan_range(table.offsets, table.skips, low, high)
        pieces = []
        for index in range(plan.first, plan.last):
            article = yield engine.fetch_article(table.message_ids[index])
            self.assertEqual(article.begin, int(table.part_begins[index]))
            pieces.append(article.data)
        out = bytearray(high - low)
        _core.assemble_range(out, pieces, plan)
        return decrypt_range(cipher, start, end, bytes(out)) if cipher else bytes(out)

    @defer.inlineCallbacks
    def check(self, volumes, expected: dict[str, bytes], password: str | None = None):
        """Import; the release holds exactly `expected`, whole and at random ranges."""
        result, engine = yield self.imported(volumes, password)
        prefix = result.release_dir + "/"
        by_path = {r.path.removeprefix(prefix): r for r in result.files}
        self.assertEqual(sorted(by_path), sorted(expected))
        rng = random.Random(len(volumes))
        for path, data in expected.items():
            record = by_path[path]
            self.assertEqual(record.size, len(data))
            self.assertEqual((yield self.read(engine, record, 0, len(data))), data)
            for _ in range(8):
                start = rng.randrange(len(data))
                end = min(len(data), start + rng.randrange(1, 90_000))
                got = yield self.read(engine, record, start, end)
                self.assertEqual(got, data[start:end], f"{path} [{start}, {end})")
        return result

    @defer.inlineCallbacks
    def test_rar_in_rar(self):
        """A stored RAR inside a multi-volume stored RAR streams the inner member."""
        need_rar()
        movie = media(1, 400_000)
        inner = make_rar({"Movie.mkv": movie}, ["-m0"], "inner.rar")
        yield self.check(
            make_rar(inner, ["-m0", f"-v{VOLUME}b"], "outer.rar"), {"Movie.mkv": movie}
        )

    @defer.inlineCallbacks
    def test_inner_multi_volume_set(self):
        """Inner .partN.rar volumes stored in an outer set group like posted volumes."""
        need_rar()
        movie = media(2, 600_000)
        inner = make_rar({"Movie.mkv": movie}, ["-m0", "-v100001b"], "inner.rar")
        self.assertGreater(len(inner), 4)
        outer = make_rar(inner, ["-m0", f"-v{VOLUME}b"], "outer.rar")
        yield self.check(outer, {"Movie.mkv": movie})

    @defer.inlineCallbacks
    def test_7z_in_rar(self):
        """A stored 7z inside a stored RAR streams its member."""
        need_rar()
        movie = media(3, 300_000)
        inner = make_7z({"Movie.mkv": movie}, ["-mx=0"], "inner.7z")
        yield self.check(
            make_rar(inner, ["-m0", f"-v{VOLUME}b"], "outer.rar"), {"Movie.mkv": movie}
        )

    @defer.inlineCallbacks
    def test_rar_in_encrypted_7z(self):
        """A RAR that is an AES-encrypted 7z member streams through the composed cipher window."""
        need_rar()
        movie = media(4, 300_000)
        inner = make_rar({"Movie.mkv": movie}, ["-m0"], "inner.rar")
        outer = make_7z(inner, ["-mx=0", f"-p{PASSWORD}", f"-v{VOLUME}b"], "outer.7z")
        result = yield self.check(outer, {"Movie.mkv": movie}, password=PASSWORD)
        self.assertIsNotNone(result.files[0].cipher)

    @defer.inlineCallbacks
    def test_iso9660_joliet_in_rar(self):
        """A Joliet DVD image in a RAR exposes its .VOB under the image's folder."""
        need_rar()
        vob = media(5, 500_000)
        image = genisoimage({"VIDEO_TS/VTS_01_1.VOB": vob, "notes.txt": b"hi"}, "-J")
        yield self.check(
            make_rar({"Disc.iso": image}, ["-m0", f"-v{VOLUME}b"]),
            {"Disc/VIDEO_TS/VTS_01_1.VOB": vob},
        )

    @defer.inlineCallbacks
    def test_udf_bridge_in_rar(self):
        """An ISO 9660 + UDF bridge image is read from its UDF side (long names kept)."""
        need_rar()
        m2ts = media(6, 400_000)
        image = genisoimage({"BDMV/STREAM/00001.m2ts": m2ts}, "-udf")
        yield self.check(
            make_rar({"Disc.iso": image}, ["-m0", f"-v{VOLUME}b"]),
            {"Disc/BDMV/STREAM/00001.m2ts": m2ts},
        )

    @defer.inlineCallbacks
    def test_blu_ray_udf250_in_rar(self):
        """A UDF 2.50 image with a metadata partition and a .m2ts in two extents streams it."""
        need_rar()
        m2ts = media(7, 500_000)
        image = iso_writer("udfwriter").write_udf250(
            {"BDMV/STREAM/00800.m2ts": m2ts, "BDMV/index.bdmv": b"INDX0200"},
            split=("BDMV/STREAM/00800.m2ts",),
        )
        yield self.check(
            make_rar({"Movie.iso": image}, ["-m0", f"-v{VOLUME}b"]),
            {"Movie/BDMV/STREAM/00800.m2ts": m2ts},
        )

    @defer.inlineCallbacks
    def test_depth_past_the_limit_is_refused(self):
        """Archives nested deeper than MAX_NESTING fail naming the archive not opened."""
        need_rar()
        files = {"Movie.mkv": media(8, 100_000)}
        for level in range(MAX_NESTING + 1, 0, -1):
            files = make_rar(files, ["-m0"], f"level{level}.rar")
        with self.assertRaises(ImportFailed) as raised:
            yield self.imported(make_rar(files, ["-m0"], "posted.rar"))
        self.assertIn(
            f"level{MAX_NESTING + 1}.rar: archive nested more than {MAX_NESTING} deep",
            str(raised.exception),
        )

    @defer.inlineCallbacks
    def test_image_listing_itself_is_refused_as_a_loop(self):
        """An image with a file that is the image itself: a warning, no recursion."""
        need_rar()
        vob = media(9, 200_000)
        dvd = bytearray(
            iso_writer("isowriter").write_iso9660({"VTS_01_1.VOB": vob, "SELF.ISO": b"x"})
        )
        record = dvd.index(b"SELF.ISO;1") - 33
        sizes = len(dvd).to_bytes(4, "little") + len(dvd).to_bytes(4, "big")
        dvd[record + 2 : record + 18] = bytes(8) + sizes
        result = yield self.check(
            make_rar({"Dvd.iso": bytes(dvd)}, ["-m0"]),
            {"Dvd/VIDEO_TS/VTS_01_1.VOB": vob, "Dvd/VIDEO_TS/SELF.ISO": bytes(dvd)},
        )
        self.assertIn(
            "Dvd/VIDEO_TS/SELF.ISO: the same bytes as Dvd.iso (a loop), not opened again",
            result.warnings,
        )
