"""A Sonarr or Radarr v3 API for the repair tests, served by Twisted on 127.0.0.1.

Sonarr and Radarr cannot run here (.NET). This implements exactly the endpoints the
repair loop uses, with the request and response shapes of their published OpenAPI
documents: Sonarr's src/Sonarr.Api.V3/openapi.json (Sonarr/Sonarr 49df353) and Radarr's
src/Radarr.Api.V3/openapi.json (Radarr/Radarr 1b9662d): SeriesResource / MovieResource
(`id`, `title`, `path`), EpisodeFileResource / MovieFileResource (`id`, `seriesId` /
`movieId`, `path`, `relativePath`), EpisodeResource (`id`, `seriesId`, `episodeFileId`,
`hasFile`), HistoryResource (`id`, `episodeId` / `movieId`, `eventType` as the enum
name, `date`, `sourceTitle`, `downloadId`), CommandResource (`id`, `name`,
`commandName`, `status`, `body`). Auth is the documents' `X-Api-Key` header (or the
`apikey` query parameter); without it the answer is 401, as theirs. Every call is
recorded, and `fail_next` makes the next calls answer the given statuses.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request

MOUNT = "/mnt/altmount"


@dataclass
class Library:
    """What one instance knows: owners (series or movies), files, episodes, history."""

    owners: list[dict[str, Any]] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
    episodes: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)


def sonarr_library() -> Library:
    """One series with one imported episode, moved into the library on the mount."""
    folder = f"{MOUNT}/library/tv/Shōgun (2024)"
    return Library(
        owners=[
            {"id": 3, "title": "Other", "path": f"{MOUNT}/library/tv/Other"},
            {"id": 7, "title": "Shōgun", "path": folder, "status": "ended"},
        ],
        files=[
            {
                "id": 41,
                "seriesId": 7,
                "relativePath": "Season 1/Shōgun - S01E01.mkv",
                "path": f"{folder}/Season 1/Shōgun - S01E01.mkv",
            },
            {
                "id": 42,
                "seriesId": 7,
                "relativePath": "Season 1/Shōgun - S01E02.mkv",
                "path": f"{folder}/Season 1/Shōgun - S01E02.mkv",
            },
        ],
        episodes=[
            {"id": 701, "seriesId": 7, "episodeFileId": 41, "title": "Anjin", "hasFile": True},
            {"id": 702, "seriesId": 7, "episodeFileId": 42, "title": "Servants", "hasFile": True},
        ],
        history=[
            {
                "id": 900,
                "episodeId": 701,
                "seriesId": 7,
                "eventType": "grabbed",
                "date": "2024-03-01T10:00:00Z",
                "sourceTitle": "Shogun.S01E01.old",
                "downloadId": "SABnzbd_nzo_a",
            },
            {
                "id": 905,
                "episodeId": 701,
                "seriesId": 7,
                "eventType": "grabbed",
                "date": "2024-03-02T10:00:00Z",
                "sourceTitle": "Shogun.S01E01.1080p",
                "downloadId": "SABnzbd_nzo_b",
            },
            {
                "id": 906,
                "episodeId": 701,
                "seriesId": 7,
                "eventType": "downloadFolderImported",
                "date": "2024-03-02T10:05:00Z",
                "sourceTitle": "Shogun.S01E01.1080p",
                "downloadId": "SABnzbd_nzo_b",
            },
            {
                "id": 910,
                "episodeId": 702,
                "seriesId": 7,
                "eventType": "grabbed",
                "date": "2024-03-09T10:00:00Z",
                "sourceTitle": "Shogun.S01E02",
                "downloadId": "SABnzbd_nzo_c",
            },
        ],
    )


def radarr_library() -> Library:
    """One movie still in its release folder under the movies category."""
    folder = f"{MOUNT}/complete/movies/Dune.Part.Two.2024.1080p"
    return Library(
        owners=[
            {
                "id": 12,
                "title": "Dune: Part Two",
                "path": folder,
                "hasFile": True,
                "movieFileId": 55,
            }
        ],
        files=[
            {
                "id": 55,
                "movieId": 12,
                "relativePath": "Dune.Part.Two.2024.1080p.mkv",
                "path": f"{folder}/Dune.Part.Two.2024.1080p.mkv",
            }
        ],
        history=[
            {
                "id": 300,
                "movieId": 12,
                "eventType": "grabbed",
                "date": "2024-04-01T08:00:00Z",
                "sourceTitle": "Dune.Part.Two.2024.1080p",
                "downloadId": "SABnzbd_nzo_d",
            }
        ],
    )


@dataclass(frozen=True)
class Call:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    api_key: str


class FakeArr(Resource):
    """`kind` sonarr or radarr, answering for `library` to holders of `api_key`."""

    isLeaf = True

    def __init__(self, kind: str, api_key: str, library: Library) -> None:
        super().__init__()
        self.kind = kind
        self.api_key = api_key
        self.library = library
        self.calls: list[Call] = []
        self.fail_next: list[int] = []
        self._next_command = 1000

    def render(self, request: Request) -> bytes:
        path = request.path.decode()
        query = {k.decode(): v[0].decode() for k, v in (request.args or {}).items()}
        raw = request.content.read() if request.content is not None else b""
        body = json.loads(raw) if raw else None
        key = (request.getHeader(b"x-api-key") or b"").decode() or query.pop("apikey", "")
        self.calls.append(Call(request.method.decode(), path, query, body, key))
        request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        if key != self.api_key:
            request.setResponseCode(401)
            return b""
        if self.fail_next:
            request.setResponseCode(self.fail_next.pop(0))
            return b'{"message": "injected failure"}'
        try:
            status, answer = self._route(request.method.decode(), path, query, body)
        except (KeyError, ValueError) as exc:
            status, answer = 400, {"message": f"bad request: {exc}"}
        request.setResponseCode(status)
        return b"" if answer is None else json.dumps(answer).encode()

    def _route(self, method: str, path: str, query: dict[str, str], body: Any):
        lib = self.library
        owner, file_key = ("series", "seriesId") if self.kind == "sonarr" else ("movie", "movieId")
        files = "episodefile" if self.kind == "sonarr" else "moviefile"
        if (method, path) == ("GET", f"/api/v3/{owner}"):
            return 200, lib.owners
        if (method, path) == ("GET", f"/api/v3/{files}"):
            wanted = int(query[file_key])
            return 200, [f for f in lib.files if f[file_key] == wanted]
        if (method, path) == ("GET", "/api/v3/episode") and self.kind == "sonarr":
            wanted = int(query["episodeFileId"])
            return 200, [e for e in lib.episodes if e["episodeFileId"] == wanted]
        if (method, path) == ("GET", f"/api/v3/history/{owner}"):
            wanted = int(query[file_key])
            events = [h for h in lib.history if h[file_key] == wanted]
            if "eventType" in query:
                events = [h for h in events if h["eventType"] == query["eventType"]]
            return 200, events
        found = re.fullmatch(r"/api/v3/history/failed/(\d+)", path)
        if method == "POST" and found:
            grab = next((h for h in lib.history if h["id"] == int(found.group(1))), None)
            if grab is None:
                return 404, {"message": "NotFound"}
            lib.history.append({**grab, "id": grab["id"] + 10_000, "eventType": "downloadFailed"})
            return 200, None
        found = re.fullmatch(rf"/api/v3/{files}/(\d+)", path)
        if method == "DELETE" and found:
            before = len(lib.files)
            lib.files = [f for f in lib.files if f["id"] != int(found.group(1))]
            return (200, None) if len(lib.files) < before else (404, {"message": "NotFound"})
        if (method, path) == ("POST", "/api/v3/command"):
            expected = {
                "sonarr": ("EpisodeSearch", "episodeIds"),
                "radarr": ("MoviesSearch", "movieIds"),
            }[self.kind]
            if body.get("name") != expected[0] or not isinstance(body.get(expected[1]), list):
                raise ValueError(f"unknown command {body!r}")
            self._next_command += 1
            return 201, {
                "id": self._next_command,
                "name": body["name"],
                "commandName": body["name"],
                "body": body,
                "status": "queued",
                "trigger": "manual",
            }
        return 404, {"message": "NotFound"}
