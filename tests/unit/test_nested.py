"""Archives and disc images inside archives, through the archive stage in round trips: RAR 4
sets written by tests/data/rar/rar4writer.py, images by tests/data/iso, no tool needed."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import numpy as np
import pytest
from test_archive_stage import Providers, read_all
from test_iso import writer

from altmount import _core
from altmount.archive.model import MemberFile
from altmount.archive.nested import MAX_NESTING, PLAINTEXT_CHUNK, _Views
from altmount.config import parse_config
from altmount.errors import ImportFailed
from altmount.importer import DirectImporter
from altmount.metadata import Cipher, MetadataStore, SegmentTable
from altmount.stream.cbc import cipher_span, decrypt_range
from altmount.testing.articles import post_release

MKV = b"\x1a\x45\xdf\xa3" + random.Random(5).randbytes(50_000)
_RAR4 = Path(__file__).parent.parent / "data" / "rar" / "rar4writer.py"


def rar4(entries: list[tuple[str, bytes]], stem: str, volume: int | None = None, **options):
    """Stored RAR 4 volumes of `entries`, by .partN.rar name."""
    spec = importlib.util.spec_from_file_location("rar4writer", _RAR4)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    volumes = module.write_rar4(entries, volume, **options)
    return dict(zip(module.volume_names(stem, len(volumes), "part"), volumes, strict=True))


@pytest.fixture
def store(tmp_path):
    """An empty metadata store."""
    with MetadataStore(tmp_path / "meta", map_size=64 << 20) as opened:
        yield opened


def run_import(store, posted: dict[str, bytes], password: str = ""):
    """(result or Failure, round trips, release) of importing the posted files."""
    release = post_release(
        posted, article_size=1000, meta={"password": password} if password else None
    )
    providers = Providers(release.articles)
    config, _ = parse_config("")
    importer = DirectImporter(providers.fetch, providers.stat, store, config)
    result, rounds = providers.run(importer.import_nzb(release.nzb, "Movie.nzb"))
    return result, rounds, release


def imported(store, posted: dict[str, bytes], password: str = ""):
    """(result, rounds, release) of importing the posted files; fails the test on an error."""
    result, rounds, release = run_import(store, posted, password)
    assert not hasattr(result, "check"), result
    return result, rounds, release


def files_of(result, release) -> dict[str, bytes]:
    """The imported files' relative paths and bytes."""
    prefix = result.release_dir + "/"
    return {r.path.removeprefix(prefix): read_all(r, release) for r in result.files}


def test_rar_in_rar(store):
    """A stored RAR inside a stored multi-volume RAR exposes the inner member byte-exact."""
    outer = rar4([("inner.rar", rar4([("movie.mkv", MKV)], "inner")["inner.rar"])], "outer", 20_000)
    result, _, release = imported(store, outer)
    assert files_of(result, release) == {"movie.mkv": MKV}


def test_inner_volumes_group_like_posted_ones(store):
    """Inner volumes with random names, in shuffled order, in another folder, make one set."""
    inner = list(rar4([("movie.mkv", MKV)], "inner", 12_000).values())
    rng = random.Random(7)
    names = [f"CD1/{rng.randbytes(6).hex()}" for _ in inner]
    entries = list(zip(names, inner, strict=True))
    rng.shuffle(entries)
    result, _, release = imported(store, rar4(entries, "outer", 30_000))
    assert files_of(result, release) == {"CD1/movie.mkv": MKV}


def test_media_named_members_are_not_opened(store):
    """A member named .mkv is taken by its name: its first bytes are never read."""
    disguised = rar4([("movie.mkv", MKV)], "x")["x.rar"]
    plain = rar4([("movie.mkv", disguised)], "outer")
    result, rounds, release = imported(store, plain)
    assert files_of(result, release) == {"movie.mkv": disguised}
    _, plain_rounds, _ = imported(store, rar4([("movie.mkv", MKV)], "other"))
    assert rounds == plain_rounds


