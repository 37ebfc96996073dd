"""Archives and disc images inside archives, made by the real `rar`, `7zz` and `genisoimage`
(and the Blu-ray-like UDF 2.50 writer of tests/data/iso), posted to the fake NNTP server on
127.0.0.1, imported by an Engine and read back at random ranges, byte for byte."""

from __future__ import annotations

import importlib.util
import subprocess
import tempfile
from pathlib import Path

from engine_archive_rig import ReleaseCase, media, need
from test_archive_7z import make_7z
from test_archive_rar import make_rar, need_rar
from twisted.internet import defer

from altmount.archive.nested import MAX_NESTING
from altmount.errors import ImportFailed

VOLUME = 150_001  # not a multiple of the article size
PASSWORD = "nested sécret"
_ISO = Path(__file__).parent.parent / "data" / "iso"


def iso_writer(name: str):
    """A test-side image writer from tests/data/iso."""
    spec = importlib.util.spec_from_file_location(name, _ISO / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


class NestedImports(ReleaseCase):
    """An Engine over one fake provider; each test posts a release and reads it back."""

    nzb_name = "Release.nzb"
    category = "movies"
    random_ranges = 8

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

    @defer.inlineCallbacks
    def test_posted_blu_ray_image_is_opened(self):
        """A bare UDF 2.50 .iso posted as it is exposes its .m2ts (split in two extents) in a
        folder named after the image; its index.bdmv is left out like an archive's non-media."""
        m2ts = media(10, 500_000)
        image = iso_writer("udfwriter").write_udf250(
            {"BDMV/STREAM/00800.m2ts": m2ts, "BDMV/index.bdmv": b"INDX0200"},
            split=("BDMV/STREAM/00800.m2ts",),
        )
        yield self.check({"Movie.2024.iso": image}, {"Movie.2024/BDMV/STREAM/00800.m2ts": m2ts})

    @defer.inlineCallbacks
    def test_posted_dvd_image_beside_other_media(self):
        """A bare ISO 9660 image is replaced by its files; the media posted beside it stays."""
        vob, extra = media(11, 300_000), media(12, 120_000)
        image = iso_writer("isowriter").write_iso9660({"VTS_01_1.VOB": vob}, extent_sectors=64)
        yield self.check(
            {"Dvd.iso": image, "Extra.mkv": extra},
            {"Dvd/VIDEO_TS/VTS_01_1.VOB": vob, "Extra.mkv": extra},
        )

    @defer.inlineCallbacks
    def test_posted_iso_without_a_file_system_stays_as_posted(self):
        """A posted .iso without an ISO 9660 or UDF volume at sector 16 is exposed itself."""
        data = media(13, 200_000)
        result = yield self.check({"Raw.iso": data}, {"Raw.iso": data})
        self.assertEqual(result.warnings, ())

    @defer.inlineCallbacks
    def test_posted_damaged_image_is_exposed_with_the_reason(self):
        """A bare image whose root directory is damaged stays as posted, and says why."""
        image = bytearray(iso_writer("isowriter").write_iso9660({"VTS_01_1.VOB": media(14, 9)}))
        primary = 16 * 2048
        image[primary + 156] = 0  # the root directory record's length
        result = yield self.check({"Bad.iso": bytes(image)}, {"Bad.iso": bytes(image)})
        self.assertEqual(
            result.warnings,
            (
                "Bad.iso: damaged ISO 9660 image: no root directory record; the image itself is exposed",
            ),
        )
