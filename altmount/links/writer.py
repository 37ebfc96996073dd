"""Links on the local disk: write a release's link folder atomically, remove links.

A release folder is built whole in a hidden sibling (`.altmount-*.tmp`) and then
renamed into place, so Sonarr never sees half of it: after a failure the old
folder (or none) is still there and the temporary one is gone. Every OSError
becomes a LinkError naming the path.
"""

from __future__ import annotations

import os
import posixpath
import secrets
import shutil
from collections.abc import Iterable
from dataclasses import dataclass

from altmount.errors import LinkError

__all__ = [
    "LinkFile",
    "TEMP_PREFIX",
    "read_folder",
    "remove_tree",
    "write_folder",
    "is_inside",
]

#: Names of our temporary and replaced folders; `regenerate` removes leftovers.
TEMP_PREFIX = ".altmount-"
#: Link folders are readable by Sonarr/Radarr/Jellyfin running as another user.
FOLDER_MODE = 0o755


@dataclass(frozen=True, slots=True)
class LinkFile:
    """One link on disk: a symlink to `target`, or (no target) a file holding `text`."""

    path: str
    target: str = ""
    text: str = ""


def is_inside(root: str, path: str) -> bool:
    """True when `path` lies strictly below `root` (both absolute, normalised here)."""
    root = posixpath.normpath(root)
    path = posixpath.normpath(path)
    return path.startswith(root.rstrip("/") + "/")


def _fail(what: str, path: str, exc: OSError) -> LinkError:
    return LinkError(f"cannot {what} {path}: {exc.strerror or exc} (check import.import_dir)")


def _place(base: str, folder: str, link: LinkFile) -> None:
    destination = posixpath.join(base, posixpath.relpath(link.path, folder))
    os.makedirs(posixpath.dirname(destination), mode=FOLDER_MODE, exist_ok=True)
    if link.target:
        os.symlink(link.target, destination)
        return
    with open(destination, "x", encoding="utf-8") as sink:
        sink.write(link.text)


def write_folder(root: str, folder: str, links: Iterable[LinkFile]) -> None:
    """Make `folder` (below `root`) hold exactly `links`, replacing what was there.

    Each link's path must lie in `folder`. Raises LinkError; on failure the
    previous folder is left as it was.
    """
    if not is_inside(root, folder):
        raise LinkError(f"{folder}: not inside import.import_dir {root}")
    links = list(links)
    for link in links:
        if not is_inside(folder, link.path):
            raise LinkError(f"{link.path}: not inside its release folder {folder}")
    parent = posixpath.dirname(folder.rstrip("/"))
    try:
        os.makedirs(parent, mode=FOLDER_MODE, exist_ok=True)
    except OSError as exc:
        raise _fail("create", parent, exc) from exc
    temporary = posixpath.join(parent, f"{TEMP_PREFIX}{secrets.token_hex(6)}.tmp")
    try:
        os.mkdir(temporary, FOLDER_MODE)
        os.chmod(temporary, FOLDER_MODE)  # mkdir's mode is cut by the umask
        for link in links:
            try:
                _place(temporary, folder, link)
            except OSError as exc:
                raise _fail("write", link.path, exc) from exc
        _swap(temporary, folder)
    except OSError as exc:
        raise _fail("write", folder, exc) from exc
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _swap(temporary: str, folder: str) -> None:
    """Rename `temporary` to `folder`; an existing `folder` is moved aside first and
    put back if the rename fails."""
    if not os.path.lexists(folder):
        os.rename(temporary, folder)
        return
    old = posixpath.join(posixpath.dirname(folder), f"{TEMP_PREFIX}{secrets.token_hex(6)}.old")
    os.rename(folder, old)
    try:
        os.rename(temporary, folder)
    except OSError:
        os.rename(old, folder)
        raise
    _remove(old)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def remove_tree(root: str, path: str) -> bool:
    """Remove `path` (a link, file or folder below `root`); False when it was not there."""
    if not is_inside(root, path):
        raise LinkError(f"{path}: not inside import.import_dir {root}; not removed")
    if not os.path.lexists(path):
        return False
    try:
        _remove(path)
    except OSError as exc:
        raise _fail("remove", path, exc) from exc
    return True


def read_folder(folder: str) -> set[LinkFile]:
    """The links a folder holds now: symlinks with their targets, .strm files with their
    text (other files by name only); empty when the folder is missing."""
    found: set[LinkFile] = set()
    if not os.path.isdir(folder) or os.path.islink(folder):
        return found
    try:
        for current, _dirs, names in os.walk(folder):
            for name in names:
                path = posixpath.join(current, name)
                if os.path.islink(path):
                    found.add(LinkFile(path, target=os.readlink(path)))
                elif name.lower().endswith(".strm"):
                    with open(path, encoding="utf-8", errors="replace") as source:
                        found.add(LinkFile(path, text=source.read()))
                else:
                    found.add(LinkFile(path, text="\0other"))
    except OSError as exc:
        raise _fail("read", folder, exc) from exc
    return found
