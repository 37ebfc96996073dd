"""Import strategy links on a real temp folder, metadata store and token table.

The manager (synchronous) is driven directly; the queue hook and the STRM
resource run on a fake reactor whose thread pool runs calls inline.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from altmount.config import CategoryConfig, Config
from altmount.errors import LinkError
from altmount.importer import ImportResult
from altmount.links.manager import LinkManager
from altmount.links.service import LinkedTree, LinkService
from altmount.links.tokens import TokenStore, looks_like_token
from altmount.links.web import StrmResource
from altmount.links.writer import LinkFile, write_folder
from altmount.logsetup import redact_url
from altmount.metadata import MetadataStore
from altmount.metadata.records import FileRecord, SegmentTable
from altmount.queue import QueueService, QueueStore, State
from altmount.web.auth import MAX_DISTINCT_FAILURES, Authenticator

MOUNT = "/mnt/altmount"
RELEASE = "/complete/tv/hd/Show.S01E01"


class SyncReactor(MemoryReactorClock):
    """A MemoryReactorClock whose callFromThread runs the call at once."""

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


class SyncPool:
    """A thread pool stand-in that runs each call inline."""

    def start(self) -> None:
        """Nothing to start."""

    def stop(self) -> None:
        """Nothing to stop."""

    def callInThreadWithCallback(self, on_result, f, *args, **kwargs):
        try:
            value = f(*args, **kwargs)
        except BaseException:
            on_result(False, Failure())
        else:
            on_result(True, value)


def make_config(tmp_path: Path, strategy: str) -> Config:
    base = Config()
    return dataclasses.replace(
        base,
        database=dataclasses.replace(base.database, path=str(tmp_path / "altmount.db")),
        import_=dataclasses.replace(
            base.import_, import_strategy=strategy, import_dir=str(tmp_path / "links")
        ),
        sabnzbd=dataclasses.replace(
            base.sabnzbd,
            enabled=True,
            mount_dir=MOUNT,
            categories=[
                CategoryConfig("Default", 0, 0, "complete"),
                CategoryConfig("tv", 1, 0, "tv/hd"),
            ],
        ),
    )


def record(path: str, size: int = 1000) -> FileRecord:
    table = SegmentTable.uniform(("a@t",), size, size)
    return FileRecord(path, size, 1.0, "ok", table, "Show.S01E01")


@pytest.fixture
def tree(tmp_path):
    """A metadata store holding one release with a media file and a sample."""
    store = MetadataStore(tmp_path / "meta", map_size=16 << 20)
    store.put_files([record(f"{RELEASE}/e01.mkv"), record(f"{RELEASE}/Sample/e01.sample.mkv")])
    yield store
    store.close()


def manager_for(tmp_path, tree, strategy: str) -> LinkManager:
    config = make_config(tmp_path, strategy)
    return LinkManager(config, tree, TokenStore(config.database.path))


def files_of(tree) -> list[str]:
    return [r.path for r in tree.walk_files(RELEASE)]


def test_symlinks_point_at_the_files_under_the_mount(tmp_path, tree):
    """SYMLINK: <import_dir>/<category dir>/<release>/<file> -> mount_dir + the virtual path."""
    links = manager_for(tmp_path, tree, "symlink")
    folder = links.write_release(RELEASE, files_of(tree))
    assert folder == f"{tmp_path}/links/tv/hd/Show.S01E01"
    assert os.readlink(f"{folder}/e01.mkv") == f"{MOUNT}{RELEASE}/e01.mkv"
    assert (
        os.readlink(f"{folder}/Sample/e01.sample.mkv") == f"{MOUNT}{RELEASE}/Sample/e01.sample.mkv"
    )
    assert oct(os.stat(folder).st_mode & 0o777) == "0o755"


def test_strm_files_hold_a_token_url_that_survives_rewrites_and_restarts(tmp_path, tree):
    """STRM: <stem>.strm holds base/strm/<token>/<name>; the token is kept across a rewrite
    and a reopened token table, and it is not the WebDAV password."""
    links = manager_for(tmp_path, tree, "strm")
    folder = links.write_release(RELEASE, files_of(tree))
    url = Path(f"{folder}/e01.strm").read_text()
    token = url.split("/strm/")[1].split("/")[0]
    assert url == f"http://127.0.0.1:8080/strm/{token}/e01.mkv\n" and looks_like_token(token)
    assert token != Config().webdav.password
    links.write_release(RELEASE, files_of(tree))
    assert Path(f"{folder}/e01.strm").read_text() == url
    reopened = TokenStore(tmp_path / "altmount.db")
    assert reopened.lookup(token) == f"{RELEASE}/e01.mkv"


def test_failed_write_leaves_the_old_folder_and_no_temporary(tmp_path):
    """A link that cannot be written fails naming it; the previous folder is untouched."""
    root, folder = f"{tmp_path}/links", f"{tmp_path}/links/tv/Rel"
    write_folder(root, folder, [LinkFile(f"{folder}/a.mkv", target="/mnt/a.mkv")])
    twice = [LinkFile(f"{folder}/b.mkv", target="/mnt/b"), LinkFile(f"{folder}/b.mkv", target="/x")]
    with pytest.raises(LinkError, match=r"cannot write .*/tv/Rel/b\.mkv: File exists"):
        write_folder(root, folder, twice)
    assert os.listdir(folder) == ["a.mkv"]
    assert os.listdir(f"{tmp_path}/links/tv") == ["Rel"]  # no .altmount-* left behind


def test_unwritable_import_dir_is_named(tmp_path, tree):
    """An import_dir below a file fails with LinkError naming the folder."""
    (tmp_path / "links").write_text("a file in the way")
    links = manager_for(tmp_path, tree, "symlink")
    with pytest.raises(LinkError, match=r"cannot create .*links/tv/hd: Not a directory"):
        links.write_release(RELEASE, files_of(tree))


def test_removing_a_release_keeps_category_folders_and_tokens(tmp_path, tree):
    """The item's deletion removes its link folder; category folders and tokens stay."""
    links = manager_for(tmp_path, tree, "strm")
    links.ensure_category_folders()
    folder = links.write_release(RELEASE, files_of(tree))
    assert links.remove_release(RELEASE)
    assert not os.path.exists(folder) and os.path.isdir(f"{tmp_path}/links/tv/hd")
    assert len(links._tokens.all()) == 2


