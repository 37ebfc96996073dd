"""Hostile and broken NZBs: each fails with a reason naming the problem, or is made safe.

After every failure nothing is stored, nothing appears outside the metadata
root, and the next (good) NZB imports normally with the same importer.
"""

from __future__ import annotations

import os
import re
import time

import pytest
from test_import_pipeline import Providers, make_config, media

from altmount.errors import ImportFailed
from altmount.importer import DirectImporter
from altmount.metadata import MetadataStore
from altmount.testing.articles import PostedFile, build_nzb, post_release, yenc_article

GOOD = post_release({"good.mkv": media("mkv", 50_000, 7)}, article_size=20_000, salt="good")
ONE = post_release({"a.mkv": media("mkv", 50_000, 1)}, article_size=20_000)
HEAD = b'<?xml version="1.0"?>\n'
NZB_OPEN = b'<nzb xmlns="http://www.newzbin.com/DTD/2003/nzb">'


def file_xml(subject: str, segments: str) -> bytes:
    """One <file> element with the given subject and <segment> elements."""
    return (
        f'<file poster="p" date="1" subject="{subject}"><groups><group>a.b</group>'
        f"</groups><segments>{segments}</segments></file>"
    ).encode()


def big_nzb(target_bytes: int) -> bytes:
    """A valid NZB of about `target_bytes` listing articles no provider has."""
    per_file = 2000
    files = []
    while len(files) * per_file * 95 < target_bytes:
        n = len(files)
        ids = tuple(f"part{i}.file{n}.0123456789abcdef@big.invalid" for i in range(per_file))
        files.append(
            PostedFile(
                f"f{n}.mkv", b"", f'"f{n}.mkv" yEnc (1/{per_file})', ids, (700_000,) * per_file
            )
        )
    return build_nzb(files)


BILLION_LAUGHS = (
    HEAD
    + b"""<!DOCTYPE nzb [
 <!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
]><nzb><file subject="&d;"/></nzb>"""
)
EXTERNAL_ENTITY = HEAD + (
    b'<!DOCTYPE nzb [<!ENTITY x SYSTEM "file:///etc/passwd">]><nzb><file subject="&x;"/></nzb>'
)

