"""7z sets made by the real `7zz` (and solid ones by tests/data/7z/sevenzip_writer.py), posted
to the fake NNTP server on 127.0.0.1, imported by an Engine and read back at random ranges
through `_core.plan_range`/`assemble_range` (and the CBC decryption for AES), byte for byte."""

from __future__ import annotations

import importlib.util
import subprocess
import tempfile
import time
from pathlib import Path

from engine_archive_rig import MKV, ReleaseCase, media, need
from twisted.internet import defer

from altmount.testing.articles import post_release
from altmount.testing.nntpserver import Faults

VOLUME = 150_001  # not a multiple of the article size
PASSWORD = "pässwörd 7z"
_WRITER = Path(__file__).parent.parent / "data" / "7z" / "sevenzip_writer.py"


def need_7zz() -> None:
    """Skip without `7zz`, except under CI where the tool is required."""
    need("7zz", "Debian: apt-get install 7zip")


def make_7z(
    files: dict[str, bytes], switches: list[str], archive: str = "set.7z"
) -> dict[str, bytes]:
    """Run `7zz a` on `files` in a temporary folder; every piece it wrote, by name."""
    need_7zz()
    with tempfile.TemporaryDirectory() as folder:
        for name, data in files.items():
            path = Path(folder) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        command = ["7zz", "a", "-bd", "-bso0", *switches, archive, *files]
        subprocess.run(command, cwd=folder, check=True)
        return {
            p.name: p.read_bytes()
            for p in sorted(Path(folder).iterdir())
            if p.name.startswith(archive + ".") or p.name == archive
        }


