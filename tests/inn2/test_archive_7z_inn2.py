"""A header-encrypted split 7z made by 7zz, posted to INN2 with nyuu (the password in the NZB
meta), imported by a running altmount and read back with curl and ffprobe."""

from __future__ import annotations

from pathlib import Path

import pytest
from inn2_archive_rig import ARTICLE, assert_ranges, assert_whole, ffprobe_streams, need, post
from inn2lib import AltmountServer, make_wav, run, skip_without_peers

pytestmark = pytest.mark.inn2
skip_without_peers()

PASSWORD = "s3cret 7z"
VOLUME = 1_000_000  # 7zz -v: plain byte pieces of the archive


@pytest.fixture(scope="module")
def posted_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """(NZB, WAV bytes): a -mhe 7z of a 3 MB WAV in 1 MB pieces, posted with the password meta."""
    need("7zz")
    folder = tmp_path_factory.mktemp("sevenzip")
    wav = make_wav(folder / "Album.Track.wav", 3_000_000, seed=7)
    archive = folder / "Album.7z"
    run(
        ["7zz", "a", "-bd", "-bso0", "-mx=0", f"-p{PASSWORD}", "-mhe=on", f"-v{VOLUME}b"]
        + [str(archive), wav.name],
        cwd=folder,
    )
    pieces = sorted(str(p) for p in folder.glob("Album.7z.*"))
    assert len(pieces) == 4, pieces
    nzb = post(pieces, folder / "Album.Encrypted.nzb", meta=f"password={PASSWORD}")
    assert f">{PASSWORD}</meta>" in nzb.read_text(encoding="utf-8")
    return nzb, wav.read_bytes()


@pytest.fixture(scope="module")
def imported(session_server: AltmountServer, posted_set: tuple[Path, bytes]) -> str:
    """The WebDAV path of the WAV inside the archive after `altmount import`."""
    nzb, _ = posted_set
    session_server.import_nzb(nzb)
    return session_server.find_file(nzb.stem, "Album.Track.wav").path


def test_encrypted_member_is_listed_with_its_size(
    altmount: AltmountServer, imported: str, posted_set: tuple[Path, bytes]
) -> None:
    """The member, not the pieces, is in the release folder, with its plaintext size."""
    nzb, data = posted_set
    folder = imported.rsplit("/", 1)[0]
    entries = altmount.propfind(folder + "/")
    assert [(e.path.rsplit("/", 1)[1], e.size) for e in entries] == [("Album.Track.wav", len(data))]


def test_ranges_across_pieces_and_blocks_match(
    altmount: AltmountServer, imported: str, posted_set: tuple[Path, bytes]
) -> None:
    """Ranges at AES-block, article and piece boundaries decrypt to the original bytes."""
    _, data = posted_set
    size = len(data)
    cases = [(0, 0), (0, 15), (15, 16), (17, 4111), (VOLUME - 40, VOLUME + 40)]
    cases += [(ARTICLE - 3, 3 * ARTICLE + 5), (2 * VOLUME - 1, 2 * VOLUME + 100_000)]
    cases += [(size - 17, size - 1), (123_457, 2_345_678)]
    assert_ranges(altmount, imported, data, cases)


def test_full_get_matches_the_original(
    altmount: AltmountServer, imported: str, posted_set: tuple[Path, bytes]
) -> None:
    """A plain GET returns the whole decrypted member, byte for byte."""
    _, data = posted_set
    assert_whole(altmount, imported, data)


def test_ffprobe_reads_the_member(altmount: AltmountServer, imported: str) -> None:
    """ffprobe, a real client seeking over HTTP, sees a 44.1 kHz stereo WAV."""
    (stream,) = ffprobe_streams(altmount, imported)
    assert (stream["sample_rate"], stream["channels"]) == ("44100", 2)
