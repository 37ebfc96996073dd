"""7z sets through the whole import (DirectImporter), in provider round trips, on the fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_import_pipeline import Providers
from test_sevenzip import MOVIE, NOTES, SPLIT, writer

from altmount import _core
from altmount.config import parse_config
from altmount.errors import ImportFailed
from altmount.importer import DirectImporter
from altmount.metadata import MetadataStore
from altmount.stream.cbc import cipher_span, decrypt_range
from altmount.testing.articles import post_release

DATA = Path(__file__).parent.parent / "data" / "7z"
RAR = Path(__file__).parent.parent / "data" / "rar"


@pytest.fixture
def store(tmp_path):
    """An empty metadata store."""
    with MetadataStore(tmp_path / "meta", map_size=64 << 20) as opened:
        yield opened


def run_import(
    store,
    files: dict[str, bytes],
    nzb_name="Movie.nzb",
    meta=None,
    extensions=None,
    article_size=1000,
):
    """Import the posted files in 1000-byte articles; (result or Failure, rounds, release)."""
    release = post_release(files, article_size=article_size, meta=meta)
    providers = Providers(release.articles)
    allowed = "" if extensions is None else f"import:\n  allowed_file_extensions: {extensions!r}\n"
    config, _ = parse_config(allowed)
    importer = DirectImporter(providers.fetch, providers.stat, store, config)
    result, rounds = providers.run(importer.import_nzb(release.nzb, nzb_name))
    return result, rounds, release


def read_record(record, release) -> bytes:
    """A record's bytes through plan_range and assemble_range, decrypted when it has a cipher."""
    table, cipher = record.segments, record.cipher
    span = cipher_span(cipher, 0, record.size) if cipher else None
    start, end = (span.start, span.end) if span else (0, record.size)
    plan = _core.plan_range(table.offsets, table.skips, start, end)
    pieces = [
        _core.decode_article(release.articles[table.message_ids[i]]).data
        for i in range(plan.first, plan.last)
    ]
    out = bytearray(end - start)
    _core.assemble_range(out, pieces, plan)
    return decrypt_range(cipher, 0, record.size, bytes(out)) if cipher else bytes(out)


def fixtures(*names: str) -> dict[str, bytes]:
    """Fixture files by name."""
    return {name: (DATA / name).read_bytes() for name in names}


def files_of(result, release) -> dict[str, bytes]:
    """The imported files' names (without the release folder) and bytes."""
    return {r.path.rsplit("/", 1)[1]: read_record(r, release) for r in result.files}


def test_split_set_costs_one_round_trip(store):
    """Three split pieces in 1000-byte articles: the header costs one round on a plain import."""
    result, rounds, release = run_import(store, fixtures(*SPLIT))
    assert files_of(result, release) == {"movie.mkv": MOVIE}
    _, plain_rounds, _ = run_import(store, {"other.mkv": MOVIE})
    assert rounds == plain_rounds + 1


def test_split_set_whose_header_sits_in_the_last_article_costs_no_round_trip(store):
    """When the set's header lies in the last article of the last volume (as with real
    article sizes), the probe already read it: the 7z stage asks the providers nothing."""
    pieces = writer().split((DATA / "encrypted-headers.7z").read_bytes(), 4000, "set.7z")
    result, rounds, release = run_import(
        store, pieces, meta={"password": "secret"}, article_size=100_000
    )
    assert files_of(result, release) == {"movie.mkv": MOVIE}
    _, plain_rounds, _ = run_import(store, {"other.mkv": MOVIE}, article_size=100_000)
    assert rounds == plain_rounds


def test_encrypted_headers_with_meta_password_cost_one_round_trip(store):
    """-mhe with the NZB's password: decrypted header and member, still one extra round."""
    result, rounds, release = run_import(
        store, fixtures("encrypted-headers.7z"), meta={"password": "secret"}
    )
    assert files_of(result, release) == {"movie.mkv": MOVIE}
    assert result.files[0].cipher is not None and result.files[0].password == "secret"
    _, plain_rounds, _ = run_import(store, {"other.mkv": MOVIE})
    assert rounds == plain_rounds + 1