def test_deleting_a_file_removes_its_strm_and_token(tmp_path, tree):
    """WebDAV DELETE of one file: its .strm and token go, the sample's stay."""
    links = manager_for(tmp_path, tree, "strm")
    folder = links.write_release(RELEASE, files_of(tree))
    tree.delete(f"{RELEASE}/e01.mkv")
    assert links.path_deleted(f"{RELEASE}/e01.mkv") == 1
    assert sorted(os.listdir(folder)) == ["Sample"]
    assert [t.path for t in links._tokens.all()] == [f"{RELEASE}/Sample/e01.sample.mkv"]


def test_deleting_the_category_folder_keeps_it_locally(tmp_path, tree):
    """WebDAV DELETE of /complete/tv/hd removes every link below, not the category folder."""
    links = manager_for(tmp_path, tree, "symlink")
    links.ensure_category_folders()
    links.write_release(RELEASE, files_of(tree))
    (tmp_path / "links/tv/hd/notes.txt").write_text("the user's")
    tree.delete("/complete/tv/hd")
    links.path_deleted("/complete/tv/hd")
    assert os.listdir(tmp_path / "links/tv/hd") == ["notes.txt"]


def test_move_takes_the_tokens_along(tmp_path, tree):
    """A renamed release folder keeps its files' tokens."""
    links = manager_for(tmp_path, tree, "strm")
    links.write_release(RELEASE, files_of(tree))
    token = links._tokens.token_for(f"{RELEASE}/e01.mkv")
    assert links.path_moved(RELEASE, "/library/Show/S01") == 2
    assert links._tokens.lookup(token) == "/library/Show/S01/e01.mkv"


def test_revoke_by_token_and_by_folder(tmp_path, tree):
    """Revoking one token or a folder's tokens makes them unknown."""
    links = manager_for(tmp_path, tree, "strm")
    links.write_release(RELEASE, files_of(tree))
    tokens = links._tokens
    first = tokens.token_for(f"{RELEASE}/e01.mkv")
    assert [t.token for t in tokens.revoke(first)] == [first]
    assert tokens.lookup(first) is None
    assert len(tokens.revoke("/complete/tv")) == 1 and tokens.all() == []


