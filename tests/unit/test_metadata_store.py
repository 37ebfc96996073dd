"""Tests for altmount.metadata.store: the LMDB virtual tree."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from altmount.errors import MetadataError, PathError
from altmount.metadata import DirEntry, FileRecord, MetadataStore, SegmentTable
from altmount.metadata.store import WALK_BATCH


def _rec(path: str, size: int = 250, mtime: float = 1700000000.0) -> FileRecord:
    count = -(-size // 100)
    table = SegmentTable.uniform([f"{path}-{i}@x" for i in range(count)], 100, size, ("a.b.c",))
    return FileRecord(path, size, mtime, "ok", table, "Release", "")


class _Clock:
    """A settable clock so directory mtimes are predictable."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> _Clock:
    """A clock starting at t=1000."""
    return _Clock()


@pytest.fixture
def store(tmp_path: Path, clock: _Clock) -> Iterator[MetadataStore]:
    """A fresh store in a temporary directory."""
    with MetadataStore(tmp_path / "meta", map_size=64 << 20, clock=clock) as opened:
        yield opened


def _names(entries: list[DirEntry]) -> list[str]:
    return [entry.name for entry in entries]


def test_put_get_and_parents(store: MetadataStore) -> None:
    """A stored file reads back equal and its parent directories exist."""
    record = _rec("/complete/movies/Name/file.mkv")
    store.put_files([record])
    assert store.get_file(record.path) == record
    assert _names(store.listdir("/")) == ["complete"]
    assert _names(store.listdir("/complete")) == ["movies"]
    assert store.listdir("/complete/movies/Name") == [
        DirEntry("file.mkv", record.path, False, 250, 1700000000.0)
    ]
    assert store.stat("/complete/movies") == DirEntry("movies", "/complete/movies", True, 0, 1000.0)


def test_root_always_exists(store: MetadataStore) -> None:
    """ "/" is a directory even in an empty store, and empty to list."""
    assert store.stat("/") == DirEntry("", "/", True, 0, 0.0)
    assert store.listdir("/") == []


def test_missing_paths(store: MetadataStore) -> None:
    """Absent paths give None from get_file/stat and an error from listdir."""
    assert store.get_file("/nope") is None
    assert store.stat("/nope") is None
    with pytest.raises(MetadataError, match="no such directory"):
        store.listdir("/nope")


def test_listdir_of_file_is_an_error(store: MetadataStore) -> None:
    """Listing a file raises MetadataError."""
    store.put_files([_rec("/a/f")])
    with pytest.raises(MetadataError, match="not a directory"):
        store.listdir("/a/f")


def test_listdir_sorted_and_not_leaking_siblings(store: MetadataStore) -> None:
    """A listing is sorted by name and holds only direct children, not /a.b or /a/x/y."""
    store.put_files(
        _rec(p) for p in ["/a/zeta", "/a/\u00e9t\u00e9", "/a/Beta", "/a/x/y", "/a.b/q", "/a+b/r"]
    )
    assert _names(store.listdir("/a")) == ["Beta", "x", "zeta", "\u00e9t\u00e9"]
    assert _names(store.listdir("/")) == ["a", "a+b", "a.b"]


def test_overwrite_replaces(store: MetadataStore) -> None:
    """Putting an existing path replaces its record and its size in the listing."""
    store.put_files([_rec("/d/f", size=250)])
    store.put_files([_rec("/d/f", size=50)])
    assert store.get_file("/d/f") == _rec("/d/f", size=50)
    assert [e.size for e in store.listdir("/d")] == [50]


def test_directory_mtime_follows_changes(store: MetadataStore, clock: _Clock) -> None:
    """A directory's mtime moves when entries are added to or removed from it."""
    store.put_files([_rec("/d/f")])
    clock.now = 2000.0
    store.put_files([_rec("/d/g")])
    assert store.stat("/d").mtime == 2000.0  # type: ignore[union-attr]
    clock.now = 3000.0
    store.delete("/d/g")
    assert store.stat("/d").mtime == 3000.0  # type: ignore[union-attr]
    assert store.stat("/").mtime == 1000.0  # type: ignore[union-attr]


def test_put_files_is_all_or_nothing(store: MetadataStore) -> None:
    """An exception in the middle of put_files leaves nothing behind."""

    def records() -> Iterator[FileRecord]:
        yield _rec("/x/one")
        yield _rec("/x/two")
        raise RuntimeError("importer crashed")

    with pytest.raises(RuntimeError):
        store.put_files(records())
    assert store.listdir("/") == []
    assert store.get_file("/x/one") is None


