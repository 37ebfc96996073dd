"""What a repair asks of Sonarr or Radarr, as sans-IO plans (no I/O, no Twisted).

A plan is a generator: it yields `ArrRequest`s, is sent back one `ArrResponse` per
request, and returns a `RepairOutcome` (or raises `ArrFileNotFound` /
`ArrRequestError`). The driver (`altmount.arrs.client.run_plan`) does the HTTP.
Endpoints and shapes follow the published v3 OpenAPI documents,
`src/Sonarr.Api.V3/openapi.json` and `src/Radarr.Api.V3/openapi.json`:

Sonarr: GET /api/v3/series → the series whose `path` holds the file; GET
/api/v3/episodefile?seriesId= → the file by `path`; GET /api/v3/episode?episodeFileId=
→ its episodes; GET /api/v3/history/series?seriesId=&eventType=grabbed → the grab of
those episodes, marked failed with POST /api/v3/history/failed/{id} (blocklists the
release); DELETE /api/v3/episodefile/{id}; POST /api/v3/command
`{"name": "EpisodeSearch", "episodeIds": [...]}`.

Radarr: the same with /movie, /moviefile?movieId=, /history/movie?movieId=, DELETE
/moviefile/{id} and `{"name": "MoviesSearch", "movieIds": [id]}`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from altmount.errors import ArrFileNotFound, ArrRequestError

__all__ = [
    "ArrRequest",
    "ArrResponse",
    "RepairOutcome",
    "Plan",
    "sonarr_plan",
    "radarr_plan",
    "arr_path",
]


@dataclass(frozen=True, slots=True)
class ArrRequest:
    """One v3 API call: method, path, query pairs, JSON body (None: no body)."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    body: Any = None

    def describe(self) -> str:
        """`GET /api/v3/x?a=1`, for error messages and logs."""
        query = "&".join(f"{k}={v}" for k, v in self.query)
        return f"{self.method} {self.path}" + (f"?{query}" if query else "")


@dataclass(frozen=True, slots=True)
class ArrResponse:
    """A 2xx answer's status and decoded JSON (None for an empty body)."""

    status: int
    data: Any


@dataclass(frozen=True, slots=True)
class RepairOutcome:
    """What the arr was asked: the file deleted, the grab blocklisted, the search started."""

    kind: str  #: sonarr or radarr
    owner_id: int  #: series or movie id
    file_id: int  #: episode file or movie file id
    item_ids: tuple[int, ...]  #: the episodes (Sonarr) or the movie (Radarr) searched
    blocklisted: int | None  #: the history record marked failed; None when none was found
    command_id: int | None  #: the search command's id, as the arr answered it

    def summary(self) -> str:
        """One line for the health record and the log."""
        what = "episodes" if self.kind == "sonarr" else "movie"
        grab = (
            f"grab {self.blocklisted} blocklisted"
            if self.blocklisted is not None
            else "no grab in its history to blocklist"
        )
        ids = ", ".join(str(i) for i in self.item_ids)
        return f"file {self.file_id} deleted, {grab}, search for {what} {ids} started"


Plan = Generator[ArrRequest, ArrResponse, RepairOutcome]


def arr_path(mount_path: str, path: str) -> str:
    """The path an arr sees for altmount's `path` when the WebDAV root is at `mount_path`."""
    return posixpath.join(mount_path.rstrip("/") or "/", path.lstrip("/"))


def _records(response: ArrResponse, call: ArrRequest, *keys: str) -> list[dict[str, Any]]:
    """The answer as a list of objects having `keys`; ArrRequestError when it is not."""
    data = response.data
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise ArrRequestError(f"{call.describe()}: expected a JSON array of objects")
    for item in data:
        for key in keys:
            if key not in item:
                raise ArrRequestError(f"{call.describe()}: an element has no {key!r}")
    return data


