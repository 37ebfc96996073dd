"""Grouping of RAR volumes and the archive stage, on the committed fixtures, in round trips."""

from __future__ import annotations

import importlib.util
import random
from collections import Counter
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred

from altmount import _core
from altmount.archive.grouping import Volume, group_volumes, name_ordinal, set_members
from altmount.archive.rar import Kind, detect
from altmount.archive.rarcrypto import RarKeys
from altmount.archive.scan import VolumeScan
from altmount.config import parse_config
from altmount.errors import ArticleNotFound, ImportFailed
from altmount.importer import DirectImporter, ImportJob, run_stages
from altmount.importer.direct import default_stages
from altmount.metadata import MetadataStore
from altmount.stream.cbc import decrypt_range
from altmount.testing.articles import post_release

DATA = Path(__file__).parent.parent / "data" / "rar"
MOVIE = b"\x1a\x45\xdf\xa3" + random.Random(1).randbytes(6000)
RAR5 = [f"rar5-vol.part{n}.rar" for n in (1, 2, 3)]
RAR4 = ["rar4-vol.rar", "rar4-vol.r00", "rar4-vol.r01"]
RAR5_HP_VOL = [f"rar5-headers-encrypted-vol.part{n}.rar" for n in (1, 2, 3)]
RAR4_HP_VOL = [f"rar4-headers-encrypted-vol.{ext}" for ext in ("rar", "r00", "r01")]


def volume(key: int, name: str, data: bytes) -> Volume:
    """A scanned Volume of fixture bytes."""
    walker = VolumeScan(detect(data), len(data), name)
    while walker.want() is not None:
        walker.feed(0, data)
    return Volume(key, name, detect(data), len(data), tuple(walker.blocks))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.part1.rar", ("a", 0)),
        ("a.part010.rar", ("a", 9)),
        ("a.rar", ("a", 0)),
        ("a.r00", ("a", 1)),
        ("a.s01", ("a", 102)),
        ("3fa9.7", ("3fa9", 6)),
        ("3fa9c0", None),
    ],
)
def test_name_ordinals(name, expected):
    """Volume names give a stem and a 0-based ordinal, or nothing."""
    assert name_ordinal(name) == expected


@pytest.mark.parametrize("names", [RAR5, RAR4])
def test_shuffled_obfuscated_volumes_are_ordered_by_headers(names):
    """Random names in random order still give one set in volume order."""
    rng = random.Random(3)
    volumes = [
        volume(i, rng.randbytes(6).hex(), (DATA / n).read_bytes()) for i, n in enumerate(names)
    ]
    shuffled = volumes[:]
    rng.shuffle(shuffled)
    (archive,) = group_volumes(shuffled)
    assert archive.problem is None
    assert [v.key for v in archive.volumes] == [0, 1, 2]
    (member,) = [m.member for m in set_members(archive) if m.member.path.endswith(".mkv")]
    joined = b"".join(
        (DATA / names[p.volume]).read_bytes()[p.offset : p.offset + p.length] for p in member.pieces
    )
    assert joined == MOVIE and member.size == len(MOVIE)


def test_gap_names_the_missing_volume():
    """A set without its middle volume reports that volume by number."""
    volumes = [volume(i, n, (DATA / n).read_bytes()) for i, n in enumerate(RAR5) if i != 1]
    assert [s.problem for s in group_volumes(volumes)] == ["volume 2 of rar5-vol.part1.rar missing"]


def test_missing_first_volume_is_reported():
    """Without the first volume the set is refused naming volume 1."""
    volumes = [volume(i, n, (DATA / n).read_bytes()) for i, n in enumerate(RAR4) if i != 0]
    assert group_volumes(volumes)[0].problem == "volume 1 of rar4-vol.r00 missing"


class Providers:
    """Requests queue up; `round()` answers them all, standing for one round trip."""

    def __init__(self, articles, missing=()):
        self.articles, self.missing = articles, set(missing)
        self.pending: list[tuple[Deferred, str, str]] = []
        self.asked: Counter[str] = Counter()
        self.bodies: set[str] = set()

    def fetch(self, message_id):
        """BODY + decode."""
        self.bodies.add(message_id)
        return self._queue("body", message_id)

    def stat(self, message_id):
        """STAT."""
        return self._queue("stat", message_id)

    def _queue(self, kind, message_id):
        self.asked[kind] += 1
        d: Deferred = Deferred()
        self.pending.append((d, kind, message_id))
        return d

    def run(self, deferred):
        """Answer rounds until `deferred` fires; (result, rounds)."""
        outcome: list = []
        deferred.addBoth(outcome.append)
        rounds = 0
        while not outcome:
            assert self.pending, "the import waits for nothing"
            batch, self.pending = self.pending, []
            for d, kind, mid in batch:
                if mid in self.missing or mid not in self.articles:
                    d.callback(False) if kind == "stat" else d.errback(ArticleNotFound(mid))
                else:
                    d.callback(True if kind == "stat" else _core.decode_article(self.articles[mid]))
            rounds += 1
        return outcome[0], rounds


