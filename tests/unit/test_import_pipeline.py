"""The import pipeline end to end against a fake provider that answers in round trips."""

from __future__ import annotations

import dataclasses
import hashlib
import random
import struct
from collections import Counter

import pytest
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.python.failure import Failure

from altmount import _core
from altmount.config import parse_config
from altmount.errors import ArticleNotFound, ImportFailed, NNTPTimeout
from altmount.importer import DirectImporter, ImportResult
from altmount.metadata import MetadataStore
from altmount.par2 import MAGIC
from altmount.testing.articles import PostedFile, build_nzb, post_release, yenc_article

ARTICLE = 20_000


class Providers:
    """A fake provider set: requests queue up and `round()` answers them all at once.

    One call of `round()` stands for one pipelined round trip to the providers.
    """

    def __init__(self, articles, missing=(), errors=None):
        self.articles = dict(articles)
        self.missing = set(missing)
        self.errors = dict(errors or {})
        self.pending: list[tuple[Deferred, str, str]] = []
        self.asked: Counter[str] = Counter()

    def fetch(self, message_id):
        """BODY + decode, as Engine.fetch_article does."""
        return self._queue("body", message_id)

    def stat(self, message_id):
        """STAT, as ProviderRouter.stat does."""
        return self._queue("stat", message_id)

    def _queue(self, kind, message_id):
        self.asked[kind] += 1
        d: Deferred = Deferred()
        self.pending.append((d, kind, message_id))
        return d

    def round(self):
        """Answer every request sent so far."""
        batch, self.pending = self.pending, []
        for d, kind, message_id in batch:
            if message_id in self.errors:
                d.errback(self.errors[message_id])
            elif message_id in self.missing or message_id not in self.articles:
                d.callback(False) if kind == "stat" else d.errback(ArticleNotFound(message_id))
            else:
                body = self.articles[message_id]
                d.callback(True if kind == "stat" else _core.decode_article(body))

    def run(self, deferred):
        """Answer rounds until `deferred` fires; return (result or Failure, rounds)."""
        outcome: list = []
        deferred.addBoth(outcome.append)
        rounds = 0
        while not outcome:
            assert self.pending, "the import waits for nothing: it is stuck"
            self.round()
            rounds += 1
        return outcome[0], rounds


def make_config(**options):
    """A Config whose import section has these options."""
    lines = "".join(f"  {key}: {value!r}\n" for key, value in options.items())
    config, _ = parse_config(f"import:\n{lines}" if lines else "")
    return config


@pytest.fixture
def store(tmp_path):
    """An empty metadata store, closed after the test."""
    with MetadataStore(tmp_path / "meta", map_size=64 << 20) as opened:
        yield opened


def run_import(
    store,
    release_or_articles,
    nzb,
    config=None,
    name="Some.Release.nzb",
    category=None,
    missing=(),
    errors=None,
):
    """Import `nzb`; return (ImportResult or Failure, round trips, Providers)."""
    articles = getattr(release_or_articles, "articles", release_or_articles)
    providers = Providers(articles, missing, errors)
    importer = DirectImporter(providers.fetch, providers.stat, store, config or make_config())
    result, rounds = providers.run(importer.import_nzb(nzb, name, category))
    return result, rounds, providers


def par2_packet(kind: bytes, body: bytes, set_id: bytes = b"R" * 16) -> bytes:
    """One PAR2 packet with a correct MD5 (PAR2 2.0 packet header)."""
    body += b"\0" * (-len(body) % 4)
    signed = set_id + kind + body
    return MAGIC + struct.pack("<Q", 32 + len(signed)) + hashlib.md5(signed).digest() + signed