FAILING = {
    "not-xml": (b"this is not an NZB at all", r"Bad\.nzb: NZB line 1, column \d+: syntax error"),
    "empty": (b"", "NZB is empty"),
    "truncated": (ONE.nzb[: len(ONE.nzb) // 2], r"NZB line \d+, column \d+"),
    "zero-segments": (
        HEAD + NZB_OPEN + file_xml("a.mkv", "") + b"</nzb>",
        r"all 1 <file> elements have no segments",
    ),
    "nul-in-subject": (
        HEAD
        + NZB_OPEN
        + file_xml("a&#0;.mkv", '<segment bytes="1" number="1">x@y</segment>')
        + b"</nzb>",
        "reference to invalid character number",
    ),
    "10kb-subject": (
        HEAD
        + NZB_OPEN
        + file_xml("a" * 10_000 + ".mkv", '<segment bytes="1" number="1">x@y</segment>')
        + b"</nzb>",
        "subject longer than 4096 bytes",
    ),
    "entity-bomb": (BILLION_LAUGHS, r"declares XML entities \(<!ENTITY\); refused as unsafe"),
    "external-entity": (EXTERNAL_ENTITY, "refused as unsafe"),
    "crlf-in-message-id": (
        HEAD
        + NZB_OPEN
        + file_xml("a.mkv", '<segment bytes="1" number="1">x@y&#13;&#10;QUIT</segment>')
        + b"</nzb>",
        "is not printable ASCII",
    ),
    "all-articles-missing": (
        ONE.nzb.replace(b"altmount.test", b"gone.invalid"),
        "dead post: articles of all 1 file.*missing on every provider",
    ),
}


@pytest.fixture
def setup(tmp_path):
    """An importer over a store in tmp_path/meta and a provider holding GOOD and ONE."""
    store = MetadataStore(tmp_path / "meta", map_size=64 << 20)
    providers = Providers({**GOOD.articles, **ONE.articles})
    importer = DirectImporter(providers.fetch, providers.stat, store, make_config())
    yield importer, store, providers, tmp_path
    store.close()


def attempt(providers, importer, nzb, name="Bad.nzb"):
    """Run one import to the end; return its result or Failure."""
    result, _ = providers.run(importer.import_nzb(nzb, name))
    return result


@pytest.mark.parametrize("case", sorted(FAILING))
def test_bad_nzb_fails_with_reason_and_the_next_proceeds(setup, case):
    """The import fails naming the problem, stores nothing, and a good NZB still imports."""
    importer, store, providers, tmp_path = setup
    nzb, reason = FAILING[case]
    result = attempt(providers, importer, nzb)
    assert result.check(ImportFailed), result
    assert re.search(reason, result.getErrorMessage()), result.getErrorMessage()
    assert store.listdir("/") == []
    assert os.listdir(tmp_path) == ["meta"]
    good = attempt(providers, importer, GOOD.nzb, "Good.nzb")
    assert [r.path for r in good.files] == ["/complete/complete/Good/good.mkv"]


def test_nzb_above_the_size_limit_is_refused_without_parsing(setup):
    """A 65 MiB NZB is refused at once with the limit named."""
    importer, store, providers, _ = setup
    started = time.perf_counter()
    result = attempt(providers, importer, b" " * (65 << 20))
    assert result.check(ImportFailed) and "larger than the 64 MiB accepted" in str(result.value)
    assert time.perf_counter() - started < 1


def test_50_mb_nzb_of_a_dead_post_fails_in_bounded_time(setup):
    """A 50 MB NZB is parsed (off the reactor in production) and fails as a dead post."""
    importer, store, providers, _ = setup
    nzb = big_nzb(50_000_000)
    assert len(nzb) > 50_000_000
    started = time.perf_counter()
    result, rounds = providers.run(importer.import_nzb(nzb, "Huge.nzb"))
    assert result.check(ImportFailed) and "dead post" in result.getErrorMessage()
    assert rounds == 1 and time.perf_counter() - started < 15
    assert store.listdir("/") == []


@pytest.mark.parametrize(
    ("subject", "yenc_name", "stored"),
    [
        ('"../../../etc/passwd.mkv" yEnc (1/3)', "../../../etc/passwd.mkv", "passwd.mkv"),
        ('"/etc/cron.d/evil.mkv" yEnc (1/3)', "/etc/cron.d/evil.mkv", "evil.mkv"),
        ('"..\\..\\win.mkv" yEnc (1/3)', "..\\..\\win.mkv", "win.mkv"),
        ('"nul.mkv" yEnc (1/3)', "nul\x00byte.mkv", "nul_byte.mkv"),
        ('"x.mkv" yEnc (1/3)', "n" * 10_000 + ".mkv", "n" * 251 + ".mkv"),
        ('"x.mkv" yEnc (1/3)', "..", "x.mkv"),
    ],
    ids=["dot-dot", "absolute", "backslash", "nul-in-yenc-name", "10kb-yenc-name", "only-dots"],
)
def test_hostile_names_stay_inside_the_release_folder(tmp_path, subject, yenc_name, stored):
    """Path tricks in subjects and yEnc names end as one safe name inside the release folder."""
    data = media("mkv", 50_000, 3)
    release = post_release({"x.mkv": data}, article_size=20_000, subjects={"x.mkv": subject})
    articles = {
        mid: yenc_article(
            data[i * 20_000 : (i + 1) * 20_000],
            name=yenc_name,
            part=i + 1,
            total_parts=3,
            begin=i * 20_000,
            file_size=len(data),
        )
        for i, mid in enumerate(release.files[0].message_ids)
    }
    providers = Providers(articles)
    with MetadataStore(tmp_path / "meta", map_size=64 << 20) as store:
        importer = DirectImporter(providers.fetch, providers.stat, store, make_config())
        result = attempt(providers, importer, release.nzb, "Rel.nzb")
        assert [r.path for r in result.files] == [f"/complete/complete/Rel/{stored}"]
        assert [r.path for r in store.walk_files("/")] == [result.files[0].path]
    assert os.listdir(tmp_path) == ["meta"]


def test_external_dtd_is_never_fetched(setup):
    """An external DTD and a reference to its entity stay inert: nothing fetched, name kept."""
    importer, store, providers, _ = setup
    nzb = re.sub(
        rb"<!DOCTYPE[^>]*>", b'<!DOCTYPE nzb SYSTEM "http://127.0.0.1:9/evil.dtd">', ONE.nzb
    )
    nzb = re.sub(rb'subject="[^"]*"', b'subject="&x;"', nzb)
    result = attempt(providers, importer, nzb)
    assert [r.path.rsplit("/", 1)[1] for r in result.files] == ["a.mkv"]


def test_duplicate_segment_numbers_keep_the_first(setup):
    """A segment number listed twice keeps its first message-id; the file imports whole."""
    importer, store, providers, _ = setup
    second = ONE.files[0].message_ids[1]
    nzb = ONE.nzb.replace(
        f">{second}</segment>".encode(),
        f'>{second}</segment><segment bytes="9" number="2">bogus@x</segment>'.encode(),
    )
    result = attempt(providers, importer, nzb)
    assert result.files[0].size == 50_000
    assert result.files[0].segments.message_ids == ONE.files[0].message_ids


@pytest.mark.parametrize("announced", ["1", "999999999999"])
def test_lying_bytes_attributes_are_ignored(setup, announced):
    """Sizes come from the yEnc headers, whatever the NZB's bytes attributes claim."""
    importer, store, providers, _ = setup
    nzb = ONE.nzb
    for size in set(ONE.files[0].encoded_sizes):
        nzb = nzb.replace(f'bytes="{size}"'.encode(), f'bytes="{announced}"'.encode())
    result = attempt(providers, importer, nzb)
    assert result.files[0].size == 50_000
