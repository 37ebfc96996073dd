"""Stored RAR sets made by the real `rar` tool (RAR 5) and by tests/data/rar/rar4writer.py
(RAR 4, checked with `rar t`), posted to the fake NNTP server on 127.0.0.1, imported by an
Engine and read back through `_core.plan_range`/`assemble_range`, byte for byte; encrypted
members (password in the NZB meta) decrypted with `altmount.stream.cbc` as WebDAV does."""

from __future__ import annotations

import importlib.util
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from engine_archive_rig import MKV, ReleaseCase, media, need
from twisted.internet import defer

from altmount.archive.rar import Kind, detect
from altmount.archive.rarcrypto import RarKeys
from altmount.archive.scan import VolumeScan
from altmount.testing.articles import post_release
from altmount.testing.nntpserver import Faults

VOLUME = 150_001  # not a multiple of the article size
PASSWORD = "s3cret pässword"
_WRITER = Path(__file__).parent.parent / "data" / "rar" / "rar4writer.py"


def rar4writer():
    """The test-side RAR 4 writer module."""
    spec = importlib.util.spec_from_file_location("rar4writer", _WRITER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def need_rar() -> None:
    """Skip without `rar`, except under CI where the tool is required."""
    need("rar", "Debian non-free: apt-get install rar")


def make_rar(
    files: dict[str, bytes], switches: list[str], archive: str = "set.rar"
) -> dict[str, bytes]:
    """Run `rar a` on `files` in a temporary folder; return every volume it wrote by name."""
    with tempfile.TemporaryDirectory() as folder:
        for name, data in files.items():
            path = Path(folder) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        subprocess.run(["rar", "a", "-idq", *switches, archive, *files], cwd=folder, check=True)
        return {
            p.name: p.read_bytes()
            for p in sorted(Path(folder).iterdir())
            if p.name.startswith(archive.split(".")[0] + ".")
        }


def piece_ends(volumes: dict[str, bytes], password: str) -> list[int]:
    """Member offsets where each volume's piece of the one member ends (volumes in order)."""
    keys, ends = RarKeys(password), [0]
    for name, data in volumes.items():
        scan = VolumeScan(detect(data), len(data), name, keys)
        while scan.want() is not None:
            scan.feed(0, data)
        ends += [ends[-1] + b.data_size for b in scan.blocks if b.kind is Kind.FILE]
    return ends[1:]


class ArchiveImports(ReleaseCase):
    """An Engine over one fake provider; each test posts a release and reads it back."""

    random_ranges = 0

    @defer.inlineCallbacks
    def test_rar5_single_volume_stored(self):
        """A one-volume RAR 5 archive made with -m0 streams its member byte-exact."""
        need_rar()
        files = {"Movie.2024.mkv": media(1, 200_000)}
        yield self.check(make_rar(files, ["-m0", "-ma5"]), files)

    @defer.inlineCallbacks
    def test_rar5_part_volumes(self):
        """RAR 5 .partN.rar volumes of an odd size stream the split member byte-exact."""
        need_rar()
        files = {"Movie.2024.mkv": media(2, 700_000)}
        volumes = make_rar(files, ["-m0", f"-v{VOLUME}b"])
        self.assertGreater(len(volumes), 4)
        yield self.check(volumes, files)

    @defer.inlineCallbacks
    def test_rar5_part_names_with_changing_width(self):
        """Eleven volumes named part1..part9 then part10, part11 are ordered by their headers."""
        need_rar()
        files = {"Movie.2024.mkv": media(3, 11 * 60_000)}
        volumes = make_rar(files, ["-m0", "-v60001b"])
        renamed = {}
        for name, data in volumes.items():
            number = int(name.split(".part")[1].split(".")[0])
            renamed[f"set.part{number}.rar"] = data
        self.assertGreaterEqual(len(renamed), 11)
        yield self.check(dict(sorted(renamed.items())), files)

    @defer.inlineCallbacks
    def test_rar5_old_names_rar_r00(self):
        """RAR 5 volumes renamed to the old .rar + .r00 scheme stream byte-exact."""
        need_rar()
        files = {"Movie.2024.mkv": media(4, 500_000)}
        volumes = list(make_rar(files, ["-m0", f"-v{VOLUME}b"]).values())
        names = ["movie.rar"] + [f"movie.r{n:02d}" for n in range(len(volumes) - 1)]
        yield self.check(dict(zip(names, volumes, strict=True)), files)

    @defer.inlineCallbacks
    def test_rar5_numeric_extensions(self):
        """Volumes renamed `<hex>.1 … <hex>.N` stream byte-exact."""
        need_rar()
        files = {"Movie.2024.mkv": media(5, 500_000)}
        volumes = list(make_rar(files, ["-m0", f"-v{VOLUME}b"]).values())
        stem = random.Random(5).randbytes(8).hex()
        yield self.check({f"{stem}.{n}": data for n, data in enumerate(volumes, 1)}, files)

    @defer.inlineCallbacks
    def test_rar5_random_stems_no_extension_shuffled(self):
        """Volumes with random names and no extension, posted out of order, are ordered by headers."""
        need_rar()
        files = {"Movie.2024.mkv": media(6, 600_000)}
        volumes = list(make_rar(files, ["-m0", f"-v{VOLUME}b"]).values())
        rng = random.Random(6)
        posted = [(rng.randbytes(10).hex(), data) for data in volumes]
        rng.shuffle(posted)
        yield self.check(dict(posted), files)

    @defer.inlineCallbacks
    def test_rar5_inner_directory_tree(self):
        """A season folder inside one set exposes every episode under its relative path."""
        need_rar()
        files = {
            f"Show.S01/Show.S01E0{i}.mkv": media(10 + i, 150_000 + i * 999) for i in range(1, 4)
        }
        files["Show.S01/Subs/Show.S01E01.srt"] = b"1\n00:00:01,000 --> 00:00:02,000\nhi\n"
        volumes = make_rar(files, ["-m0", "-r", f"-v{VOLUME}b"])
        # .srt is not in the default import.allowed_file_extensions: select leaves it out.
        expected = {k: v for k, v in files.items() if k.endswith(".mkv")}
        yield self.check(volumes, expected)

    @defer.inlineCallbacks
    def test_several_sets_with_obfuscated_volume_names(self):
        """Two episode sets posted under random names are told apart by their headers."""
        need_rar()
        rng = random.Random(7)
        posted, expected = {}, {}
        for episode in (1, 2):
            name = f"Show.S01E0{episode}.mkv"
            expected[name] = media(20 + episode, 400_000 + episode * 12_345)
            for data in make_rar({name: expected[name]}, ["-m0", f"-v{VOLUME}b"]).values():
                posted[rng.randbytes(10).hex()] = data
        items = list(posted.items())
        rng.shuffle(items)
        yield self.check(dict(items), expected)

    @defer.inlineCallbacks
    def test_hex_inner_name_gets_its_extension_from_the_data(self):
        """A member named by a bare hex string is exposed with the extension its bytes show."""
        need_rar()
        stem = random.Random(8).randbytes(12).hex()
        data = media(8, 300_000)
        result = yield self.check(
            make_rar({stem: data}, ["-m0", f"-v{VOLUME}b"]), {stem + ".mkv": data}
        )
        self.assertEqual(len(result.files), 1)

    @defer.inlineCallbacks
    def test_mixed_stored_and_compressed_members(self):
        """The stored member streams; the compressed media member is left out with a warning."""
        need_rar()
        with tempfile.TemporaryDirectory() as folder:
            stored, packed = media(9, 300_000), MKV + b"compressible " * 30_000
            (Path(folder) / "Stored.mkv").write_bytes(stored)
            (Path(folder) / "Packed.mkv").write_bytes(packed)
            subprocess.run(
                ["rar", "a", "-idq", "-m0", "mixed.rar", "Stored.mkv"], cwd=folder, check=True
            )
            subprocess.run(
                ["rar", "a", "-idq", "-m3", "mixed.rar", "Packed.mkv"], cwd=folder, check=True
            )
            volumes = {"mixed.rar": (Path(folder) / "mixed.rar").read_bytes()}
        result = yield self.check(volumes, {"Stored.mkv": stored})
        self.assertIn(
            "compressed archive: Packed.mkv uses method m3, not streamable", result.warnings
        )

    @defer.inlineCallbacks
    def test_compressed_only_is_refused_with_the_method(self):
        """A set whose media is compressed fails, naming the file and the method."""
        need_rar()
        files = {"Movie.mkv": MKV + b"compressible " * 40_000}
        yield self.refused(
            make_rar(files, ["-m5"]), "compressed archive: Movie.mkv uses method m5, not streamable"
        )

    @defer.inlineCallbacks
    def test_missing_volume_is_refused_naming_it(self):
        """A set with its second volume left out of the NZB fails naming that volume."""
        need_rar()
        volumes = make_rar({"Movie.mkv": media(11, 600_000)}, ["-m0", f"-v{VOLUME}b"])
        del volumes["set.part2.rar"]
        yield self.refused(volumes, "volume 2 of set.part1.rar missing")

    @defer.inlineCallbacks
    def test_encrypted_data_is_refused(self):
        """A stored member encrypted with -p is refused as encrypted."""
        need_rar()
        yield self.refused(
            make_rar({"Movie.mkv": media(12, 100_000)}, ["-m0", "-psecret"]),
            "encrypted archive, no/wrong password",
        )

    @defer.inlineCallbacks
    def test_encrypted_headers_are_refused(self):
        """An archive with encrypted headers (-hp) is refused as encrypted."""
        need_rar()
        yield self.refused(
            make_rar({"Movie.mkv": media(13, 100_000)}, ["-m0", "-hpsecret"]),
            "encrypted archive, no/wrong password",
        )

    @defer.inlineCallbacks
    def check_encrypted(
        self,
        volumes: dict[str, bytes],
        name: str,
        data: bytes,
        password: str = PASSWORD,
        nzb_name: str = "Show.S01.nzb",
    ):
        """Import with the password; the one member streams byte-exact over random ranges,
        ranges around AES blocks and ranges across the volume boundaries."""
        result, engine = yield self.imported(volumes, nzb_name, password=password)
        (record,) = result.files
        self.assertEqual(record.path.rsplit("/", 1)[1], name)
        self.assertIsNotNone(record.cipher)
        self.assertEqual(record.size, len(data))
        self.assertEqual((yield self.read(engine, record)), data)
        size = len(data)
        cases = [(0, 1), (15, 17), (16, 32), (17, 4111), (size - 17, size), (size - 1, size)]
        for end in piece_ends(volumes, password)[:-1]:
            cases += [(end - 1, end + 1), (end, end + 100), (end - 17, end + 33)]
        rng = random.Random(size)
        for _ in range(25):
            start = rng.randrange(size)
            cases.append((start, start + rng.randint(1, 200_000)))
        for start, end in cases:
            end = min(end, size)
            got = yield self.read(engine, record, start, end)
            self.assertEqual(got, data[start:end], f"range {start}-{end}")
        return result

    @defer.inlineCallbacks
    def test_rar5_encrypted_data_single_volume(self):
        """A -p member streams decrypted with the password from the NZB meta."""
        need_rar()
        data = media(40, 300_000)
        volumes = make_rar({"Movie.mkv": data}, ["-m0", f"-p{PASSWORD}"])
        yield self.check_encrypted(volumes, "Movie.mkv", data)

    @defer.inlineCallbacks
    def test_rar5_encrypted_data_part_volumes(self):
        """-p volumes of an odd size: one CBC stream cut across volumes decrypts byte-exact."""
        need_rar()
        data = media(41, 700_000)
        volumes = make_rar({"Movie.mkv": data}, ["-m0", f"-p{PASSWORD}", f"-v{VOLUME}b"])
        self.assertGreater(len(volumes), 4)
        self.assertTrue(any(end % 16 for end in piece_ends(volumes, PASSWORD)[:-1]))
        yield self.check_encrypted(volumes, "Movie.mkv", data)

    @defer.inlineCallbacks
    def test_rar5_encrypted_headers_single_volume(self):
        """A -hp archive: headers decrypted at import, the member streams decrypted."""
        need_rar()
        data = media(42, 300_000)
        volumes = make_rar({"Movie.mkv": data}, ["-m0", f"-hp{PASSWORD}"])
        yield self.check_encrypted(volumes, "Movie.mkv", data)

    @defer.inlineCallbacks
    def test_rar5_encrypted_headers_part_volumes(self):
        """-hp volumes of an odd size, posted under random names, stream byte-exact."""
        need_rar()
        data = media(43, 600_000)
        made = make_rar({"Movie.mkv": data}, ["-m0", f"-hp{PASSWORD}", f"-v{VOLUME}b"])
        self.assertGreater(len(made), 3)
        rng = random.Random(43)
        # Random names, in volume order (check_encrypted takes the boundaries from that order).
        volumes = {rng.randbytes(8).hex(): volume for volume in made.values()}
        yield self.check_encrypted(volumes, "Movie.mkv", data)

    @defer.inlineCallbacks
    def test_password_from_the_nzb_file_name(self):
        """Without a meta password the `{{password}}` in the NZB file name opens the archive."""
        need_rar()
        data = media(44, 200_000)
        volumes = make_rar({"Movie.mkv": data}, ["-m0", "-psecret"])
        release = post_release(volumes, article_size=self.article)
        engine = self.start(release.articles)
        result = yield engine.importer.import_nzb(release.nzb, "Movie{{secret}}.nzb", "movies")
        (record,) = result.files
        self.assertEqual((yield self.read(engine, record)), data)

    @defer.inlineCallbacks
    def test_rar4_encrypted_data_volumes(self):
        """RAR 4 AES-128 data in .rar/.r00 volumes (checked by `rar t -p`) streams byte-exact."""
        data = media(45, 500_000)
        volumes = self.rar4({"Movie.mkv": data}, "old", password=PASSWORD)
        self.assertGreater(len(volumes), 3)
        yield self.check_encrypted(volumes, "Movie.mkv", data)

    @defer.inlineCallbacks
    def test_rar4_encrypted_headers_volumes(self):
        """RAR 4 -hp volumes (checked by `rar t -p`) are walked decrypted and stream byte-exact."""
        data = media(46, 500_000)
        volumes = self.rar4(
            {"Movie.mkv": data}, "part", directory=None, password=PASSWORD, encrypt_headers=True
        )
        yield self.check_encrypted(volumes, "Movie.mkv", data)

    @defer.inlineCallbacks
    def test_rar5_wrong_password_data_is_refused(self):
        """A wrong password for -p data is caught by the check value, before any data is read."""
        need_rar()
        volumes = make_rar({"Movie.mkv": media(47, 100_000)}, ["-m0", "-psecret"])
        yield self.refused(
            volumes, "set.rar: encrypted archive, no/wrong password (Movie.mkv)", password="wrong"
        )

    @defer.inlineCallbacks
    def test_rar5_wrong_password_headers_is_refused(self):
        """A wrong password for -hp headers is caught by the encryption header's check value."""
        need_rar()
        volumes = make_rar({"Movie.mkv": media(48, 100_000)}, ["-m0", "-hpsecret", "-v60001b"])
        reason = yield self.refused(volumes, password="wrong")
        self.assertEqual(reason, "set: encrypted archive, no/wrong password")

    @defer.inlineCallbacks
    def test_rar4_wrong_password_data_is_refused(self):
        """RAR 4 data has no check value: the decrypted start of the .mkv shows no magic."""
        volumes = self.rar4({"Movie.mkv": media(49, 400_000)}, "old", password="secret")
        yield self.refused(
            volumes, "set.rar: encrypted archive, no/wrong password (Movie.mkv: ", password="wrong"
        )

    @defer.inlineCallbacks
    def test_rar4_wrong_password_headers_is_refused(self):
        """RAR 4 -hp headers that fail their CRC after decryption mean a wrong password."""
        volumes = self.rar4(
            {"Movie.mkv": media(50, 400_000)}, "part", password="secret", encrypt_headers=True
        )
        reason = yield self.refused(volumes, password="wrong")
        self.assertEqual(reason, "set: encrypted archive, no/wrong password")

    @defer.inlineCallbacks
    def test_rar4_part_volumes(self):
        """RAR 4 .partN.rar volumes (checked by `rar t`) stream byte-exact."""
        yield self.check(
            self.rar4({"Movie.mkv": media(14, 500_000)}, "part"), {"Movie.mkv": media(14, 500_000)}
        )

    @defer.inlineCallbacks
    def test_rar4_old_names_and_directory_tree(self):
        """RAR 4 .rar + .r00 volumes with a season folder stream every episode byte-exact."""
        files = {f"Season/E0{i}.mkv": media(30 + i, 180_000 + i) for i in range(1, 4)}
        yield self.check(self.rar4(files, "old", directory="Season"), files)

    @defer.inlineCallbacks
    def test_rar4_random_stems_rely_on_end_block_numbers(self):
        """RAR 4 volumes with random names and no extension are ordered by their end blocks."""
        files = {"Movie.mkv": media(15, 450_000)}
        rng = random.Random(15)
        items = [(rng.randbytes(10).hex(), data) for data in self.rar4(files, "part").values()]
        rng.shuffle(items)
        yield self.check(dict(items), files)

    def rar4(
        self,
        files: dict[str, bytes],
        style: str,
        directory: str | None = None,
        password: str | None = None,
        encrypt_headers: bool = False,
    ) -> dict[str, bytes]:
        """RAR 4 volumes of `files` by name; tested with `rar t` when the tool is there."""
        writer = rar4writer()
        entries = ([(directory, None)] if directory else []) + list(files.items())
        volumes = writer.write_rar4(entries, VOLUME, password, encrypt_headers)
        named = dict(zip(writer.volume_names("set", len(volumes), style), volumes, strict=True))
        if shutil.which("rar"):
            with tempfile.TemporaryDirectory() as folder:
                for name, data in named.items():
                    (Path(folder) / name).write_bytes(data)
                switches = [f"-p{password}"] if password is not None else ["-p-"]
                subprocess.run(
                    ["rar", "t", "-idq", *switches, next(iter(named))], cwd=folder, check=True
                )
        return named

    @defer.inlineCallbacks
    def test_twenty_volume_import_with_latency(self):
        """A 20-volume RAR 5 release imports in a few round trips of 50 ms latency."""
        need_rar()
        files = {"Movie.2024.mkv": media(16, 20 * 100_000)}
        volumes = make_rar(files, ["-m0", "-v100001b"])
        self.assertGreaterEqual(len(volumes), 20)
        release = post_release(volumes, article_size=self.article)
        engine = self.start(release.articles, Faults(latency=0.05))
        started = time.perf_counter()
        result = yield engine.importer.import_nzb(release.nzb, "Movie.2024.nzb", "movies")
        elapsed = time.perf_counter() - started
        stages = dict(result.stage_ms)
        print(f"\n20-volume RAR5 import: {elapsed * 1000:.0f} ms, stages {stages}")
        self.assertEqual([r.size for r in result.files], [len(files["Movie.2024.mkv"])])
        self.assertLess(stages["archive"], 4 * 50 + 150)
        self.assertEqual(np.int64(result.files[0].size), result.files[0].segments.offsets[-1])