def par2_index(files: dict[str, bytes], padding: int = 0) -> bytes:
    """A PAR2 index describing `files`, optionally behind `padding` bytes of other packets."""
    ids = [hashlib.md5(name.encode()).digest() for name in files]
    main = par2_packet(b"PAR 2.0\0Main\0\0\0\0", struct.pack("<QI", 4096, len(ids)) + b"".join(ids))
    descs = b"".join(
        par2_packet(
            b"PAR 2.0\0FileDesc",
            struct.pack(
                "<16s16s16sQ",
                file_id,
                hashlib.md5(data).digest(),
                hashlib.md5(data[:16384]).digest(),
                len(data),
            )
            + name.encode(),
        )
        for file_id, (name, data) in zip(ids, files.items(), strict=True)
    )
    filler = par2_packet(b"PAR 2.0\0IFSC\0\0\0\0", b"\0" * padding) if padding else b""
    return main + filler + descs + par2_packet(b"PAR 2.0\0Creator\0", b"test")


def media(kind: str, size: int, seed: int) -> bytes:
    """`size` bytes starting with the magic number of a `kind` file."""
    starts = {
        "mkv": b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01matroska",
        "mp4": b"\0\0\0\x20ftypisom\0\0\x02\0",
        "avi": b"RIFF\0\0\0\0AVI LIST",
    }
    start = starts[kind]
    return start + random.Random(seed).randbytes(size - len(start))


def paths(result: ImportResult) -> list[str]:
    """The stored file names of an import, sorted."""
    return sorted(record.path.rsplit("/", 1)[1] for record in result.files)


# -- plain releases -------------------------------------------------------------------


def test_direct_release_of_ten_files_in_one_round_trip(store):
    """Ten files: first/last articles and the STAT sample travel together in one round."""
    files = {f"Show.S01E{i:02d}.mkv": media("mkv", 60_000 + i * 977, i) for i in range(1, 11)}
    release = post_release(files, article_size=ARTICLE)
    result, rounds, providers = run_import(
        store, release, release.nzb, make_config(segment_sample_percentage=100)
    )
    assert isinstance(result, ImportResult), result
    assert rounds == 1
    assert paths(result) == sorted(files)
    assert result.release_dir == "/complete/complete/Some.Release"
    for record in result.files:
        name = record.path.rsplit("/", 1)[1]
        assert record.size == len(files[name])
        assert store.get_file(record.path) == record
    assert [name for name, _ in result.stage_ms] == [
        "parse",
        "sample",
        "probe",
        "par2",
        "names",
        "archive",
        "select",
        "validate",
        "write",
    ]
    assert providers.asked["body"] == 20
    # 100% sample: every segment but the first and last (read already) is STATted.
    assert providers.asked["stat"] == sum(len(f.message_ids) - 2 for f in release.files)


def test_single_article_file_needs_one_body(store):
    """A file of one article costs one BODY and no STAT."""
    release = post_release({"a.mkv": media("mkv", 5000, 1)}, article_size=ARTICLE)
    result, rounds, providers = run_import(store, release, release.nzb)
    assert paths(result) == ["a.mkv"] and rounds == 1
    assert providers.asked == {"body": 1}


def uneven_post(name, cuts, seed=3):
    """(data, articles, nzb) of a file cut at `cuts` (decoded begin, end pairs)."""
    data = random.Random(seed).randbytes(cuts[-1][1])
    articles = {
        f"u{i}@x": yenc_article(
            data[b:e], name=name, part=i + 1, total_parts=len(cuts), begin=b, file_size=len(data)
        )
        for i, (b, e) in enumerate(cuts)
    }
    posted = post_release({name: data}, part_sizes={name: [e - b for b, e in cuts]})
    nzb = posted.nzb
    for i, message_id in enumerate(posted.files[0].message_ids):
        nzb = nzb.replace(message_id.encode(), f"u{i}@x".encode())
    return data, articles, nzb


UNEVEN = [(0, 20_000), (20_000, 26_000), (26_000, 41_000), (41_000, 50_000), (50_000, 61_000)]


def test_uneven_parts_need_only_first_and_last(store):
    """A media file of uneven parts imports from two articles; its middle offsets stay unknown."""
    _, articles, nzb = uneven_post("u.mkv", UNEVEN)
    result, rounds, providers = run_import(store, articles, nzb)
    assert rounds == 1 and providers.asked["body"] == 2
    table = result.files[0].segments
    assert table.size == 61_000 and not table.exact
    assert [int(table.offsets[i]) for i in (0, 1, 4, 5)] == [0, 20_000, 50_000, 61_000]
    assert list(table.known) == [True, True, False, False, True, True]