def test_invalid_path_aborts_the_batch(store: MetadataStore) -> None:
    """A bad path in a batch raises PathError and stores none of the batch."""
    with pytest.raises(PathError):
        store.put_files([_rec("/ok/one"), _rec("/ok/../two")])
    assert store.listdir("/") == []


def test_file_and_directory_cannot_swap(store: MetadataStore) -> None:
    """A file cannot replace a directory, nor a directory be created over a file."""
    store.put_files([_rec("/d/sub/f")])
    with pytest.raises(MetadataError, match="is a directory"):
        store.put_files([_rec("/d/sub")])
    with pytest.raises(MetadataError, match="a file is there"):
        store.put_files([_rec("/d/sub/f/g")])


@pytest.mark.parametrize(
    "path",
    ["relative", "", "/a/../b", "/a/./b", "/a//b", "/a/", "/a\x00b", "/\ud800", "/" + "x" * 600],
)
def test_path_validation(store: MetadataStore, path: str) -> None:
    """Relative, NUL, `..`, empty-component, unencodable and overlong paths raise PathError."""
    with pytest.raises(PathError):
        store.stat(path)


def test_delete_file(store: MetadataStore) -> None:
    """Deleting a file removes it from its parent, which stays even when empty."""
    store.put_files([_rec("/d/f")])
    assert store.delete("/d/f") == 1
    assert store.get_file("/d/f") is None
    assert store.listdir("/d") == []
    assert _names(store.listdir("/")) == ["d"]


def test_delete_directory_is_recursive(store: MetadataStore) -> None:
    """Deleting a directory removes every file and directory below it, nothing beside it."""
    store.put_files(_rec(p) for p in ["/d/a", "/d/s/b", "/d/s/t/c", "/d.x/keep", "/d+x/keep"])
    assert store.delete("/d") == 3
    assert _names(store.listdir("/")) == ["d+x", "d.x"]
    assert [r.path for r in store.walk_files()] == ["/d+x/keep", "/d.x/keep"]
    assert store.stat("/d/s") is None


def test_delete_missing_and_root(store: MetadataStore) -> None:
    """Deleting a missing path removes nothing; deleting "/" is refused."""
    assert store.delete("/missing") == 0
    with pytest.raises(PathError):
        store.delete("/")


def test_move_file(store: MetadataStore) -> None:
    """A moved file keeps its record under the new path; new parents are created."""
    store.put_files([_rec("/in/f.mkv")])
    store.move("/in/f.mkv", "/out/deep/g.mkv")
    assert store.get_file("/in/f.mkv") is None
    moved = store.get_file("/out/deep/g.mkv")
    assert moved is not None and moved.path == "/out/deep/g.mkv"
    assert moved.segments == _rec("/in/f.mkv").segments
    assert store.listdir("/in") == []
    assert _names(store.listdir("/out/deep")) == ["g.mkv"]


def test_move_directory_tree(store: MetadataStore) -> None:
    """Moving a directory moves its whole subtree and nothing that only shares a prefix."""
    store.put_files(_rec(p) for p in ["/m/A/a", "/m/A/s/b", "/m/A.b/c"])
    store.move("/m/A", "/n/B")
    assert [r.path for r in store.walk_files()] == ["/m/A.b/c", "/n/B/a", "/n/B/s/b"]
    assert _names(store.listdir("/n/B")) == ["a", "s"]
    assert _names(store.listdir("/n/B/s")) == ["b"]
    assert _names(store.listdir("/m")) == ["A.b"]
    assert store.stat("/m/A") is None


def test_move_replace_is_one_transaction(store: MetadataStore) -> None:
    """replace=True swaps the destination (a file or a tree) out in the same transaction;
    when the move then fails, the destination is still there."""
    store.put_files([_rec("/m/a", 10), _rec("/m/b/x", 20), _rec("/m/b/y", 30)])
    assert store.move("/m/a", "/m/b", replace=True) == 2
    assert store.get_file("/m/b").size == 10 and store.stat("/m/b/x") is None
    keep = "/k" + "z" * 250
    store.put_files([_rec(keep, 50), _rec("/deep/" + "y" * 300, 60)])
    with pytest.raises(PathError):
        store.move("/deep", keep, replace=True)  # the moved names outgrow LMDB's key limit
    assert store.get_file(keep).size == 50
    assert store.get_file("/deep/" + "y" * 300).size == 60


@pytest.mark.parametrize(
    ("src", "dst", "match"),
    [
        ("/m/a", "/m/b", "already exists"),
        ("/m", "/m/inner", "into itself"),
        ("/nothing", "/x", "no such file"),
    ],
)
def test_move_errors(store: MetadataStore, src: str, dst: str, match: str) -> None:
    """Moving onto an existing path, into itself or from nowhere is refused."""
    store.put_files([_rec("/m/a"), _rec("/m/b")])
    with pytest.raises(MetadataError, match=match):
        store.move(src, dst)
    assert _names(store.listdir("/m")) == ["a", "b"]