def test_ten_piece_encrypted_set_costs_one_round_trip(store):
    """-mhe cut into ten pieces (the header spans several): still one extra round."""
    archive = (DATA / "encrypted-headers.7z").read_bytes()
    pieces = writer().split(archive, -(-len(archive) // 10), "set.7z")
    assert len(pieces) == 10
    result, rounds, release = run_import(store, pieces, meta={"password": "secret"})
    assert files_of(result, release) == {"movie.mkv": MOVIE}
    _, plain_rounds, _ = run_import(store, {"other.mkv": MOVIE})
    assert rounds == plain_rounds + 1


def test_password_in_the_nzb_name(store):
    """`Name{{secret}}.nzb` gives the password of a data-encrypted archive."""
    result, _, release = run_import(store, fixtures("encrypted-data.7z"), "Movie{{secret}}.nzb")
    assert files_of(result, release) == {"movie.mkv": MOVIE}


@pytest.mark.parametrize("meta", [None, {"password": "wrong"}])
@pytest.mark.parametrize("name", ["encrypted-data.7z", "encrypted-headers.7z"])
def test_no_or_wrong_password_fails_clearly(store, name, meta):
    """Without the right password both kinds of encryption fail as an encrypted archive."""
    result, _, _ = run_import(store, fixtures(name), meta=meta)
    assert result.check(ImportFailed)
    assert f"{name}: encrypted archive, no/wrong password" in result.getErrorMessage()


def test_compressed_media_fails_with_the_method(store):
    """An LZMA2 archive fails naming the media file and the method."""
    result, _, _ = run_import(store, fixtures("compressed.7z"))
    assert result.check(ImportFailed)
    assert (
        "compressed archive: movie.mkv uses method LZMA2, not streamable"
        in result.getErrorMessage()
    )


def test_missing_volume_fails_naming_it(store):
    """A split set without its last piece fails naming that piece."""
    result, _, _ = run_import(store, fixtures(*SPLIT[:2]))
    assert result.check(ImportFailed)
    assert "volume 3 of copy-split.7z missing" in result.getErrorMessage()


def test_volumes_are_not_exposed_next_to_other_files(store):
    """With every extension allowed, the pieces are replaced by the member, not listed too."""
    files = {**fixtures(*SPLIT), "Bonus.wav": b"RIFF\0\0\0\0WAVE" + bytes(5000)}
    result, _, release = run_import(store, files, extensions=[])
    assert sorted(files_of(result, release)) == ["Bonus.wav", "movie.mkv"]


def test_solid_aes_folder_streams_every_member(store):
    """Members of one encrypted solid folder (mid-folder CBC windows) import byte-exact."""
    result, _, release = run_import(
        store, fixtures("solid-aes.7z"), meta={"password": "secret"}, extensions=[".mkv", ".txt"]
    )
    got = files_of(result, release)
    assert got == {"E01.mkv": MOVIE, "E02.mkv": MOVIE[::-1], "notes.txt": NOTES}


def test_rar_and_7z_sets_in_one_release(store):
    """A RAR set and two 7z sets in one NZB all expose their members, byte-exact."""
    rar = [f"rar5-vol.part{n}.rar" for n in (1, 2, 3)]
    files = {
        **{name: (RAR / name).read_bytes() for name in rar},
        **fixtures(*SPLIT),
        "other.7z": (DATA / "tree.7z").read_bytes(),
    }
    result, _, release = run_import(store, files)
    got = {r.path.split("/Movie/", 1)[1]: read_record(r, release) for r in result.files}
    assert got == {"movie.mkv": MOVIE, "movie (2).mkv": MOVIE, "Season/E01.mkv": MOVIE}


@pytest.mark.parametrize(
    ("password", "expected"), [("secret", "a1b2c3d4e5f6.mkv"), ("wrong", None)]
)
def test_hex_named_encrypted_member(store, password, expected):
    """An extensionless member of an encrypted archive gets its extension from the decrypted
    magic; with a wrong password that magic is missing and the set is refused."""
    archive = writer().write_7z([("a1b2c3d4e5f6", MOVIE)], password="secret", cycles=6)
    result, _, release = run_import(store, {"x.7z": archive}, meta={"password": password})
    if expected is None:
        assert result.check(ImportFailed)
        assert "x.7z: encrypted archive, no/wrong password" in result.getErrorMessage()
    else:
        assert files_of(result, release) == {expected: MOVIE}