def test_three_uneven_parts_are_exact_from_two_headers(store):
    """With three parts, the first and last headers fix the middle one too."""
    _, articles, nzb = uneven_post("u.mkv", [(0, 20_000), (20_000, 30_000), (30_000, 50_000)])
    result, rounds, _ = run_import(store, articles, nzb)
    assert rounds == 1
    assert result.files[0].segments.exact
    assert list(result.files[0].segments.offsets) == [0, 20_000, 30_000, 50_000]


def test_uneven_archive_volume_reads_every_header(store):
    """An archive volume of uneven parts is read whole: the archive stage needs exact offsets."""
    data, articles, nzb = uneven_post("u.bin", UNEVEN)
    rar = b"Rar!\x1a\x07\x01\x00" + data[8:]
    articles = {
        f"u{i}@x": yenc_article(
            rar[b:e], name="u.bin", part=i + 1, total_parts=5, begin=b, file_size=len(rar)
        )
        for i, (b, e) in enumerate(UNEVEN)
    }
    _, _, providers = run_import(store, articles, nzb)
    assert providers.asked["body"] >= len(UNEVEN) + 2


def test_uneven_post_missing_a_segment_in_the_nzb_fails_clearly(store):
    """An uneven post whose NZB skips a segment number gets an error naming the number."""
    _, articles, nzb = uneven_post("u.mkv", UNEVEN)
    nzb = drop_last_segment(nzb, "u2@x")
    result, _, _ = run_import(store, articles, nzb)
    assert result.check(ImportFailed)
    assert "u.mkv: NZB lists 4 segments but the yEnc header implies 5" in str(result.value)


def test_uneven_post_without_part_numbers_names_the_missing_segment(store):
    """Without yEnc part numbers, a gap in the NZB's segment numbers is named."""
    _, articles, nzb = uneven_post("u.mkv", UNEVEN)
    articles = {
        mid: body.replace(f"=ybegin part={i + 1} total=5 ".encode(), b"=ybegin ", 1)
        for i, (mid, body) in enumerate(articles.items())
    }
    result, _, _ = run_import(store, articles, drop_last_segment(nzb, "u2@x"))
    assert result.check(ImportFailed)
    assert "u.mkv: the NZB has no segment 3 (it lists 4 segments numbered 1-5)" in str(result.value)


def test_uneven_post_with_a_duplicate_segment_number_imports(store):
    """A segment number listed twice keeps its first article, as SABnzbd does."""
    _, articles, nzb = uneven_post("u.mkv", UNEVEN)
    copy = b'<segment bytes="1" number="3">u2@x</segment>'
    nzb = nzb.replace(b"</segments>", copy + b"</segments>", 1)
    result, _, _ = run_import(store, articles, nzb)
    assert paths(result) == ["u.mkv"]
    assert len(result.files[0].segments) == len(UNEVEN)


def test_meta_name_and_password_kept(store):
    """<meta type="name"> names the folder and the password is stored with each file."""
    release = post_release(
        {"a.mkv": media("mkv", 5000, 1)}, meta={"name": "Nice Name", "password": "s3cret"}
    )
    result, _, _ = run_import(store, release, release.nzb, category="movies")
    assert result.release_dir == "/complete/movies/Nice Name"
    assert result.files[0].password == "s3cret"


def test_password_from_the_nzb_name(store):
    """`Name{{password}}.nzb` (the posters' convention) gives the password and a clean folder;
    a <meta type="password"> wins over it."""
    release = post_release({"a.mkv": media("mkv", 5000, 1)})
    result, _, _ = run_import(store, release, release.nzb, name="Show.S01{{pa55}}.nzb")
    assert result.release_dir.endswith("/Show.S01")
    assert result.files[0].password == "pa55"
    meta = post_release({"b.mkv": media("mkv", 5000, 2)}, meta={"password": "meta"}, salt="m")
    result, _, _ = run_import(store, meta, meta.nzb, name="Other{{name}}.nzb")
    assert result.files[0].password == "meta"


