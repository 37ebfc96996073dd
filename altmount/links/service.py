"""The links' asynchronous face for the server: one thread does all their disk and
SQLite work, so the reactor never waits on the import folder or the token table.

`write_import` runs before the queue records an import as completed, so Sonarr
never sees a completed job whose `storage` folder is not there yet. Deletions
(the queue item, a WebDAV DELETE) and WebDAV MOVEs reach it through
`item_deleted` and `LinkedTree`.
"""

from __future__ import annotations

import logging
from typing import Any

from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from altmount.config import Config
from altmount.links.manager import LinkManager
from altmount.links.tokens import TokenStore

__all__ = ["LinkService", "LinkedTree", "link_service"]

log = logging.getLogger(__name__)


def link_service(reactor: Any, config: Config, store: Any) -> LinkService | None:
    """The LinkService of `config`'s import strategy; None for NONE."""
    if config.import_.import_strategy == "none":
        return None
    return LinkService(reactor, config, store)


class LinkService:
    """Links of the configured strategy for `store` (a MetadataStore); tokens in the
    SQLite file `config.database.path`. `threadpool` must have exactly one thread."""

    def __init__(
        self,
        reactor: Any,
        config: Config,
        store: Any,
        *,
        threadpool: ThreadPool | None = None,
    ) -> None:
        self._reactor = reactor
        self._config = config
        self.tokens = TokenStore(config.database.path)
        self.manager = LinkManager(config, store, self.tokens)
        # One thread: the token connection is used by it only, and changes keep their order.
        self._pool = threadpool or ThreadPool(minthreads=1, maxthreads=1, name="altmount-links")
        self._pool.start()
        self._pending: set[defer.Deferred] = set()

    def _run(self, function, *args) -> defer.Deferred:
        running = deferToThreadPool(self._reactor, self._pool, function, *args)
        self._pending.add(running)

        def done(result: object) -> object:
            self._pending.discard(running)
            return result

        return running.addBoth(done)

    def idle(self) -> defer.Deferred:
        """Fires once every change asked for so far is done (tests, shutdown)."""
        return defer.DeferredList(list(self._pending), consumeErrors=True).addCallback(
            lambda _: None
        )

    def ensure_category_folders(self) -> defer.Deferred:
        """Create import_dir and its category folders; fails with LinkError."""
        return self._run(self.manager.ensure_category_folders)

    def write_import(self, item: Any, result: Any) -> defer.Deferred:
        """Write the links of a finished import (a queue item and its ImportResult);
        fails with LinkError naming the path, and the item then fails with it."""
        files = [record.path for record in result.files]

        def written(folder: str) -> None:
            log.info(
                "%s links of %s written to %s",
                self.manager.strategy.upper(),
                item.nzb_name,
                folder,
                extra={"nzo_id": item.nzo_id},
            )

        return self._run(self.manager.write_release, result.release_dir, files).addCallback(written)

    def item_deleted(self, item: Any) -> defer.Deferred:
        """A queue item was deleted: remove its link folder (errors are logged)."""
        if not item.target_path:
            return defer.succeed(None)
        removing = self._run(self.manager.remove_release, item.target_path)
        return removing.addErrback(self._logged, f"links of {item.nzb_name} not removed")

    def path_deleted(self, path: str) -> defer.Deferred:
        """A file or folder was deleted from the tree: its links and tokens go too."""
        removing = self._run(self.manager.path_deleted, path)
        return removing.addErrback(self._logged, f"links of {path} not removed")

    def path_moved(self, source: str, destination: str) -> defer.Deferred:
        """A file or folder was renamed in the tree: its STRM tokens follow it."""
        moving = self._run(self.manager.path_moved, source, destination)
        return moving.addErrback(self._logged, f"STRM tokens of {source} not moved")

    def resolve(self, token: str) -> defer.Deferred:
        """Fires with the virtual path `token` opens, or None."""
        return self._run(self.tokens.lookup, token)

    @defer.inlineCallbacks
    def stop(self):
        """Finish pending changes, close the token store and the thread."""
        yield self.idle()
        try:
            yield deferToThreadPool(self._reactor, self._pool, self.tokens.close)
        finally:
            self._pool.stop()

    @staticmethod
    def _logged(failure: Failure, what: str) -> None:
        log.error("%s: %s", what, failure.getErrorMessage())


class LinkedTree:
    """The metadata store as the WebDAV resource sees it: a DELETE also removes the
    links and tokens of what it deleted, a MOVE takes the tokens along. Every
    other attribute is the store's own."""

    def __init__(self, store: Any, links: LinkService) -> None:
        self._store = store
        self._links = links

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def delete(self, path: str) -> int:
        """Delete from the tree, then (on the links' thread) the links below it."""
        count = self._store.delete(path)
        self._links.path_deleted(path)
        return count

    def move(self, source: str, destination: str, **options: Any) -> None:
        """Rename in the tree, then move the STRM tokens along."""
        self._store.move(source, destination, **options)
        self._links.path_moved(source, destination)
