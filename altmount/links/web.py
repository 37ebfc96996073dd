"""`/strm/<token>/<name>`: a file served to whoever holds its STRM token.

The token is the whole credential (players cannot send Basic auth from a .strm
file): no WebDAV password, no API key, no session. The site's Authenticator
(`check_token`) counts wrong tokens with every other failed credential, so a
client guessing tokens gets 429 as one guessing passwords does. An unknown or
revoked token, or a token whose file left the tree, answers 404. The bytes come from the same
streaming code as WebDAV GET, with ranges, ETag and If-Range. `<name>` is there
for the players to show; it is not checked (a renamed file keeps its token).
"""

from __future__ import annotations

import logging
from typing import Any

from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from altmount.errors import AltmountError
from altmount.links.service import LinkService
from altmount.web.auth import Outcome, authenticator_of, refusal_headers

__all__ = ["StrmResource"]

log = logging.getLogger(__name__)

_TEXT = b"text/plain; charset=utf-8"
_METHODS = (b"GET", b"HEAD")


def _plain(request: Request, status: int, message: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", _TEXT)
    request.setHeader(b"Cache-Control", b"no-store")
    body = (message + "\n").encode("utf-8")
    request.setHeader(b"Content-Length", b"%d" % len(body))
    return b"" if request.method == b"HEAD" else body


class StrmResource(Resource):
    """Serves `store`'s files by token; `webdav` (a WebDAVResource) streams them."""

    isLeaf = True

    def __init__(self, links: LinkService, store: Any, webdav: Any) -> None:
        super().__init__()
        self._links = links
        self._store = store
        self._webdav = webdav

    def render(self, request: Request) -> bytes | int:
        if request.method not in _METHODS:
            request.setHeader(b"Allow", b", ".join(_METHODS))
            return _plain(request, 405, "STRM URLs answer GET and HEAD only")
        parts = [part for part in request.postpath if part]
        if not parts:
            return _plain(request, 404, "no STRM token in the URL: /strm/<token>/<name>")
        token = parts[0].decode("ascii", "replace")
        gone = [False]
        request.notifyFinish().addBoth(lambda _: gone.__setitem__(0, True))
        resolving = self._links.resolve(token)
        resolving.addCallback(self._serve, request, gone)
        resolving.addErrback(self._failed, request, gone)
        return NOT_DONE_YET

    def _serve(self, path: str | None, request: Request, gone: list[bool]) -> None:
        if gone[0]:
            return  # the player hung up while the token was looked up
        auth = authenticator_of(request)
        if auth is not None:
            given = request.postpath[0]
            # A miss compares against a value no token has, so it counts as a failure.
            expected = given if path is not None else b"\0" * len(given)
            verdict = auth.check_token(request, given, expected)
            if verdict.outcome is Outcome.LIMITED:
                refusal_headers(request, verdict)
                self._answer(request, _plain(request, verdict.status, verdict.message))
                return
        if path is None:
            self._answer(request, _plain(request, 404, "unknown or revoked STRM token"))
            return
        record = self._store.get_file(path)
        if record is None:
            self._answer(request, _plain(request, 404, "the file of this STRM token is gone"))
            return
        try:
            answer = self._webdav.serve_file(request, record, request.method == b"HEAD")
        except AltmountError as exc:
            answer = _plain(request, exc.http_status, str(exc))
        if answer is not NOT_DONE_YET:
            self._answer(request, answer)

    def _failed(self, failure: Failure, request: Request, gone: list[bool]) -> None:
        log.error(
            "STRM request failed: %s",
            failure.getErrorMessage(),
            extra={"request_id": getattr(request, "request_id", "")},
        )
        if gone[0]:
            return
        if request.startedWriting:
            request.loseConnection()  # a short body, never wrong bytes
            return
        self._answer(request, _plain(request, 503, "STRM tokens are not readable now"))

    @staticmethod
    def _answer(request: Request, body: bytes) -> None:
        request.write(body)
        request.finish()