def test_season_pack_keeps_every_episode_and_drops_samples(store):
    """Every episode stays, same-named files are numbered, samples and .nfo are left out."""
    files = {f"E{i:02d}.mkv": media("mkv", 100_000, i) for i in range(1, 7)}
    files["E01.sample.mkv"] = media("mkv", 3000, 50)
    files["info.nfo"] = b"about"
    release = post_release(
        files, article_size=ARTICLE, subjects={"E02.mkv": '"E01.mkv" yEnc (1/5)'}
    )
    result, _, _ = run_import(store, release, release.nzb)
    assert paths(result) == [f"E{i:02d}.mkv" for i in range(1, 7)]
    assert sorted(result.skipped) == ["E01.sample.mkv", "info.nfo"]


def test_same_yenc_names_are_numbered(store):
    """Two files whose headers carry the same name both stay, numbered deterministically."""
    one = post_release({"same.mkv": media("mkv", 9000, 1)}, salt="1")
    two = post_release({"same.mkv": media("mkv", 8000, 2)}, salt="2")
    nzb = one.nzb.replace(b"</nzb>", two.nzb.split(b"<file ", 1)[1].join([b"<file ", b""]))
    result, _, _ = run_import(store, {**one.articles, **two.articles}, nzb)
    assert paths(result) == ["same (2).mkv", "same.mkv"]
    assert {r.path.rsplit("/", 1)[1]: r.size for r in result.files} == {
        "same.mkv": 9000,
        "same (2).mkv": 8000,
    }


def test_rename_to_nzb_name_for_a_single_media_file(store):
    """With rename_to_nzb_name the only media file takes the release name and keeps its type."""
    release = post_release({"x7f3a.mkv": media("mkv", 9000, 1), "a.nfo": b"x"})
    result, _, _ = run_import(
        store,
        release,
        release.nzb,
        make_config(rename_to_nzb_name=True),
        name="Movie.2020.1080p.nzb",
    )
    assert paths(result) == ["Movie.2020.1080p.mkv"]


def test_allowed_extensions_filter(store):
    """Files outside import.allowed_file_extensions are skipped and reported."""
    release = post_release({"a.mkv": media("mkv", 9000, 1), "b.avi": media("avi", 9000, 2)})
    result, _, _ = run_import(
        store, release, release.nzb, make_config(allowed_file_extensions=[".avi"])
    )
    assert paths(result) == ["b.avi"] and result.skipped == ("a.mkv",)


# -- obfuscated releases ------------------------------------------------------------------


def obfuscated(files: dict[str, bytes], padding: int = 0, with_par2: bool = True):
    """Post `files` under random hex stems (yEnc names and subjects), plus a PAR2 index."""
    rng = random.Random(len(files) + padding)
    posted = {rng.randbytes(16).hex(): data for data in files.values()}
    if with_par2:
        posted[rng.randbytes(16).hex()] = par2_index(files, padding)
    subjects = {stem: f'[{i}/{len(posted)}] - "{stem}" yEnc (1/1)' for i, stem in enumerate(posted)}
    return post_release(posted, article_size=ARTICLE, subjects=subjects)


def test_obfuscated_names_from_par2_in_the_same_round_trip(store):
    """Real names come from the PAR2 index already in the probe's 16 KiB: no extra round."""
    files = {
        "Movie.2020.mkv": media("mkv", 90_000, 1),
        "Movie.2020.en.srt": b"1\n00:00\n",
        "Extra.mp4": media("mp4", 30_000, 2),
    }
    release = obfuscated(files)
    config = make_config(
        allowed_file_extensions=[".mkv", ".mp4", ".srt"], segment_sample_percentage=100
    )
    result, rounds, _ = run_import(store, release, release.nzb, config)
    assert paths(result) == sorted(files)
    assert rounds == 1
    assert result.warnings == ()


