"""The watch folder: stable-size rule, categories from sub-folders, processed and failed files.

File work runs inline (a synchronous `in_thread`) and time is a fake clock.
"""

from __future__ import annotations

import dataclasses
import gzip
import os

import pytest
from test_queue_service import FakeImporter, SyncPool, SyncReactor, result
from twisted.internet import defer

from altmount.config import Config
from altmount.queue import QueueService, QueueStore, State
from altmount.queue.watch import FAILED_DIR, PROCESSED_DIR, Candidate, FolderScanner, WatchFolder
from altmount.testing.articles import post_release

NZB = post_release({"movie.mkv": b"x" * 5000}, article_size=2000).nzb
INTERVAL = 2.0


def touch(path, data: bytes = NZB, mtime_ns: int | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def test_a_file_is_ready_once_unchanged_between_two_scans(tmp_path):
    """A new file is not ready at its first sighting, ready at the second if unchanged."""
    scanner = FolderScanner(tmp_path)
    touch(tmp_path / "a.nzb", mtime_ns=10**18)
    assert scanner.ready() == []
    assert scanner.ready() == [Candidate(tmp_path / "a.nzb", None)]


def test_a_growing_file_waits(tmp_path):
    """A file whose size changed since the last scan is left for a later scan."""
    scanner = FolderScanner(tmp_path)
    path = touch(tmp_path / "a.nzb", NZB[:100], mtime_ns=10**18)
    scanner.ready()
    touch(path, NZB[:200], mtime_ns=10**18)
    assert scanner.ready() == []
    assert scanner.ready() == [Candidate(path, None)]


def test_categories_from_sub_folders_and_what_is_ignored(tmp_path):
    """Sub-folders give the category; hidden files, other extensions, our own folders and
    deeper levels are ignored; .nzb.gz counts."""
    for name in (
        "top.nzb",
        "tv/ep.NZB",
        "movies/film.nzb.gz",
        ".partial.nzb",
        "notes.txt",
        "tv/deeper/x.nzb",
        f"{FAILED_DIR}/bad.nzb",
        f"{PROCESSED_DIR}/done.nzb",
    ):
        touch(tmp_path / name)
    scanner = FolderScanner(tmp_path)
    scanner.ready()
    assert scanner.ready() == [
        Candidate(tmp_path / "movies/film.nzb.gz", "movies"),
        Candidate(tmp_path / "top.nzb", None),
        Candidate(tmp_path / "tv/ep.NZB", "tv"),
    ]
    assert Candidate(tmp_path / "movies/film.nzb.gz", "movies").nzb_name == "film.nzb"


def test_missing_watch_dir_is_empty(tmp_path):
    """A watch folder that does not exist (yet) yields nothing instead of failing."""
    assert FolderScanner(tmp_path / "nope").ready() == []


def test_accept_and_reject_move_files_aside(tmp_path):
    """accept moves to .processed/<category>/, reject to failed/ with a .error; names never clash."""
    scanner = FolderScanner(tmp_path)
    first = Candidate(touch(tmp_path / "tv/a.nzb"), "tv")
    assert scanner.accept(first) == tmp_path / PROCESSED_DIR / "tv/a.nzb"
    again = Candidate(touch(tmp_path / "tv/a.nzb"), "tv")
    assert scanner.accept(again) == tmp_path / PROCESSED_DIR / "tv/1-a.nzb"
    bad = Candidate(touch(tmp_path / "b.nzb", b"junk"), None)
    target = scanner.reject(bad, "b.nzb: not XML")
    assert target == tmp_path / FAILED_DIR / "b.nzb" and not bad.path.exists()
    assert (tmp_path / FAILED_DIR / "b.nzb.error").read_text() == "b.nzb: not XML\n"


def test_read_checks_the_nzb(tmp_path):
    """read returns the un-gzipped NZB and raises NZBParseError for junk."""
    from altmount.errors import NZBParseError

    scanner = FolderScanner(tmp_path)
    gz = Candidate(touch(tmp_path / "a.nzb.gz", gzip.compress(NZB)), None)
    assert scanner.read(gz) == NZB
    with pytest.raises(NZBParseError):
        scanner.read(Candidate(touch(tmp_path / "b.nzb", b"<nzb"), None))


@pytest.fixture
def watched(tmp_path):
    """A WatchFolder over tmp_path/watch feeding a (not processing) queue; all inline."""
    reactor = SyncReactor()
    base = Config()
    config = dataclasses.replace(
        base,
        import_=dataclasses.replace(
            base.import_, watch_dir=str(tmp_path / "watch"), watch_interval_seconds=INTERVAL
        ),
    )
    store = QueueStore(tmp_path / "q.db")
    queue = QueueService(reactor, store, FakeImporter(), config, threadpool=SyncPool())
    watch = WatchFolder(reactor, queue, config, in_thread=defer.maybeDeferred)
    yield reactor, store, watch, tmp_path / "watch"
    result(watch.stop())
    result(queue.stop())
    assert reactor.getDelayedCalls() == []


def test_watch_enqueues_stable_files_on_the_timer(watched):
    """Dropped files are queued with their category at the second scan, then moved aside."""
    reactor, store, watch, root = watched
    touch(root / "tv/Show.S01E01.nzb.gz", gzip.compress(NZB))
    touch(root / "Movie.nzb")
    watch.start()
    assert store.count() == 0
    reactor.advance(INTERVAL)
    items = store.list(descending=False)
    assert [(i.nzb_name, i.category, i.source, i.state) for i in items] == [
        ("Movie.nzb", "Default", "watch", State.PENDING),
        ("Show.S01E01.nzb", "tv", "watch", State.PENDING),
    ]
    assert store.nzb(items[1].id) == NZB
    assert (root / PROCESSED_DIR / "tv/Show.S01E01.nzb.gz").exists()
    assert (root / PROCESSED_DIR / "Movie.nzb").exists()
    reactor.advance(INTERVAL)
    assert store.count() == 2  # taken once


def test_watch_moves_bad_files_to_failed(watched):
    """A file that is not an NZB goes to failed/ with the parser's reason; nothing is queued."""
    reactor, store, watch, root = watched
    touch(root / "broken.nzb", b"<?xml version='1.0'?>\n<nzb><file>")
    watch.start()
    reactor.advance(INTERVAL)
    assert store.count() == 0
    error = (root / FAILED_DIR / "broken.nzb.error").read_text()
    assert error.startswith("broken.nzb: ") and "line" in error


def test_an_unmovable_file_is_queued_once_and_reported_once(watched, caplog):
    """When `.processed` cannot be made (a file holds the name), the NZB is queued once,
    the problem is logged once, later scans leave it; a changed file is a new drop."""
    reactor, store, watch, root = watched
    touch(root / PROCESSED_DIR, b"not a folder")
    path = touch(root / "Movie.nzb", mtime_ns=10**18)
    with caplog.at_level("WARNING"):
        watch.start()
        for _ in range(4):
            reactor.advance(INTERVAL)
    assert store.count() == 1 and path.exists()
    moves = [r.getMessage() for r in caplog.records if "cannot move" in r.getMessage()]
    assert len(moves) == 1 and str(path) in moves[0] and "writable" in moves[0]
    touch(path, NZB + b"\n", mtime_ns=2 * 10**18)
    reactor.advance(INTERVAL)
    reactor.advance(INTERVAL)
    assert store.count() == 2


def test_an_unmovable_bad_file_is_reported_once(watched, caplog):
    """A bad NZB that cannot go to failed/ (a file holds the name) is reported once."""
    reactor, store, watch, root = watched
    touch(root / FAILED_DIR, b"not a folder")
    touch(root / "broken.nzb", b"<nzb", mtime_ns=10**18)
    with caplog.at_level("WARNING"):
        watch.start()
        for _ in range(4):
            reactor.advance(INTERVAL)
    assert store.count() == 0
    assert sum("broken.nzb" in r.getMessage() for r in caplog.records) == 2  # reason, move
