"""What `altmount links ...` does, in the foreground (a server may run meanwhile: the
stores are shared safely between processes).

`regenerate` rewrites the link folder of every completed queue item from the tree
and cleans orphans; `revoke` drops STRM tokens; `tokens` lists them.
"""

from __future__ import annotations

from altmount.config import Config
from altmount.links.manager import LinkManager, RegenerateReport
from altmount.links.tokens import Token, TokenStore
from altmount.metadata import MetadataStore
from altmount.queue import QueueStore, State

__all__ = ["regenerate", "revoke", "tokens"]

#: Completed items read per query while regenerating.
PAGE = 500


def _completed_release_dirs(config: Config) -> list[str]:
    store = QueueStore(config.database.path)
    try:
        found: list[str] = []
        offset = 0
        while True:
            page = store.list([State.COMPLETED], None, None, offset, PAGE, "id", False)
            found += [item.target_path for item in page if item.target_path]
            if len(page) < PAGE:
                return found
            offset += PAGE
    finally:
        store.close()


def regenerate(config: Config) -> RegenerateReport:
    """Rewrite every completed item's links; remove stale links; drop dead tokens."""
    releases = _completed_release_dirs(config)
    tree = MetadataStore(
        config.metadata.root_path, map_size=config.metadata.map_size_mb * 1024 * 1024
    )
    token_store = TokenStore(config.database.path)
    try:
        return LinkManager(config, tree, token_store).regenerate(releases)
    finally:
        token_store.close()
        tree.close()


def revoke(config: Config, what: str) -> list[Token]:
    """Drop one token, or the tokens of a virtual path and everything below it."""
    token_store = TokenStore(config.database.path)
    try:
        return token_store.revoke(what)
    finally:
        token_store.close()


def tokens(config: Config) -> list[Token]:
    """Every STRM token, by path."""
    token_store = TokenStore(config.database.path)
    try:
        return token_store.all()
    finally:
        token_store.close()
