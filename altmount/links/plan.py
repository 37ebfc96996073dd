"""Where the links of an import strategy go and what they hold. No I/O.

A release at `/<complete_dir>/<category dir>/<release>/<file>` in the virtual
tree gets, under `import.import_dir`:

- SYMLINK: `<category dir>/<release>/<file>`, a symlink to the same file under
  `sabnzbd.mount_dir` (the client's mount of the WebDAV root);
- STRM: `<category dir>/<release>/<stem>.strm`, one line holding
  `<strm_base_url>/strm/<token>/<file name>`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from altmount.config import Config

__all__ = [
    "STRM_PREFIX",
    "Link",
    "relative_to_complete",
    "link_folder",
    "plan_links",
    "strm_url",
    "strm_base_url",
]

#: The top-level HTTP path of the tokenised file URLs written into .strm files.
STRM_PREFIX = "strm"


@dataclass(frozen=True, slots=True)
class Link:
    """One link to write: `path` on the local disk for the virtual file `source`.

    `target` is the symlink's target (SYMLINK) or "" (STRM: the content is the
    URL, which needs the file's token).
    """

    path: str
    source: str
    target: str


def relative_to_complete(config: Config, virtual_path: str) -> str | None:
    """`virtual_path` relative to the virtual complete_dir, or None when outside it."""
    root = "/" + config.sabnzbd.complete_dir.strip("/")
    root = root.rstrip("/")
    if not virtual_path.startswith(root + "/"):
        return None
    rest = virtual_path[len(root) + 1 :].strip("/")
    return rest or None


def link_folder(config: Config, virtual_folder: str) -> str:
    """The local folder that mirrors a virtual folder under `import.import_dir`."""
    base = config.import_.import_dir.rstrip("/")
    rest = relative_to_complete(config, virtual_folder)
    return f"{base}/{rest}" if rest else base


def _mounted(config: Config, virtual_path: str) -> str:
    return config.sabnzbd.mount_dir.rstrip("/") + virtual_path


def plan_links(config: Config, files: Sequence[str]) -> list[Link]:
    """The links of the configured strategy for these virtual file paths.

    Files outside complete_dir get none. Two STRM files of one folder that share
    a stem (`a.mkv`, `a.mp4`) keep their full names (`a.mp4.strm`) after the first.
    """
    strategy = config.import_.import_strategy
    if strategy == "none":
        return []
    links: list[Link] = []
    taken: set[str] = set()
    for source in sorted(files):
        rest = relative_to_complete(config, source)
        if rest is None:
            continue
        local = link_folder(config, source)
        if strategy == "symlink":
            links.append(Link(local, source, _mounted(config, source)))
            continue
        folder, name = posixpath.split(local)
        stem = posixpath.splitext(name)[0] or name
        path = f"{folder}/{stem}.strm"
        if path.lower() in taken:
            path = f"{folder}/{name}.strm"
        taken.add(path.lower())
        links.append(Link(path, source, ""))
    return links


def strm_base_url(config: Config) -> str:
    """`import.strm_base_url`, else the local HTTP server."""
    if config.import_.strm_base_url:
        return config.import_.strm_base_url.rstrip("/")
    return f"http://127.0.0.1:{config.webdav.port}"


def strm_url(config: Config, token: str, source: str) -> str:
    """The URL a .strm file holds: the token, then the file name (players show it)."""
    name = quote(posixpath.basename(source), safe="")
    return f"{strm_base_url(config)}/{STRM_PREFIX}/{token}/{name}"