def test_big_par2_index_is_fetched_in_one_more_round(store):
    """FileDesc packets beyond the first 16 KiB cost one more round trip, not one per file."""
    files = {f"Ep{i}.mkv": media("mkv", 100_000, i) for i in range(4)}
    release = obfuscated(files, padding=60_000)
    result, rounds, _ = run_import(
        store, release, release.nzb, make_config(segment_sample_percentage=100)
    )
    assert paths(result) == sorted(files)
    assert rounds == 2


def test_magic_bytes_name_files_without_par2(store):
    """With no PAR2 and no names, the content's magic number gives the extension."""
    files = {
        "a": media("mkv", 30_000, 1),
        "b": media("mp4", 30_000, 2),
        "c": media("avi", 30_000, 3),
    }
    release = obfuscated(files, with_par2=False)
    result, _, _ = run_import(store, release, release.nzb)
    stems = [posted.name for posted in release.files]
    assert paths(result) == sorted(
        f"{stem}{ext}" for stem, ext in zip(stems, [".mkv", ".mp4", ".avi"], strict=True)
    )


def test_yenc_name_beats_obfuscated_subject(store):
    """An opaque subject does not hide the real name in the yEnc header."""
    release = post_release(
        {"Real.Name.mkv": media("mkv", 9000, 1)},
        subjects={"Real.Name.mkv": "a81f0c9e2b [1/1] yEnc"},
    )
    result, _, _ = run_import(store, release, release.nzb)
    assert paths(result) == ["Real.Name.mkv"]


def test_damaged_par2_falls_back_with_a_warning(store):
    """A PAR2 index with no valid packet leaves names to magic bytes and says why."""
    files = {"Movie.mkv": media("mkv", 30_000, 1)}
    release = obfuscated(files, with_par2=False)
    bad = post_release({"deadbeef.par2": MAGIC + struct.pack("<Q", 6) + b"\0" * 80}, salt="p")
    nzb = release.nzb.replace(b"</nzb>", bad.nzb.split(b"<file ", 1)[1].join([b"<file ", b""]))
    result, _, _ = run_import(store, {**release.articles, **bad.articles}, nzb)
    assert paths(result) == [release.files[0].name + ".mkv"]
    assert any("PAR2 index deadbeef.par2: not a usable PAR2 file" in w for w in result.warnings)


# -- missing articles -----------------------------------------------------------------------


def test_dead_post_fails_after_one_round_trip(store):
    """When every first article is gone the import fails after the first round, naming them."""
    release = post_release(
        {f"f{i}.mkv": media("mkv", 50_000, i) for i in range(5)}, article_size=ARTICLE
    )
    result, rounds, _ = run_import(store, release, release.nzb, missing=release.articles)
    assert isinstance(result, Failure) and result.check(ImportFailed)
    message = result.getErrorMessage()
    assert rounds == 1
    assert "dead post" in message and "missing on every provider" in message
    assert release.files[0].message_ids[0] in message
    assert store.listdir("/") == []


def test_missing_sampled_article_fails_naming_it(store):
    """A missing article in the STAT sample fails the import with its message-id."""
    release = post_release({"a.mkv": media("mkv", 200_000, 1)}, article_size=ARTICLE)
    gone = release.files[0].message_ids[4]
    result, rounds, _ = run_import(
        store, release, release.nzb, make_config(segment_sample_percentage=100), missing={gone}
    )
    assert result.check(ImportFailed) and rounds == 1
    assert f"<{gone}>" in result.getErrorMessage()
    assert "acceptable_missing_segments_percentage" in result.getErrorMessage()
    assert store.listdir("/") == []


def test_tolerated_missing_articles_warn(store):
    """Within import.acceptable_missing_segments_percentage the import succeeds with a warning."""
    release = post_release({"a.mkv": media("mkv", 200_000, 1)}, article_size=ARTICLE)
    gone = release.files[0].message_ids[4]
    config = make_config(segment_sample_percentage=100, acceptable_missing_segments_percentage=20)
    result, _, _ = run_import(store, release, release.nzb, config, missing={gone})
    assert paths(result) == ["a.mkv"]
    assert gone in result.warnings[0]