def test_walk_files_prefix_and_batches(store: MetadataStore) -> None:
    """walk_files yields every file below a prefix in order, across batches."""
    paths = sorted(f"/w/{i:05d}" for i in range(WALK_BATCH * 2 + 3))
    store.put_files(_rec(p, size=10) for p in [*paths, "/w0/x", "/v/y"])
    assert [r.path for r in store.walk_files("/w")] == paths
    assert [r.path for r in store.walk_files("/w/00001")] == ["/w/00001"]
    assert len(list(store.walk_files())) == len(paths) + 2
    assert list(store.walk_files("/none")) == []


SMALL_MAP = 256 << 10


def test_map_grows_on_demand(tmp_path: Path) -> None:
    """A write that does not fit the map grows it (up to the limit) and is stored whole."""
    with MetadataStore(tmp_path / "m", map_size=64 << 20, initial_map_size=SMALL_MAP) as store:
        assert store._map.map_size == SMALL_MAP
        store.put_files(_rec(f"/f/{i}", size=100 * 1000) for i in range(20))
        assert SMALL_MAP < store._map.map_size <= 64 << 20
        assert len(store.listdir("/f")) == 20


def test_map_full_at_the_limit_names_the_setting(tmp_path: Path) -> None:
    """Past metadata.map_size_mb a write fails with an error naming that key (no LMDB
    internals) and stores nothing; what was stored before stays readable."""
    with MetadataStore(tmp_path / "m", map_size=1 << 20, initial_map_size=SMALL_MAP) as store:
        stored = 0
        with pytest.raises(MetadataError) as failure:
            for batch in range(10):
                store.put_files(_rec(f"/f/{batch}-{i}", size=100 * 1000) for i in range(5))
                stored += 5
        message = str(failure.value)
        assert "reached metadata.map_size_mb (1 MiB)" in message
        assert "raise metadata.map_size_mb" in message
        assert "MDB" not in message and "lmdb" not in message.lower()
        assert stored >= 5 and len(store.listdir("/f")) == stored
        assert store._map.map_size == 1 << 20


def _grow_in_child(root: str) -> None:
    with MetadataStore(root, map_size=64 << 20, initial_map_size=SMALL_MAP) as store:
        store.put_files(_rec(f"/child/{i}", size=100 * 1000) for i in range(40))


def test_a_map_grown_by_another_process_is_followed(tmp_path: Path) -> None:
    """When another process grew the map, this one reads what it wrote and writes more."""
    root = tmp_path / "m"
    with MetadataStore(root, map_size=64 << 20, initial_map_size=SMALL_MAP) as store:
        store.put_files([_rec("/mine/a")])
        child = multiprocessing.get_context("spawn").Process(
            target=_grow_in_child, args=(str(root),)
        )
        child.start()
        child.join(60)
        assert child.exitcode == 0
        assert len(store.listdir("/child")) == 40
        store.put_files(_rec(f"/mine/{i}", size=100 * 1000) for i in range(10))
        assert len(store.listdir("/mine")) == 11


def test_ten_thousand_files_list_fast(store: MetadataStore) -> None:
    """10,000 files in one directory list in well under a second."""
    store.put_files(_rec(f"/big/file{i:05d}.mkv", size=10) for i in range(10_000))
    start = time.perf_counter()
    entries = store.listdir("/big")
    elapsed = time.perf_counter() - start
    print(f"listdir of 10,000 entries: {elapsed * 1000:.1f} ms")
    assert len(entries) == 10_000 and entries[0].name == "file00000.mkv"
    assert elapsed < 0.5


def test_readonly_store(tmp_path: Path) -> None:
    """A read-only store reads what a writer stored and refuses writes."""
    with MetadataStore(tmp_path / "meta") as writer:
        writer.put_files([_rec("/a/f")])
    with MetadataStore(tmp_path / "meta", readonly=True) as reader:
        assert reader.get_file("/a/f") == _rec("/a/f")
        with pytest.raises(MetadataError, match="read-only"):
            reader.delete("/a/f")


def test_readonly_store_must_exist(tmp_path: Path) -> None:
    """Opening a missing store read-only raises MetadataError."""
    with pytest.raises(MetadataError, match="cannot be opened"):
        MetadataStore(tmp_path / "absent", readonly=True)


def test_root_path_under_a_file(tmp_path: Path) -> None:
    """A root_path that cannot be created raises MetadataError naming it."""
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(MetadataError, match="cannot be created"):
        MetadataStore(tmp_path / "file" / "meta")


