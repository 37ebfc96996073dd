"""RAR releases posted to INN2 with nyuu, imported by a running altmount and read back over
WebDAV with curl: stored RAR 5 .partN volumes made by `rar`, RAR 4 .rar + .r00 volumes from
tests/data/rar/rar4writer.py, volumes posted under random names without an extension, and a
header-encrypted (-hp) RAR 5 set whose password is in the NZB meta."""

from __future__ import annotations

import importlib.util
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from inn2_archive_rig import ARTICLE, assert_ranges, assert_whole, ffprobe_streams, need, post
from inn2lib import REPO, AltmountServer, make_wav, run, skip_without_peers

from altmount.archive.rar import Kind, detect
from altmount.archive.rarcrypto import RarKeys
from altmount.archive.scan import VolumeScan

pytestmark = pytest.mark.inn2
skip_without_peers()

PASSWORD = "s3cret rär"
VOLUME = 700_001  # odd: volumes end inside articles and inside AES blocks
SIZE = 2_000_000


@dataclass(frozen=True, slots=True)
class Release:
    """A posted RAR release: its NZB, the member's name and bytes, and where each volume's
    piece of the member ends (member offsets)."""

    nzb: Path
    name: str
    data: bytes
    piece_ends: tuple[int, ...]


def rar4writer():
    """The test-side RAR 4 writer module."""
    path = REPO / "tests" / "data" / "rar" / "rar4writer.py"
    spec = importlib.util.spec_from_file_location("rar4writer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def piece_ends(volumes: list[Path], password: str) -> tuple[int, ...]:
    """Member offsets where each volume's piece of the one member ends (volumes in order)."""
    keys, ends = RarKeys(password), [0]
    for volume in volumes:
        data = volume.read_bytes()
        scan = VolumeScan(detect(data), len(data), volume.name, keys)
        while scan.want() is not None:
            scan.feed(0, data)
        ends += [ends[-1] + b.data_size for b in scan.blocks if b.kind is Kind.FILE]
    return tuple(ends[1:])


def rar5(folder: Path, source: Path, switches: list[str]) -> list[Path]:
    """`rar a -m0 <switches> -v<VOLUME>b` of `source`; the volumes in order."""
    run(["rar", "a", "-idq", "-m0", *switches, f"-v{VOLUME}b", "set.rar", source.name], cwd=folder)
    volumes = sorted(folder.glob("set.part*.rar"))
    assert len(volumes) == 3, volumes
    return volumes


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Release]:
    """The four releases, posted once for the module."""
    need("rar")
    made: dict[str, Release] = {}

    folder = tmp_path_factory.mktemp("rar5-parts")
    wav = make_wav(folder / "Album.Parts.wav", SIZE, seed=21)
    volumes = rar5(folder, wav, [])
    nzb = post(volumes, folder / "Album.Parts.nzb")
    made["parts"] = Release(nzb, wav.name, wav.read_bytes(), piece_ends(volumes, ""))

    folder = tmp_path_factory.mktemp("rar4-old")
    data = make_wav(folder / "source.wav", SIZE, seed=22).read_bytes()
    writer = rar4writer()
    pieces = writer.write_rar4([("Album.Old.wav", data)], VOLUME)
    volumes = []
    for name, piece in zip(writer.volume_names("album", len(pieces), "old"), pieces, strict=True):
        (folder / name).write_bytes(piece)
        volumes.append(folder / name)
    run(["rar", "t", "-idq", "album.rar"], cwd=folder)
    nzb = post(volumes, folder / "Album.Old.nzb")
    made["rar4"] = Release(nzb, "Album.Old.wav", data, piece_ends(volumes, ""))

    folder = tmp_path_factory.mktemp("rar5-random")
    wav = make_wav(folder / "Album.Random.wav", SIZE, seed=23)
    ordered = rar5(folder, wav, [])
    ends = piece_ends(ordered, "")
    rng = random.Random(23)
    renamed = [volume.rename(folder / rng.randbytes(8).hex()) for volume in ordered]
    rng.shuffle(renamed)
    nzb = post(renamed, folder / "Album.Random.nzb")
    made["random"] = Release(nzb, wav.name, wav.read_bytes(), ends)

    folder = tmp_path_factory.mktemp("rar5-hp")
    wav = make_wav(folder / "Album.Locked.wav", SIZE, seed=24)
    volumes = rar5(folder, wav, [f"-hp{PASSWORD}"])
    nzb = post(volumes, folder / "Album.Locked.nzb", meta=f"password={PASSWORD}")
    assert f">{PASSWORD}</meta>" in nzb.read_text(encoding="utf-8")
    made["locked"] = Release(nzb, wav.name, wav.read_bytes(), piece_ends(volumes, PASSWORD))
    return made


@pytest.fixture(scope="module")
def imported(session_server: AltmountServer, releases: dict[str, Release]) -> dict[str, str]:
    """The WebDAV path of each release's member after `altmount import`."""
    paths = {}
    for key, release in releases.items():
        session_server.import_nzb(release.nzb)
        paths[key] = session_server.find_file(release.nzb.stem, release.name).path
    return paths


KINDS = ["parts", "rar4", "random", "locked"]


@pytest.mark.parametrize("kind", KINDS)
def test_member_replaces_its_volumes(
    altmount: AltmountServer, imported: dict[str, str], releases: dict[str, Release], kind: str
) -> None:
    """The release folder lists the member alone, with its (plaintext) size."""
    folder = imported[kind].rsplit("/", 1)[0]
    entries = altmount.propfind(folder + "/")
    release = releases[kind]
    assert [(e.path.rsplit("/", 1)[1], e.size) for e in entries] == [
        (release.name, len(release.data))
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_ranges_across_volumes_match(
    altmount: AltmountServer, imported: dict[str, str], releases: dict[str, Release], kind: str
) -> None:
    """Ranges at volume, article and AES-block boundaries, and a full GET, are byte-exact."""
    release = releases[kind]
    data, size = release.data, len(release.data)
    cases = [(0, 15), (15, 16), (17, 4111), (ARTICLE - 3, 2 * ARTICLE + 5), (size - 17, size - 1)]
    for end in release.piece_ends[:-1]:
        cases += [(end - 1, end), (end - 17, end + 33), (end, end + 100_000)]
    assert_ranges(altmount, imported[kind], data, cases)
    assert_whole(altmount, imported[kind], data)


def test_ffprobe_reads_the_decrypted_member(
    altmount: AltmountServer, imported: dict[str, str]
) -> None:
    """ffprobe, a real client seeking over HTTP, sees the WAV inside the -hp archive."""
    (stream,) = ffprobe_streams(altmount, imported["locked"])
    assert (stream["sample_rate"], stream["channels"]) == ("44100", 2)