@pytest.fixture
def store(tmp_path):
    """An empty metadata store."""
    with MetadataStore(tmp_path / "meta", map_size=64 << 20) as opened:
        yield opened


def import_with_providers(
    store, files: dict[str, bytes], article_size: int = 1000, password: str | None = None
):
    """Import the posted files (`password` in the NZB meta); (result, rounds, release,
    the Providers that answered)."""
    meta = {"password": password} if password is not None else None
    release = post_release(files, article_size=article_size, meta=meta)
    providers = Providers(release.articles)
    config, _ = parse_config("")
    importer = DirectImporter(providers.fetch, providers.stat, store, config)
    result, rounds = providers.run(importer.import_nzb(release.nzb, "Movie.nzb"))
    return result, rounds, release, providers


def run_import(
    store, files: dict[str, bytes], article_size: int = 1000, password: str | None = None
):
    """Import the posted files (`password` in the NZB meta); (result, rounds, release)."""
    return import_with_providers(store, files, article_size, password)[:3]


def read_all(record, release) -> bytes:
    """The record's bytes through plan_range and assemble_range, decrypted when encrypted."""
    table = record.segments
    size = int(table.offsets[-1])
    plan = _core.plan_range(table.offsets, table.skips, 0, size)
    pieces = [
        _core.decode_article(release.articles[table.message_ids[i]]).data
        for i in range(plan.first, plan.last)
    ]
    out = bytearray(size)
    _core.assemble_range(out, pieces, plan)
    if record.cipher is not None:
        return decrypt_range(record.cipher, 0, record.size, bytes(out))
    return bytes(out)


