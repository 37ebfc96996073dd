"""The web UI under `/ui/`: static files (plain JS modules and CSS, no build step) and
the session routes under `/ui/api/` (`altmount.web.login`).

Every file is read once when the resource is built and kept in memory with a
strong ETag and a gzip copy; answers say `Cache-Control: no-cache`, so a browser
revalidates (a 304 when unchanged) and never runs stale code after an upgrade.
Static files need no login (they hold no data); the data comes from `/api`.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import PurePosixPath

from twisted.web.resource import Resource
from twisted.web.server import Request

from altmount.web.auth import Authenticator
from altmount.web.login import SessionAPI

__all__ = ["CONTENT_TYPES", "StaticFile", "StaticFiles", "UIResource", "load_static"]

CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".json": b"application/json",
}
#: The UI loads only its own files and talks only to this server.
_CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_SECURITY_HEADERS = {
    b"Content-Security-Policy": _CSP,
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
    b"X-Frame-Options": b"DENY",
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    """One file as served: body, gzip body (None when not smaller), type and ETag."""

    body: bytes
    gzipped: bytes | None
    content_type: bytes
    etag: bytes


def load_static(package: str = __name__, folder: str = "static") -> dict[str, StaticFile]:
    """Every servable file under `package`/`folder`, keyed by its relative path."""
    files: dict[str, StaticFile] = {}
    root = resources.files(package) / folder

    def walk(node, prefix: str) -> None:
        for child in node.iterdir():
            name = f"{prefix}{child.name}"
            if child.is_dir():
                walk(child, name + "/")
                continue
            content_type = CONTENT_TYPES.get(PurePosixPath(name).suffix)
            if content_type is None:
                continue
            body = child.read_bytes()
            packed = gzip.compress(body, 9, mtime=0)
            etag = b'"' + hashlib.sha256(body).hexdigest()[:20].encode() + b'"'
            files[name] = StaticFile(
                body, packed if len(packed) < len(body) else None, content_type, etag
            )

    walk(root, "")
    return files


def _accepts_gzip(request: Request) -> bool:
    accept = request.getHeader(b"accept-encoding") or b""
    return any(
        part.split(b";")[0].strip() == b"gzip" and b"q=0" not in part.replace(b" ", b"")
        for part in accept.lower().split(b",")
    )


class StaticFiles(Resource):
    """Serves `files` (from `load_static`); the empty path is `index.html`."""

    isLeaf = True

    def __init__(self, files: dict[str, StaticFile]) -> None:
        super().__init__()
        self._files = files

    def render(self, request: Request) -> bytes:
        for name, value in _SECURITY_HEADERS.items():
            request.setHeader(name, value)
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"Allow", b"GET, HEAD")
            return b""
        path = "/".join(part.decode("utf-8", "replace") for part in request.postpath or [])
        found = self._files.get(path or "index.html")
        if found is None:
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"no such UI file\n"
        request.setHeader(b"Content-Type", found.content_type)
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"ETag", found.etag)
        request.setHeader(b"Vary", b"Accept-Encoding")
        if found.etag in (request.getHeader(b"if-none-match") or b"").replace(b"W/", b""):
            request.setResponseCode(304)
            return b""
        body = found.body
        if found.gzipped is not None and _accepts_gzip(request):
            request.setHeader(b"Content-Encoding", b"gzip")
            body = found.gzipped
        request.setHeader(b"Content-Length", str(len(body)).encode())
        return b"" if request.method == b"HEAD" else body


class UIResource(Resource):
    """`/ui`: redirects to `/ui/`; `/ui/api/...` session routes; else the static files."""

    def __init__(
        self, auth: Authenticator, files: dict[str, StaticFile] | None = None
    ) -> None:
        super().__init__()
        self._api = SessionAPI(auth)
        self._static = StaticFiles(load_static() if files is None else files)

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"api":
            return self._api
        # A leaf gets the rest of the path: put this segment back in front of it.
        request.postpath = [path, *(request.postpath or [])]
        request.prepath = (request.prepath or [])[:-1]
        return self._static

    def render(self, request: Request) -> bytes:
        request.redirect(b"/ui/")
        return b""