def test_missing_article_of_an_unexposed_file_only_warns(store):
    """A lost .par2 or .nfo does not fail a release whose media files are whole."""
    release = post_release({"a.mkv": media("mkv", 9000, 1), "a.vol0+1.par2": b"x" * 9000})
    lost = release.files[1].message_ids[0]
    result, _, _ = run_import(store, release, release.nzb, missing={lost})
    assert paths(result) == ["a.mkv"]
    assert any(lost in warning for warning in result.warnings)


def drop_last_segment(nzb: bytes, message_id: str) -> bytes:
    """The NZB without the <segment> element of `message_id`."""
    start = nzb.index(f">{message_id}<".encode())
    open_tag = nzb.rindex(b"<segment ", 0, start)
    return nzb[:open_tag] + nzb[nzb.index(b"</segment>", start) + len(b"</segment>") :]


def test_incomplete_nzb_entry_of_an_unexposed_file_only_warns(store):
    """A .par2 whose NZB entry lacks segments is left out with a warning; media imports."""
    release = post_release(
        {"a.mkv": media("mkv", 9000, 1), "a.vol0+1.par2": b"p" * 50_000}, article_size=ARTICLE
    )
    nzb = drop_last_segment(release.nzb, release.files[1].message_ids[-1])
    result, _, _ = run_import(store, release, nzb)
    assert paths(result) == ["a.mkv"]
    assert any("the yEnc header implies 3" in warning for warning in result.warnings)


def test_incomplete_nzb_entry_of_a_media_file_fails(store):
    """A media file whose NZB entry lacks segments fails the import, naming the file."""
    release = post_release({"a.mkv": media("mkv", 50_000, 1)}, article_size=ARTICLE)
    nzb = drop_last_segment(release.nzb, release.files[0].message_ids[-1])
    result, _, _ = run_import(store, release, nzb)
    assert result.check(ImportFailed)
    assert "a.mkv: NZB lists 2 segments but the yEnc header implies 3" in str(result.value)


def test_lost_media_file_fails(store):
    """A media file whose first article is gone fails the import (0% tolerated)."""
    release = post_release({"a.mkv": media("mkv", 9000, 1), "b.mkv": media("mkv", 9000, 2)})
    lost = release.files[1].message_ids[0]
    result, _, _ = run_import(store, release, release.nzb, missing={lost})
    assert result.check(ImportFailed) and lost in result.getErrorMessage()


def test_provider_errors_pass_through_for_retry(store):
    """A timeout is not an ImportFailed: the queue sees the NNTP error and retries later."""
    release = post_release({"a.mkv": media("mkv", 9000, 1)})
    mid = release.files[0].message_ids[0]
    result, _, _ = run_import(store, release, release.nzb, errors={mid: NNTPTimeout("slow")})
    assert result.check(NNTPTimeout) and store.listdir("/") == []


def test_stat_errors_pass_through(store):
    """A STAT that times out fails the import with that error, not as a missing article."""
    release = post_release({"a.mkv": media("mkv", 100_000, 1)}, article_size=ARTICLE)
    mid = release.files[0].message_ids[2]
    result, _, _ = run_import(
        store,
        release,
        release.nzb,
        make_config(segment_sample_percentage=100),
        errors={mid: NNTPTimeout("slow")},
    )
    assert result.check(NNTPTimeout)


def test_parse_runs_in_the_thread_runner(store):
    """The NZB is parsed through run_in_thread (a big one takes seconds)."""
    release = post_release({"a.mkv": media("mkv", 9000, 1)})
    calls = []

    def runner(fn, *args):
        calls.append(fn.__name__)
        return succeed(fn(*args))

    providers = Providers(release.articles)
    importer = DirectImporter(
        providers.fetch, providers.stat, store, make_config(), run_in_thread=runner
    )
    result, _ = providers.run(importer.import_nzb(release.nzb, "x.nzb"))
    assert calls == ["parse_nzb"] and paths(result) == ["a.mkv"]