def test_regenerate_rewrites_and_cleans_orphans(tmp_path, tree):
    """regenerate restores a missing release folder, removes stale links and leftovers,
    leaves foreign files alone and drops tokens of vanished files."""
    links = manager_for(tmp_path, tree, "strm")
    links.write_release(RELEASE, files_of(tree))
    gone = "/complete/tv/hd/Old.Release/old.mkv"
    links._tokens.token_for(gone)
    stale = tmp_path / "links/tv/hd/Old.Release"
    stale.mkdir()
    (stale / "old.strm").write_text(f"http://127.0.0.1:8080/strm/{'A' * 32}/old.mkv\n")
    (tmp_path / "links/tv/.altmount-0123.tmp").mkdir()
    (tmp_path / "links/readme.txt").write_text("not ours")
    os.remove(tmp_path / "links/tv/hd/Show.S01E01/e01.strm")
    report = links.regenerate([RELEASE])
    assert report.written == [f"{tmp_path}/links/tv/hd/Show.S01E01"] and not report.errors
    assert sorted(report.orphans) == [
        f"{tmp_path}/links/tv/.altmount-0123.tmp",
        str(stale / "old.strm"),
    ]
    assert (tmp_path / "links/tv/hd/Show.S01E01/e01.strm").exists()
    assert not stale.exists() and (tmp_path / "links/readme.txt").exists()
    assert report.tokens_dropped == 1
    again = links.regenerate([RELEASE])
    assert (again.written, again.unchanged, again.orphans) == ([], 1, [])


def test_none_strategy_has_no_manager(tmp_path, tree):
    """A LinkManager for NONE is refused naming the key."""
    with pytest.raises(LinkError, match="import.import_strategy is NONE"):
        manager_for(tmp_path, tree, "none")


# -- the queue hook and the web ------------------------------------------------------------


class Importer:
    """Imports instantly: writes the release's records into the tree."""

    def __init__(self, tree) -> None:
        self.tree = tree

    def import_nzb(self, data, nzb_filename, category=None, progress=None, name_from_file=False):
        files = (record(f"{RELEASE}/e01.mkv"),)
        return defer.succeed(ImportResult(RELEASE, files, (), 1.0))


def service_rig(tmp_path, tree, strategy):
    config = make_config(tmp_path, strategy)
    reactor = SyncReactor()
    links = LinkService(reactor, config, tree, threadpool=SyncPool())
    seen: list[State] = []
    queue_store = QueueStore(tmp_path / "altmount.db")

    def write(item, result):
        seen.append(queue_store.get(item.id).state)  # still processing: not yet completed
        return links.write_import(item, result)

    queue = QueueService(
        reactor, queue_store, Importer(tree), config, threadpool=SyncPool(), on_imported=write
    )
    queue.add_deleted_listener(links.item_deleted)
    return config, reactor, links, queue, seen


def fired(d: defer.Deferred):
    box: list = []
    d.addBoth(box.append)
    assert box, "Deferred has not fired"
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]


def test_links_are_written_before_the_item_completes(tmp_path, tree):
    """The queue runs the link writer while the item is processing, then completes it;
    deleting the item removes the link folder."""
    _, _, links, queue, seen = service_rig(tmp_path, tree, "symlink")
    queue.start()
    item = fired(queue.add(b"<nzb/>", "Show.S01E01.nzb", "tv"))
    done = fired(queue.get(item.id))
    assert (seen, done.state) == ([State.PROCESSING], State.COMPLETED)
    folder = tmp_path / "links/tv/hd/Show.S01E01"
    assert os.readlink(folder / "e01.mkv") == f"{MOUNT}{RELEASE}/e01.mkv"
    fired(queue.delete(item.id))
    fired(links.idle())
    assert not folder.exists()
    fired(queue.stop())


def test_link_failure_fails_the_item_naming_the_path(tmp_path, tree):
    """An unwritable import_dir fails the item with the LinkError's message."""
    (tmp_path / "links").write_text("in the way")
    _, _, _, queue, _ = service_rig(tmp_path, tree, "symlink")
    queue.start()
    item = fired(queue.add(b"<nzb/>", "Show.S01E01.nzb", "tv"))
    done = fired(queue.get(item.id))
    assert done.state == State.FAILED
    assert "cannot create" in done.error and "links/tv/hd" in done.error
    fired(queue.stop())