def rar4writer():
    """The test-side RAR 4 writer module."""
    spec = importlib.util.spec_from_file_location("rar4writer", DATA / "rar4writer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_archive_stage_costs_no_round_trip_when_headers_sit_in_probed_articles(store):
    """Three volumes in 1000-byte articles, every header in a volume's first or last
    article: the probe read them, so the archive stage asks the providers nothing."""
    result, rounds, release = run_import(store, {n: (DATA / n).read_bytes() for n in RAR5})
    (record,) = result.files
    assert record.path.endswith("/movie.mkv")
    assert read_all(record, release) == MOVIE
    plain, plain_rounds, _ = run_import(store, {"other.mkv": MOVIE})
    assert rounds == plain_rounds


@pytest.mark.parametrize("names", [RAR5, RAR4, RAR5_HP_VOL])
def test_each_header_article_is_fetched_once(store, names):
    """The archive stage reuses the probe's first and last articles instead of asking again."""
    result, _, release, providers = import_with_providers(
        store, {n: (DATA / n).read_bytes() for n in names}, password="secret"
    )
    assert len(result.files) == 1
    assert providers.asked["body"] == len(providers.bodies)


def test_probe_hands_on_the_articles_of_archive_volumes_only(store):
    """The probe keeps the first and last article of each RAR volume for the archive stage,
    not those of the other files; the archive stage empties the hand-over."""
    files = {n: (DATA / n).read_bytes() for n in RAR5}
    release = post_release({**files, "sample.mkv": MOVIE}, article_size=1000)
    providers = Providers(release.articles)
    config, _ = parse_config("")
    stages = default_stages(providers.fetch, providers.stat, store, config)
    names = [stage.name for stage in stages]
    probed, _ = providers.run(
        run_stages(stages[: names.index("probe") + 1], ImportJob("Movie.nzb", None, release.nzb))
    )
    volume_ids = {
        mid for posted in release.files if posted.name in files for mid in posted.message_ids
    }
    ends = {
        posted.message_ids[i] for posted in release.files if posted.name in files for i in (0, -1)
    }
    assert set(probed.archive_articles) == ends and ends <= volume_ids
    after, _ = providers.run(
        run_stages(stages[names.index("probe") + 1 : names.index("archive") + 1], probed)
    )
    assert after.archive_articles == {}


def test_member_slices_share_articles(store):
    """Member tables skip header bytes inside articles and keep the articles' yEnc begins."""
    result, _, release = run_import(
        store, {n: (DATA / n).read_bytes() for n in RAR4}, article_size=777
    )
    (record,) = result.files
    assert record.path.endswith("/Season/E01.mkv")
    assert record.segments.skips[0] > 0
    assert read_all(record, release) == MOVIE


def test_compressed_only_fails_with_method(store):
    """A release whose only archive is compressed fails naming file and method."""
    result, _, _ = run_import(store, {"a.rar": (DATA / "rar5-compressed.rar").read_bytes()})
    assert result.check(ImportFailed)
    assert (
        "compressed archive: notes.txt uses method m3, not streamable" in result.getErrorMessage()
    )


@pytest.mark.parametrize("name", ["rar5-encrypted.rar", "rar5-headers-encrypted.rar"])
def test_encrypted_fails_clearly(store, name):
    """Encrypted data or headers fail as an encrypted archive."""
    result, _, _ = run_import(store, {name: (DATA / name).read_bytes()})
    assert result.check(ImportFailed)
    assert "encrypted archive, no/wrong password" in result.getErrorMessage()


@pytest.mark.parametrize(
    "names",
    [
        ["rar5-encrypted.rar"],
        ["rar5-headers-encrypted.rar"],
        [f"rar5-encrypted-vol.part{n}.rar" for n in (1, 2, 3)],
        RAR5_HP_VOL,
        ["rar4-encrypted.rar"],
        RAR4_HP_VOL,
    ],
)
def test_encrypted_member_streams_with_the_password(store, names):
    """With the NZB's password an encrypted member becomes a record with its Cipher."""
    files = {n: (DATA / n).read_bytes() for n in names}
    result, _, release = run_import(store, files, article_size=777, password="secret")
    (record,) = result.files
    assert record.cipher is not None and record.size == len(MOVIE)
    assert record.segments.size == 6016  # the ciphertext, padded to 16
    assert read_all(record, release) == MOVIE


def test_encrypted_headers_cost_only_their_articles(store):
    """Walking -hp volumes reads the articles holding headers, not the data between."""
    files = {n: (DATA / n).read_bytes() for n in RAR5_HP_VOL}
    release = post_release(files, article_size=200, meta={"password": "secret"})
    providers = Providers(release.articles)
    config, _ = parse_config("")
    importer = DirectImporter(providers.fetch, providers.stat, store, config)
    result, _ = providers.run(importer.import_nzb(release.nzb, "Movie.nzb"))
    assert len(result.files) == 1
    inside_data = set()
    for posted in release.files:
        walker = VolumeScan(5, len(posted.data), posted.name, RarKeys("secret"))
        while walker.want() is not None:
            walker.feed(0, posted.data)
        (piece,) = [b for b in walker.blocks if b.kind is Kind.FILE]
        for index, message_id in enumerate(posted.message_ids):
            if piece.data_offset <= index * 200 and (index + 1) * 200 <= piece.next_offset:
                inside_data.add(message_id)
    assert len(inside_data) >= 27
    assert not providers.bodies & inside_data


@pytest.mark.parametrize(
    ("names", "reason"),
    [
        (
            ["rar5-encrypted.rar"],
            "rar5-encrypted.rar: encrypted archive, no/wrong password (movie.mkv)",
        ),
        (RAR5_HP_VOL, "rar5-headers-encrypted-vol: encrypted archive, no/wrong password"),
        (
            ["rar4-encrypted.rar"],
            "rar4-encrypted.rar: encrypted archive, no/wrong password "
            "(movie.mkv: its decrypted start shows no known format)",
        ),
        (
            RAR4_HP_VOL,
            "rar4-headers-encrypted-vol: encrypted archive, no/wrong password",
        ),
    ],
)
def test_wrong_password_fails_clearly(store, names, reason):
    """A wrong password fails the import with the no/wrong password reason, never garbage."""
    files = {n: (DATA / n).read_bytes() for n in names}
    result, _, _ = run_import(store, files, password="not it")
    assert result.check(ImportFailed)
    assert result.getErrorMessage() == reason


def test_rar4_member_without_a_magic_is_not_served(store):
    """RAR 4 data keeps no check value: an .iso (no magic at byte 0) alone proves no key."""
    disc = bytes(40_000)
    volumes = rar4writer().write_rar4([("disc.iso", disc)], password="secret")
    result, _, _ = run_import(store, {"disc.rar": volumes[0]}, password="secret")
    assert result.check(ImportFailed)
    assert result.getErrorMessage() == (
        "disc.rar: encrypted archive, no/wrong password "
        "(disc.iso: its decrypted start shows no known format)"
    )


def test_rar4_member_proved_by_another_with_the_same_key(store):
    """A decrypted .mkv start proves the key, so the .iso encrypted with it is served too."""
    disc = bytes(40_000)
    members = [("disc.iso", disc), ("movie.mkv", MOVIE)]
    volumes = rar4writer().write_rar4(members, password="secret")
    result, _, release = run_import(store, {"both.rar": volumes[0]}, password="secret")
    by_name = {r.path.rsplit("/", 1)[1]: r for r in result.files}
    assert sorted(by_name) == ["disc.iso", "movie.mkv"]
    assert read_all(by_name["disc.iso"], release) == disc
    assert read_all(by_name["movie.mkv"], release) == MOVIE
