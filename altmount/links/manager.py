"""The import strategy's links kept in step with the tree: written per release,
removed with their item or file, regenerated (orphans cleaned) on request.

Synchronous (file system and SQLite): `LinkService` runs it on its own thread,
`altmount links` in the foreground. Links live only below `import.import_dir`;
the category folders there are kept even when empty, because Sonarr checks
that `complete_dir` + category `dir` exist.
"""

from __future__ import annotations

import logging
import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from altmount.config import Config
from altmount.errors import LinkError
from altmount.importer.layout import category_folder
from altmount.links.plan import STRM_PREFIX, link_folder, plan_links, strm_url
from altmount.links.tokens import TokenStore
from altmount.links.writer import (
    TEMP_PREFIX,
    LinkFile,
    is_inside,
    read_folder,
    remove_tree,
    write_folder,
)

__all__ = ["LinkManager", "RegenerateReport"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RegenerateReport:
    """What `LinkManager.regenerate` did."""

    written: list[str] = field(default_factory=list)  #: release folders rewritten
    unchanged: int = 0  #: release folders already right
    orphans: list[str] = field(default_factory=list)  #: stale links and leftovers removed
    tokens_dropped: int = 0  #: tokens of files that no longer exist
    errors: list[str] = field(default_factory=list)


class LinkManager:
    """Links of `config`'s strategy for files of `store` (a MetadataStore), with
    STRM tokens in `tokens`."""

    def __init__(self, config: Config, store: Any, tokens: TokenStore) -> None:
        if config.import_.import_strategy == "none":
            raise LinkError("import.import_strategy is NONE: there are no links to manage")
        self._config = config
        self._store = store
        self._tokens = tokens
        self.root = posixpath.normpath(config.import_.import_dir)

    @property
    def strategy(self) -> str:
        """ "symlink" or "strm"."""
        return self._config.import_.import_strategy

    # -- folders ---------------------------------------------------------------------

    def category_folders(self) -> list[str]:
        """import_dir and the local folder of every category."""
        return [self.root] + [
            f"{self.root}/{category_folder(c.dir or c.name)}"
            for c in self._config.sabnzbd.categories
        ]

    def _kept(self) -> set[str]:
        """Folders never removed: import_dir, the category folders and those between."""
        kept = {self.root}
        for folder in self.category_folders():
            while is_inside(self.root, folder):
                kept.add(folder)
                folder = posixpath.dirname(folder)
        return kept

    def ensure_category_folders(self) -> None:
        """Create import_dir and the category folders (Sonarr's check needs them)."""
        for folder in self.category_folders():
            try:
                os.makedirs(folder, mode=0o755, exist_ok=True)
            except OSError as exc:
                raise LinkError(
                    f"cannot create {folder}: {exc.strerror or exc} (check import.import_dir)"
                ) from exc

    # -- one release -------------------------------------------------------------------

    def planned(self, release_dir: str, files: Iterable[str]) -> tuple[str, list[LinkFile]]:
        """The link folder of a release and the links it should hold."""
        folder = link_folder(self._config, release_dir)
        if folder in self._kept():
            raise LinkError(f"{release_dir}: not a release folder under a category")
        links: list[LinkFile] = []
        for link in plan_links(self._config, list(files)):
            if link.target:
                links.append(LinkFile(link.path, target=link.target))
            else:
                token = self._tokens.token_for(link.source)
                links.append(
                    LinkFile(link.path, text=strm_url(self._config, token, link.source) + "\n")
                )
        return folder, links

    def write_release(self, release_dir: str, files: Iterable[str]) -> str:
        """Write the release's link folder (replacing the old one); its local path."""
        folder, links = self.planned(release_dir, files)
        write_folder(self.root, folder, links)
        return folder

    def remove_release(self, release_dir: str) -> bool:
        """Remove a release's link folder (its item was deleted). Tokens stay: a .strm
        file Sonarr moved into the library goes on playing while the file exists."""
        folder = link_folder(self._config, release_dir)
        if folder in self._kept():
            return False
        removed = remove_tree(self.root, folder)
        self._prune_empty(posixpath.dirname(folder))
        return removed

    # -- tree changes (WebDAV DELETE / MOVE) ----------------------------------------------

    def path_deleted(self, path: str) -> int:
        """A file or folder left the tree: remove its links and tokens; links removed."""
        local = link_folder(self._config, path)
        tokens = {t.token for t in self._tokens.revoke(path)}
        removed = 0
        if local not in self._kept() and os.path.isdir(local) and not os.path.islink(local):
            removed += remove_tree(self.root, local)
        elif local in self._kept():
            removed += self._clear(local)
        else:
            removed += self._remove_file_links(local, tokens)
        self._prune_empty(posixpath.dirname(local))
        return removed

    def path_moved(self, source: str, destination: str) -> int:
        """A file or folder was renamed in the tree: its tokens follow it."""
        return self._tokens.move(source, destination)

    def _remove_file_links(self, local: str, tokens: set[str]) -> int:
        removed = 0
        if os.path.islink(local):
            removed += remove_tree(self.root, local)
        folder, name = posixpath.split(local)
        stem = posixpath.splitext(name)[0] or name
        for candidate in {f"{folder}/{stem}.strm", f"{folder}/{name}.strm"}:
            if _strm_token(candidate) in tokens:
                removed += remove_tree(self.root, candidate)
        return removed

    def _clear(self, folder: str) -> int:
        """Remove every link below a kept folder, keeping the kept folders."""
        kept = self._kept()
        removed = 0
        for name in _names(folder):
            path = posixpath.join(folder, name)
            if path in kept:
                removed += self._clear(path)
            elif (os.path.isdir(path) and not os.path.islink(path)) or self._ours(path):
                removed += remove_tree(self.root, path)  # a release's link folder, or a link
        return removed

    def _prune_empty(self, folder: str) -> None:
        """Remove empty folders from `folder` up to the nearest kept one."""
        kept = self._kept()
        while is_inside(self.root, folder) and folder not in kept:
            try:
                os.rmdir(folder)
            except OSError:
                return  # not empty (or already gone): nothing above can be empty
            folder = posixpath.dirname(folder)

    # -- regenerate ---------------------------------------------------------------------

    def regenerate(self, release_dirs: Iterable[str]) -> RegenerateReport:
        """Rewrite the link folder of each release (the completed items' target paths)
        from the tree, remove stale links and leftovers, drop tokens of vanished files."""
        report = RegenerateReport()
        self.ensure_category_folders()
        wanted: set[str] = set()
        for release_dir in release_dirs:
            files = [record.path for record in self._store.walk_files(release_dir)]
            try:
                folder, links = self.planned(release_dir, files)
                wanted.add(folder)
                if read_folder(folder) == set(links) and os.path.isdir(folder):
                    report.unchanged += 1
                    continue
                write_folder(self.root, folder, links)
            except LinkError as exc:
                report.errors.append(f"{release_dir}: {exc}")
                continue
            report.written.append(folder)
        self._clean(self.root, wanted, report)
        report.tokens_dropped = len(
            self._tokens.prune(lambda path: self._store.get_file(path) is not None)
        )
        return report

    def _clean(self, folder: str, wanted: set[str], report: RegenerateReport) -> None:
        """Remove our links and leftovers below `folder` outside the wanted release folders."""
        kept = self._kept()
        for name in _names(folder):
            path = posixpath.join(folder, name)
            if path in wanted:
                continue
            try:
                folder_here = os.path.isdir(path) and not os.path.islink(path)
                if name.startswith(TEMP_PREFIX) or (not folder_here and self._ours(path)):
                    remove_tree(self.root, path)
                    report.orphans.append(path)
                elif folder_here:
                    self._clean(path, wanted, report)
                    if path not in kept and not _names(path):
                        os.rmdir(path)
            except (LinkError, OSError) as exc:
                report.errors.append(f"{path}: {exc}")

    def _ours(self, path: str) -> bool:
        """A link altmount writes: a symlink into sabnzbd.mount_dir, or a .strm file
        holding one of our URLs (anything else below import_dir is left alone)."""
        if os.path.islink(path):
            mount = self._config.sabnzbd.mount_dir.rstrip("/")
            try:
                return bool(mount) and os.readlink(path).startswith(mount + "/")
            except OSError:
                return False
        return path.lower().endswith(".strm") and _strm_token(path) is not None


def _names(folder: str) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []


def _strm_token(path: str) -> str | None:
    """The token in a .strm file's URL, or None (missing, unreadable, not ours)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as source:
            line = source.readline(4096).strip()
    except OSError:
        return None
    marker = f"/{STRM_PREFIX}/"
    if marker not in line:
        return None
    return line.rsplit(marker, 1)[1].split("/", 1)[0]