def test_nesting_costs_a_few_round_trips(store):
    """Each nested level adds its header reads: two levels, a handful of round trips."""
    level2 = rar4([("movie.mkv", MKV)], "l2")["l2.rar"]
    level1 = rar4([("l2.rar", level2)], "l1")["l1.rar"]
    _, nested_rounds, _ = imported(store, rar4([("l1.rar", level1)], "l0"))
    _, plain_rounds, _ = imported(store, rar4([("movie.mkv", MKV)], "p"))
    print(f"\nRAR in RAR in RAR: {nested_rounds} round trips, plain RAR: {plain_rounds}")
    assert nested_rounds <= plain_rounds + 2 * 3


def nest(levels: int) -> dict[str, bytes]:
    """movie.mkv inside `levels` RARs inside one posted RAR."""
    data, name = MKV, "movie.mkv"
    for level in range(levels, 0, -1):
        data, name = rar4([(name, data)], f"level{level}")[f"level{level}.rar"], f"level{level}.rar"
    return rar4([(name, data)], "posted")


def test_nesting_up_to_the_limit_opens(store):
    """Archives nested MAX_NESTING deep inside the posted one are all opened."""
    result, _, release = imported(store, nest(MAX_NESTING))
    assert files_of(result, release) == {"movie.mkv": MKV}


def test_nesting_past_the_limit_is_refused(store):
    """One level more is refused, naming the archive, not followed."""
    result, _, _ = run_import(store, nest(MAX_NESTING + 1))
    assert result.check(ImportFailed)
    assert (
        f"level{MAX_NESTING + 1}.rar: archive nested more than {MAX_NESTING} deep, not opened"
        in result.getErrorMessage()
    )


def test_disc_images_in_rar(store):
    """A UDF 2.50 (Blu-ray) and an ISO 9660 (DVD) image stored in a RAR expose their files
    under folders named as the images; split extents read back byte-exact."""
    bd = writer("udfwriter").write_udf250(
        {"BDMV/STREAM/00001.m2ts": MKV, "BDMV/index.bdmv": b"INDX0200"},
        split=("BDMV/STREAM/00001.m2ts",),
    )
    dvd = writer("isowriter").write_iso9660({"VTS_01_1.VOB": MKV[::-1]})
    result, _, release = imported(store, rar4([("bd.iso", bd), ("dvd.iso", dvd)], "discs", 200_000))
    found = files_of(result, release)
    assert found == {"bd/BDMV/STREAM/00001.m2ts": MKV, "dvd/VIDEO_TS/VTS_01_1.VOB": MKV[::-1]}


def test_image_listing_itself_is_a_loop(store):
    """An image with a file that is the image itself: refused as a loop, not followed."""
    dvd = bytearray(writer("isowriter").write_iso9660({"VTS_01_1.VOB": MKV, "SELF.ISO": b"x"}))
    record = dvd.index(b"SELF.ISO;1") - 33
    dvd[record + 2 : record + 18] = (
        (0).to_bytes(4, "little")
        + (0).to_bytes(4, "big")
        + len(dvd).to_bytes(4, "little")
        + len(dvd).to_bytes(4, "big")
    )
    result, _, release = imported(store, rar4([("dvd.iso", bytes(dvd))], "loop", 200_000))
    assert "dvd/VIDEO_TS/SELF.ISO: the same bytes as dvd.iso (a loop), not opened again" in (
        result.warnings
    )
    assert files_of(result, release)["dvd/VIDEO_TS/VTS_01_1.VOB"] == MKV


def test_damaged_image_stays_itself(store):
    """An image whose file system cannot be read is exposed as the image, with the reason."""
    dvd = bytearray(writer("isowriter").write_iso9660({"VTS_01_1.VOB": MKV}))
    dvd[20 * 2048] = 7  # the root directory's first record: 7 bytes long
    result, _, release = imported(store, rar4([("dvd.iso", bytes(dvd))], "bad"))
    assert files_of(result, release) == {"dvd.iso": bytes(dvd)}
    assert any("dvd.iso: damaged ISO 9660 image" in w for w in result.warnings)


