"""The metadata tree shared through PostgreSQL: hosts with their own LMDB replicas of one
operation log, against a real PostgreSQL server."""

from __future__ import annotations

import json
import logging

import psycopg
import pytest

from altmount.errors import DatabaseUnavailable, MetadataError
from altmount.metadata import FileRecord, SegmentTable
from altmount.postgres.metadata import ReplicatedMetadataStore


def record(path: str, size: int = 250, mtime: float = 1_700_000_000.0) -> FileRecord:
    count = -(-size // 100)
    table = SegmentTable.uniform([f"{path}-{i}@x" for i in range(count)], 100, size, ("a.b",))
    return FileRecord(path, size, mtime, "ok", table, "Release", "")


class Ticks:
    """A monotonic clock the test moves, so misses always catch up."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def hosts(postgres_dsn, tmp_path):
    """Two hosts' stores (separate local folders) on one database."""
    opened = []

    def open_host(name: str) -> ReplicatedMetadataStore:
        store = ReplicatedMetadataStore(tmp_path / name, postgres_dsn, 64 << 20, monotonic=Ticks())
        opened.append(store)
        return store

    yield open_host
    for store in opened:
        store.close()


def log_rows(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM metadata_log").fetchone()[0]


def test_a_file_imported_on_one_host_is_found_on_the_other(hosts):
    """A put on host A is seen by host B's first lookup, record and listing identical."""
    a, b = hosts("a"), hosts("b")
    a.put_files([record("/tv/Show/e01.mkv"), record("/tv/Show/e02.mkv", 999)])
    assert b.get_file("/tv/Show/e02.mkv") == a.get_file("/tv/Show/e02.mkv")
    assert b.get_file("/tv/Show/e02.mkv").segments.message_ids == a.get_file(
        "/tv/Show/e02.mkv").segments.message_ids
    assert [e.name for e in b.listdir("/tv/Show")] == ["e01.mkv", "e02.mkv"]
    assert b.stat("/tv") == a.stat("/tv")  # the writer's clock travels with the change


def test_moves_deletes_and_folders_replicate_in_order(hosts, postgres_dsn):
    """mkdir, move of a tree and delete on A, then B catches up to the same tree."""
    a, b = hosts("a"), hosts("b")
    a.put_files([record("/complete/tv/R1/e.mkv"), record("/complete/tv/R2/e.mkv")])
    assert b.catch_up() == 1
    assert a.make_dirs(["/library/Show/Season 1"]) is True
    assert a.make_dirs(["/library/Show/Season 1"]) is False  # nothing to log
    a.move("/complete/tv/R1", "/library/Show/Season 1/R1")
    assert a.delete("/complete/tv/R2") == 1
    assert log_rows(postgres_dsn) == 4
    assert b.catch_up() == 3
    for path in ("/library/Show/Season 1/R1/e.mkv", "/complete/tv/R2", "/complete/tv"):
        assert b.stat(path) == a.stat(path)
    assert b.get_file("/library/Show/Season 1/R1/e.mkv").path == "/library/Show/Season 1/R1/e.mkv"


def test_a_refused_change_is_not_logged(hosts, postgres_dsn):
    """A move onto an existing name fails on the writer and never reaches the log."""
    a = hosts("a")
    a.put_files([record("/x/one.mkv"), record("/x/two.mkv")])
    with pytest.raises(MetadataError, match="already exists"):
        a.move("/x/one.mkv", "/x/two.mkv")
    assert log_rows(postgres_dsn) == 1
    a.put_files([record("/x/three.mkv")])  # the writer still works
    assert log_rows(postgres_dsn) == 2


def test_a_restarted_host_applies_only_what_is_new(hosts, tmp_path, postgres_dsn):
    """Reopened on its folder, a host keeps its replica and applies only the newer rows."""
    a, b = hosts("a"), hosts("b")
    a.put_files([record("/m/one.mkv")])
    assert b.catch_up() == 1
    b.close()
    a.put_files([record("/m/two.mkv")])
    again = ReplicatedMetadataStore(tmp_path / "b", postgres_dsn, 64 << 20)
    try:
        assert json.loads((tmp_path / "b" / "replica.json").read_text())["seq"] == 2
        assert [e.name for e in again.listdir("/m")] == ["one.mkv", "two.mkv"]
    finally:
        again.close()


def test_a_dirty_or_foreign_replica_is_rebuilt_from_the_log(hosts, tmp_path, postgres_dsn,
                                                            caplog):
    """A replica whose last change is unconfirmed, or that followed another database, is
    rebuilt: files only it had are gone, the log's are there."""
    a = hosts("a")
    a.put_files([record("/shared.mkv")])
    a.local.put_files([record("/only-here.mkv")])  # as if a commit was lost after a crash
    state = tmp_path / "a" / "replica.json"
    state.write_text(json.dumps({**json.loads(state.read_text()), "dirty": True}))
    with caplog.at_level(logging.WARNING, logger="altmount.postgres.metadata"):
        a.catch_up()
    assert a.stat("/only-here.mkv") is None and a.get_file("/shared.mkv") is not None
    assert "not known to be saved" in caplog.text
    state.write_text(json.dumps({"log": "another", "seq": 1}))
    a.local.put_files([record("/stale.mkv")])
    a.catch_up()
    assert a.local.stat("/stale.mkv") is None and a.get_file("/shared.mkv") is not None


def test_an_unreachable_database_is_a_clear_error(tmp_path):
    """No database at the DSN: DatabaseUnavailable naming the DSN without its password."""
    dsn = "postgresql://altmount:hunter2@127.0.0.1:1/none?connect_timeout=1"
    with pytest.raises(DatabaseUnavailable) as caught:
        ReplicatedMetadataStore(tmp_path / "x", dsn)
    assert "database.dsn" in str(caught.value) and "hunter2" not in str(caught.value)