# -- pipeline mechanics -----------------------------------------------------------------


class _Cancellable:
    """Stands in for a StatSample: records whether the job was abandoned."""

    cancelled = False

    def cancel(self):
        self.cancelled = True


class _Stage:
    """A stage that applies `action` to the job."""

    def __init__(self, name, action):
        self.name = name
        self.run = action


def test_run_stages_times_each_stage_and_abandons_on_failure():
    """Each stage is timed in order; a failure withdraws the early requests of the last job."""
    from altmount.importer import ImportJob, run_stages

    sample = _Cancellable()
    ticks = iter(range(100))
    stages = [
        _Stage("a", lambda job: dataclasses.replace(job, stats=sample)),
        _Stage("b", lambda job: job),
    ]
    done = run_stages(stages, ImportJob("x.nzb", None), clock=lambda: next(ticks) / 1000)
    job = done.result
    assert [name for name, _ in job.timings] == ["a", "b"] and not sample.cancelled

    def boom(job):
        raise ImportFailed("boom")

    failed = run_stages([*stages, _Stage("c", boom)], ImportJob("x.nzb", None))
    assert failed.result.check(ImportFailed) and sample.cancelled
    failed.addErrback(lambda _: None)


def test_stat_sample_hands_out_answers_early_or_late():
    """Answers arriving before or after the question reach it; unknown ids give None."""
    from altmount.importer.validate import StatSample

    requests = {}

    def stat(mid):
        requests[mid] = Deferred()
        return requests[mid]

    sample = StatSample(stat, ["a", "b", "c", "a"])
    assert sorted(requests) == ["a", "b", "c"]
    requests["a"].callback(True)
    assert sample.answer("a").result is True
    late = sample.answer("b")
    requests["b"].callback(False)
    assert late.result is False
    assert sample.answer("zzz") is None
    sample.cancel()
    cancelled = sample.answer("c")
    assert cancelled.result.check(CancelledError)
    cancelled.addErrback(lambda _: None)


def split_entries(release, cut: int, order=(0, 1)):
    """The release's NZB with its one file split over two <file> entries at segment `cut`;
    `order` lists which halves appear, in which order."""
    posted = release.files[0]
    count = len(posted.message_ids)
    halves = [
        PostedFile(
            posted.name,
            b"",
            f'"{posted.name}" yEnc (1/{cut})',
            posted.message_ids[:cut],
            posted.encoded_sizes[:cut],
        ),
        PostedFile(
            posted.name,
            b"",
            f'"{posted.name}" yEnc ({cut + 1}/{count})',
            posted.message_ids[cut:],
            posted.encoded_sizes[cut:],
        ),
    ]
    return build_nzb([halves[i] for i in order])


def test_file_split_over_two_nzb_entries_is_joined(store):
    """An indexer's split of one file into two entries gives one file with exact offsets."""
    data = random.Random(9).randbytes(100_000)
    release = post_release({"movie.mkv": data}, article_size=10_000)
    result, rounds, _ = run_import(store, release, split_entries(release, 4, order=(1, 0)))
    assert paths(result) == ["movie.mkv"]
    record = result.files[0]
    assert record.size == len(data) and rounds == 2
    assert list(record.segments.offsets) == list(range(0, 100_001, 10_000))
    assert record.segments.message_ids == release.files[0].message_ids


def test_fragment_without_its_start_fails_with_a_reason(store):
    """A continuation entry whose first part is nowhere in the NZB is named in the error."""
    data = random.Random(10).randbytes(100_000)
    release = post_release({"movie.mkv": data}, article_size=10_000)
    result, _, _ = run_import(store, release, split_entries(release, 4, order=(1,)))
    assert isinstance(result, Failure) and result.check(ImportFailed)
    assert "no entry of the NZB holds the start of that file" in result.getErrorMessage()
    assert store.listdir("/") == []