def _int(value: Any, call: ArrRequest, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArrRequestError(f"{call.describe()}: {key} is not an integer: {value!r}")
    return value


def _same(a: Any, b: str) -> bool:
    return isinstance(a, str) and a.rstrip("/") == b.rstrip("/")


def _owner(records: list[dict[str, Any]], path: str) -> dict[str, Any] | None:
    """The record whose folder `path` is in (the deepest, should folders nest)."""
    found = None
    for record in records:
        folder = record.get("path")
        if isinstance(folder, str) and folder and path.startswith(folder.rstrip("/") + "/"):
            if found is None or len(folder) > len(found["path"]):
                found = record
    return found


def _latest_grab(history: list[dict[str, Any]], wanted: set[int], key: str) -> Any:
    grabs = [h for h in history if h.get("eventType") == "grabbed" and h.get(key) in wanted]
    return max(grabs, key=lambda h: str(h.get("date", "")), default=None)


def _command_id(response: ArrResponse) -> int | None:
    data = response.data
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def sonarr_plan(name: str, path: str) -> Plan:
    """Repair the episode file at the arr-side `path` through Sonarr instance `name`."""
    call = ArrRequest("GET", "/api/v3/series")
    series = _records((yield call), call, "id", "path")
    owner = _owner(series, path)
    if owner is None:
        raise ArrFileNotFound(f"sonarr {name}: no series folder holds {path}")
    series_id = _int(owner["id"], call, "id")
    call = ArrRequest("GET", "/api/v3/episodefile", (("seriesId", str(series_id)),))
    files = _records((yield call), call, "id", "path")
    match = next((f for f in files if _same(f["path"], path)), None)
    if match is None:
        raise ArrFileNotFound(
            f"sonarr {name}: series {series_id} ({owner['path']}) has no episode file {path}"
        )
    file_id = _int(match["id"], call, "id")
    call = ArrRequest("GET", "/api/v3/episode", (("episodeFileId", str(file_id)),))
    episodes = _records((yield call), call, "id")
    episode_ids = tuple(sorted(_int(e["id"], call, "id") for e in episodes))
    call = ArrRequest(
        "GET", "/api/v3/history/series", (("seriesId", str(series_id)), ("eventType", "grabbed"))
    )
    history = _records((yield call), call, "id")
    grab = _latest_grab(history, set(episode_ids), "episodeId")
    blocklisted = None
    if grab is not None:
        blocklisted = _int(grab["id"], call, "id")
        yield ArrRequest("POST", f"/api/v3/history/failed/{blocklisted}")
    yield ArrRequest("DELETE", f"/api/v3/episodefile/{file_id}")
    command = yield ArrRequest(
        "POST", "/api/v3/command", body={"name": "EpisodeSearch", "episodeIds": list(episode_ids)}
    )
    return RepairOutcome(
        "sonarr", series_id, file_id, episode_ids, blocklisted, _command_id(command)
    )


def radarr_plan(name: str, path: str) -> Plan:
    """Repair the movie file at the arr-side `path` through Radarr instance `name`."""
    call = ArrRequest("GET", "/api/v3/movie")
    movies = _records((yield call), call, "id", "path")
    owner = _owner(movies, path)
    if owner is None:
        raise ArrFileNotFound(f"radarr {name}: no movie folder holds {path}")
    movie_id = _int(owner["id"], call, "id")
    call = ArrRequest("GET", "/api/v3/moviefile", (("movieId", str(movie_id)),))
    files = _records((yield call), call, "id", "path")
    match = next((f for f in files if _same(f["path"], path)), None)
    if match is None:
        raise ArrFileNotFound(
            f"radarr {name}: movie {movie_id} ({owner['path']}) has no movie file {path}"
        )
    file_id = _int(match["id"], call, "id")
    call = ArrRequest(
        "GET", "/api/v3/history/movie", (("movieId", str(movie_id)), ("eventType", "grabbed"))
    )
    history = _records((yield call), call, "id")
    grab = _latest_grab(history, {movie_id}, "movieId")
    blocklisted = None
    if grab is not None:
        blocklisted = _int(grab["id"], call, "id")
        yield ArrRequest("POST", f"/api/v3/history/failed/{blocklisted}")
    yield ArrRequest("DELETE", f"/api/v3/moviefile/{file_id}")
    command = yield ArrRequest(
        "POST", "/api/v3/command", body={"name": "MoviesSearch", "movieIds": [movie_id]}
    )
    return RepairOutcome(
        "radarr", movie_id, file_id, (movie_id,), blocklisted, _command_id(command)
    )