def writer():
    """The test-side 7z writer (solid copy folders, which 7zz does not make)."""
    spec = importlib.util.spec_from_file_location("sevenzip_writer", _WRITER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class SevenZipImports(ReleaseCase):
    """An Engine over one fake provider; each test posts a release and reads it back."""

    @defer.inlineCallbacks
    def test_split_copy_volumes(self):
        """`7zz a -mx=0 -v` pieces of an odd size stream the member byte-exact."""
        files = {"Movie.2024.mkv": media(1, 700_000)}
        volumes = make_7z(files, ["-mx=0", f"-v{VOLUME}b"])
        self.assertGreater(len(volumes), 4)
        yield self.check(volumes, files)

    @defer.inlineCallbacks
    def test_single_archive_with_a_season_folder(self):
        """One .7z holding a folder of episodes exposes each under its relative path."""
        files = {f"Show.S01/Show.S01E0{i}.mkv": media(10 + i, 150_000 + i * 999) for i in (1, 2, 3)}
        yield self.check(make_7z(files, ["-mx=0"]), files)

    @defer.inlineCallbacks
    def test_plain_header(self):
        """A copy archive with a plain (-mhc=off) header streams byte-exact."""
        files = {"Movie.mkv": media(2, 400_000)}
        yield self.check(make_7z(files, ["-mx=0", "-mhc=off", f"-v{VOLUME}b"]), files)

    @defer.inlineCallbacks
    def test_solid_copy_folder(self):
        """Members of one solid copy folder start mid-folder and stream byte-exact."""
        files = {f"E0{i}.mkv": media(20 + i, 123_457 * i) for i in (1, 2, 3)}
        archive = writer().write_7z(list(files.items()))
        yield self.check(writer().split(archive, VOLUME, "solid.7z"), files)

    @defer.inlineCallbacks
    def test_solid_aes_folder(self):
        """Members of one AES-encrypted solid copy folder decrypt byte-exact at any range."""
        files = {f"E0{i}.mkv": media(30 + i, 111_111 * i + 5) for i in (1, 2, 3)}
        archive = writer().write_7z(list(files.items()), password=PASSWORD, cycles=10)
        yield self.check(writer().split(archive, VOLUME, "solid.7z"), files, password=PASSWORD)

    @defer.inlineCallbacks
    def test_encrypted_headers_with_meta_password(self):
        """-mhe -p split pieces with the password in the NZB meta stream byte-exact."""
        files = {"Movie.mkv": media(3, 500_000)}
        volumes = make_7z(files, ["-mx=0", f"-p{PASSWORD}", "-mhe=on", f"-v{VOLUME}b"])
        yield self.check(volumes, files, password=PASSWORD)

    @defer.inlineCallbacks
    def test_encrypted_data_with_password_in_the_nzb_name(self):
        """-p with a plain header, the password as `{{…}}` in the NZB name, streams byte-exact."""
        files = {"Movie.mkv": media(4, 300_000), "Extra.mkv": media(5, 200_000)}
        volumes = make_7z(files, ["-mx=0", "-psecret", f"-v{VOLUME}b"])
        yield self.check(volumes, files, nzb_name="Show.S01{{secret}}.nzb")

    @defer.inlineCallbacks
    def test_wrong_password_with_plain_headers_is_refused(self):
        """Data encryption keeps no check value: a wrong password shows in the decrypted magic."""
        volumes = make_7z({"Movie.mkv": media(6, 100_000)}, ["-mx=0", "-psecret", "-mhc=off"])
        yield self.refused(volumes, "set.7z: encrypted archive, no/wrong password", password="nope")

    @defer.inlineCallbacks
    def test_wrong_password_with_encrypted_headers_is_refused(self):
        """-mhe with a wrong password fails decoding its header, refused as encrypted."""
        volumes = make_7z({"Movie.mkv": media(7, 100_000)}, ["-mx=0", "-psecret", "-mhe=on"])
        yield self.refused(volumes, "set.7z: encrypted archive, no/wrong password", password="nope")

    @defer.inlineCallbacks
    def test_no_password_is_refused(self):
        """An encrypted archive without a password fails as encrypted."""
        volumes = make_7z({"Movie.mkv": media(8, 100_000)}, ["-mx=0", "-psecret", "-mhe=on"])
        yield self.refused(volumes, "set.7z: encrypted archive, no/wrong password")

    @defer.inlineCallbacks
    def test_compressed_media_is_refused_with_the_method(self):
        """The default LZMA2 method on the media fails naming the file and the method."""
        volumes = make_7z({"Movie.mkv": MKV + b"compressible " * 40_000}, ["-mx=5"])
        yield self.refused(
            volumes, "compressed archive: Movie.mkv uses method LZMA2, not streamable"
        )

    @defer.inlineCallbacks
    def test_mixed_stored_and_compressed_members(self):
        """The stored member streams; the compressed one is a warning naming its method."""
        stored = media(9, 250_000)
        volumes = make_7z({"Stored.mkv": stored}, ["-mx=0"])
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "set.7z").write_bytes(volumes["set.7z"])
            (Path(folder) / "Packed.mkv").write_bytes(MKV + b"compressible " * 30_000)
            subprocess.run(
                ["7zz", "a", "-bd", "-bso0", "-mx=5", "set.7z", "Packed.mkv"],
                cwd=folder,
                check=True,
            )
            volumes = {"set.7z": (Path(folder) / "set.7z").read_bytes()}
        result = yield self.check(volumes, {"Stored.mkv": stored})
        self.assertIn(
            "compressed archive: Packed.mkv uses method LZMA2, not streamable", result.warnings
        )

    @defer.inlineCallbacks
    def test_missing_volume_is_refused_naming_it(self):
        """A split set with a middle piece left out of the NZB fails naming it."""
        volumes = make_7z({"Movie.mkv": media(11, 600_000)}, ["-mx=0", f"-v{VOLUME}b"])
        del volumes["set.7z.002"]
        yield self.refused(volumes, "volume 2 of set.7z missing")

    @defer.inlineCallbacks
    def test_truncated_archive_is_refused_naming_it(self):
        """A single archive cut short fails naming it."""
        volumes = make_7z({"Movie.mkv": media(12, 200_000)}, ["-mx=0"])
        yield self.refused({"set.7z": volumes["set.7z"][:-100]}, "set.7z")

    @defer.inlineCallbacks
    def test_damaged_header_is_refused_naming_it(self):
        """A header whose bytes were changed fails its CRC, naming the archive."""
        data = bytearray(make_7z({"Movie.mkv": media(13, 200_000)}, ["-mx=0"])["set.7z"])
        data[-10] ^= 0xFF
        yield self.refused({"set.7z": bytes(data)}, "set.7z: damaged 7z archive")

    @defer.inlineCallbacks
    def test_two_sets_in_one_release(self):
        """Two split sets of two episodes in one NZB both stream."""
        posted, expected = {}, {}
        for episode in (1, 2):
            name = f"Show.S01E0{episode}.mkv"
            expected[name] = media(40 + episode, 300_000 + episode * 12_345)
            volumes = make_7z({name: expected[name]}, ["-mx=0", f"-v{VOLUME}b"], f"e{episode}.7z")
            posted.update(volumes)
        yield self.check(posted, expected)

    @defer.inlineCallbacks
    def test_encrypted_ten_volume_import_with_latency(self):
        """A -mhe 7z split into ten volumes imports in one round trip of 50 ms latency."""
        files = {"Movie.2024.mkv": media(14, 10 * 100_000 - 2000)}
        volumes = make_7z(files, ["-mx=0", "-psecret", "-mhe=on", "-v100001b"])
        self.assertEqual(len(volumes), 10)
        release = post_release(volumes, article_size=self.article, meta={"password": "secret"})
        engine = self.start(release.articles, Faults(latency=0.05))
        started = time.perf_counter()
        result = yield engine.importer.import_nzb(release.nzb, "Movie.2024.nzb", "movies")
        elapsed = time.perf_counter() - started
        stages = dict(result.stage_ms)
        bodies = self.factories[0].commands["BODY"]
        print(
            f"\n10-volume -mhe 7z import: {elapsed * 1000:.0f} ms, archive stage "
            f"{stages['archive']:.0f} ms, {bodies} BODY requests, stages {stages}"
        )
        self.assertEqual([r.size for r in result.files], [len(files["Movie.2024.mkv"])])
        self.assertIsNotNone(result.files[0].cipher)
        self.assertLess(stages["archive"], 2 * 50 + 100)