def _open_as_nobody(path: str, result: multiprocessing.Queue[str]) -> None:
    """Child process: drop root, then try to open the store at `path`."""
    os.setgid(65534)
    os.setuid(65534)
    try:
        MetadataStore(path).close()
        result.put("opened")
    except MetadataError as exc:
        result.put(f"MetadataError: {exc}")


@pytest.mark.parametrize("sub", ["", "meta"])
def test_read_only_directory(sub: str) -> None:
    """A directory the user cannot write gives MetadataError (as root: checked as nobody)."""
    base = Path(tempfile.mkdtemp())
    try:
        base.chmod(0o755)
        readonly = base / "ro"
        readonly.mkdir(mode=0o555)
        readonly.chmod(0o555)
        target = str(readonly / sub) if sub else str(readonly)
        if os.geteuid() != 0:
            with pytest.raises(MetadataError):
                MetadataStore(target)
            return
        context = multiprocessing.get_context("spawn")
        result: multiprocessing.Queue[str] = context.Queue()
        child = context.Process(target=_open_as_nobody, args=(target, result))
        child.start()
        outcome = result.get(timeout=60)
        child.join(timeout=60)
        assert outcome.startswith("MetadataError"), outcome
    finally:
        shutil.rmtree(base)


def _writer(
    path: str, to_parent: multiprocessing.Queue[str], to_child: multiprocessing.Queue[str]
) -> None:
    """Child process: write one file, wait for the parent, write another."""
    with MetadataStore(path) as store:
        store.put_files([_rec("/shared/first.mkv")])
        to_parent.put("first")
        to_child.get(timeout=60)
        store.put_files([_rec("/shared/second.mkv")])
        to_parent.put("second")


def test_second_process_writes_while_this_one_reads(tmp_path: Path) -> None:
    """Files committed by another process are seen by this process's next read."""
    path = str(tmp_path / "meta")
    context = multiprocessing.get_context("spawn")
    to_parent: multiprocessing.Queue[str] = context.Queue()
    to_child: multiprocessing.Queue[str] = context.Queue()
    with MetadataStore(path) as store:
        assert store.get_file("/shared/first.mkv") is None
        child = context.Process(target=_writer, args=(path, to_parent, to_child))
        child.start()
        try:
            assert to_parent.get(timeout=60) == "first"
            assert _names(store.listdir("/shared")) == ["first.mkv"]
            to_child.put("go")
            assert to_parent.get(timeout=60) == "second"
            assert _names(store.listdir("/shared")) == ["first.mkv", "second.mkv"]
            assert store.get_file("/shared/second.mkv") == _rec("/shared/second.mkv")
        finally:
            child.join(timeout=60)
        assert child.exitcode == 0


def test_many_stores_and_readers(tmp_path: Path) -> None:
    """Reopening the store many times (each with its reader slots) keeps working."""
    path = tmp_path / "meta"
    for index in itertools.islice(itertools.count(), 20):
        with MetadataStore(path) as store:
            store.put_files([_rec(f"/r/{index}")])
            assert len(store.listdir("/r")) == index + 1


def _sparse_record(path: str) -> FileRecord:
    """A file of five uneven parts of which only the first and last headers were read."""
    table = SegmentTable.sparse(["a", "b", "c", "d", "e"], {0: 0, 1: 100, 4: 900, 5: 1000})
    return FileRecord(path, 1000, 1.0, "ok", table, "r")


def test_learned_offsets_merge_into_the_stored_record(store: MetadataStore) -> None:
    """Offsets learned by two readers add up in the stored record; a contradiction is refused."""
    record = _sparse_record("/r/f.mkv")
    store.put_files([record])
    assert store.learn_offsets("/r/f.mkv", record.segments.learn({2: 300}))
    assert store.learn_offsets("/r/f.mkv", record.segments.learn({3: 450}))
    stored = store.get_file("/r/f.mkv").segments
    assert stored.exact and list(stored.offsets) == [0, 100, 300, 450, 900, 1000]
    with pytest.raises(MetadataError, match="starts at byte 300, not 310"):
        store.learn_offsets("/r/f.mkv", record.segments.learn({2: 310}))


def test_learned_offsets_of_a_gone_or_replaced_file_are_dropped(store: MetadataStore) -> None:
    """A record deleted or re-imported with other segments since the read is left alone."""
    learned = _sparse_record("/r/f.mkv").segments.learn({2: 300})
    assert not store.learn_offsets("/r/f.mkv", learned)
    other = SegmentTable.uniform(["x", "y"], 500, 1000)
    store.put_files([FileRecord("/r/f.mkv", 1000, 1.0, "ok", other, "r")])
    assert not store.learn_offsets("/r/f.mkv", learned)
    assert store.get_file("/r/f.mkv").segments == other