def test_linked_tree_delete_removes_links(tmp_path, tree):
    """A DELETE through LinkedTree also removes the links of what it deleted."""
    config = make_config(tmp_path, "symlink")
    links = LinkService(SyncReactor(), config, tree, threadpool=SyncPool())
    links.manager.write_release(RELEASE, files_of(tree))
    LinkedTree(tree, links).delete(RELEASE)
    fired(links.idle())
    assert not (tmp_path / "links/tv/hd/Show.S01E01").exists()


class FakeWebDAV:
    """Records which file the STRM resource asked it to serve."""

    def __init__(self) -> None:
        self.served: list[str] = []

    def serve_file(self, request, file_record, head):
        self.served.append(file_record.path)
        return b"bytes"


def strm_get(resource: StrmResource, path: bytes) -> DummyRequest:
    request = DummyRequest(path.split(b"/"))
    request.method = b"GET"
    assert resource.render(request) is NOT_DONE_YET
    return request


def test_strm_route_serves_by_token_only(tmp_path, tree):
    """A known token serves its file without any other credential; an unknown or revoked
    token, or one whose file is gone, answers 404."""
    config = make_config(tmp_path, "strm")
    links = LinkService(SyncReactor(), config, tree, threadpool=SyncPool())
    webdav = FakeWebDAV()
    resource = StrmResource(links, tree, webdav)
    token = links.tokens.token_for(f"{RELEASE}/e01.mkv")
    request = strm_get(resource, f"{token}/e01.mkv".encode())
    assert request.finished and b"".join(request.written) == b"bytes"
    assert webdav.served == [f"{RELEASE}/e01.mkv"]
    assert strm_get(resource, b"A" * 32 + b"/x.mkv").responseCode == 404
    links.tokens.revoke(token)
    assert strm_get(resource, f"{token}/e01.mkv".encode()).responseCode == 404
    other = links.tokens.token_for("/complete/tv/hd/Gone/x.mkv")
    missing = strm_get(resource, f"{other}/x.mkv".encode())
    assert missing.responseCode == 404 and b"gone" in b"".join(missing.written)


def test_strm_route_refuses_other_methods(tmp_path, tree):
    """PUT on a STRM URL is 405 with Allow: GET, HEAD."""
    config = make_config(tmp_path, "strm")
    links = LinkService(SyncReactor(), config, tree, threadpool=SyncPool())
    request = DummyRequest([b"x"])
    request.method = b"PUT"
    resource = StrmResource(links, tree, SimpleNamespace())
    resource.render(request)
    assert request.responseCode == 405
    assert request.responseHeaders.getRawHeaders(b"allow") == [b"GET, HEAD"]


def test_guessing_strm_tokens_is_rate_limited(tmp_path, tree):
    """A client that tried MAX_DISTINCT_FAILURES wrong tokens gets 429 (with Retry-After)
    even for a right token it never used; a token it used before keeps playing."""
    config = make_config(tmp_path, "strm")
    links = LinkService(SyncReactor(), config, tree, threadpool=SyncPool())
    resource = StrmResource(links, tree, FakeWebDAV())
    site = SimpleNamespace(authenticator=Authenticator(config, clock=lambda: 100.0))
    used = links.tokens.token_for(f"{RELEASE}/e01.mkv")
    fresh = links.tokens.token_for(f"{RELEASE}/Sample/e01.sample.mkv")

    def get(token: str) -> DummyRequest:
        request = DummyRequest([token.encode(), b"x.mkv"])
        request.method, request.site = b"GET", site
        assert resource.render(request) is NOT_DONE_YET
        return request

    assert get(used).responseCode in (None, 200)
    for guess in range(MAX_DISTINCT_FAILURES):
        assert get(f"{guess:032d}").responseCode == 404
    limited = get(fresh)
    assert limited.responseCode == 429 and limited.responseHeaders.hasHeader(b"retry-after")
    assert get(used).responseCode in (None, 200)


def test_strm_tokens_are_masked_in_log_lines():
    """redact_url hides the token of a /strm/ URL, as it hides API keys."""
    line = "GET /strm/AbCdEfGhIjKlMnOpQrStUvWxYz012345/movie.mkv -> 206"
    assert redact_url(line) == "GET /strm/***/movie.mkv -> 206"