def test_rar_inside_an_encrypted_member(store):
    """A stored RAR that is an encrypted member: its member streams as a window of the
    outer ciphertext (the cipher offset composed)."""
    inner = rar4([("movie.mkv", MKV)], "inner")["inner.rar"]
    posted = rar4([("inner.rar", inner)], "outer", 20_000, password="secret")
    result, _, release = imported(store, posted, password="secret")
    (record,) = result.files
    assert record.cipher is not None and record.cipher.offset > 0 and record.size == len(MKV)
    assert decrypted(record, release) == MKV


def test_inner_set_over_encrypted_members_is_refused(store):
    """Inner volumes that are separate encrypted members cannot stream: refused with why."""
    inner = rar4([("movie.mkv", MKV)], "inner", 20_000)
    posted = rar4(list(inner.items()), "outer", password="secret")
    result, _, _ = run_import(store, posted, password="secret")
    assert result.check(ImportFailed)
    assert "movie.mkv: not one contiguous piece of an encrypted archive member" in (
        result.getErrorMessage()
    )


def decrypted(record, release) -> bytes:
    """An encrypted record's plaintext: its table's bytes decrypted, the window cut out."""
    table = record.segments
    ciphertext = b"".join(
        _core.decode_article(release.articles[mid]).data[skip : skip + int(end - start)]
        for mid, skip, start, end in zip(
            table.message_ids, table.skips, table.offsets[:-1], table.offsets[1:], strict=True
        )
    )
    span = cipher_span(record.cipher, 0, record.size)
    return decrypt_range(record.cipher, 0, record.size, ciphertext[span.start : span.end])


def table(ids: list[str], lengths: list[int], skips: list[int]) -> SegmentTable:
    """A segment table of the given slices."""
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return SegmentTable(ids, offsets, np.array(skips, dtype=np.int64), np.zeros(len(ids), np.int64))


KEY = Cipher(b"k" * 16, b"i" * 16, 48, 5 * PLAINTEXT_CHUNK)


def encrypted_source() -> tuple[_Views, MemberFile, SegmentTable]:
    """Views with one encrypted member registered, and its plaintext view."""
    views = _Views(articles=None)
    source = MemberFile("outer.bin", table(["a@x", "b@x"], [3 << 20, 3 << 20], [0, 0]), KEY)
    return views, source, views.view(source)


def test_contiguous_window_of_an_encrypted_member_composes_the_cipher():
    """Slices of a view that follow each other become one cipher window on the real table."""
    views, source, view = encrypted_source()
    ids = view.message_ids
    inner = MemberFile("x.mkv", table([ids[1], ids[2]], [PLAINTEXT_CHUNK - 100, 500], [100, 0]))
    resolved = views.resolve(inner)
    assert resolved == MemberFile(
        "x.mkv", source.table, Cipher(KEY.key, KEY.iv, 48 + PLAINTEXT_CHUNK + 100, inner.size)
    )


@pytest.mark.parametrize(
    ("slices", "problem"),
    [
        ([(1, 100, 50), (1, 200, 50)], "not one contiguous piece"),  # a gap
        ([(1, 100, 50), (-1, 0, 50)], "not one contiguous piece"),  # part real, part view
    ],
)
def test_windows_that_are_not_contiguous_are_refused(slices, problem):
    """A member with a gap, or only partly inside the encrypted member, cannot stream."""
    views, _, view = encrypted_source()
    ids = [view.message_ids[i] if i >= 0 else "real@x" for i, _, _ in slices]
    inner = MemberFile("x.mkv", table(ids, [n for _, _, n in slices], [s for _, s, _ in slices]))
    assert problem in views.resolve(inner)


def test_encrypted_inside_encrypted_is_refused():
    """A member encrypted again inside an encrypted member cannot stream."""
    views, _, view = encrypted_source()
    inner = MemberFile("x.mkv", table([view.message_ids[0]], [4096], [0]), KEY)
    assert "encrypted inside an encrypted archive member" in views.resolve(inner)
