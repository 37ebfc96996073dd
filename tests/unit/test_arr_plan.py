"""The sans-IO repair plans (altmount.arrs.plan), fed answers shaped as Sonarr's and
Radarr's v3 OpenAPI documents say (src/Sonarr.Api.V3/openapi.json,
src/Radarr.Api.V3/openapi.json), and the arrs config section."""

from __future__ import annotations

import pytest

from altmount.arrs.plan import ArrRequest, ArrResponse, arr_path, radarr_plan, sonarr_plan
from altmount.config import parse_config
from altmount.errors import ArrFileNotFound, ArrRequestError, ConfigError

SHOW = "/mnt/a/library/tv/Show"
EPISODE = f"{SHOW}/Season 1/Show - S01E01.mkv"


def drive(plan, answers):
    """Run `plan` feeding `answers` in order; (requests seen, outcome)."""
    seen = [next(plan)]
    try:
        for answer in answers:
            seen.append(plan.send(ArrResponse(200, answer)))
    except StopIteration as done:
        return seen, done.value
    raise AssertionError(f"plan wants more after {seen}")


def test_sonarr_plan_requests_and_outcome():
    """Series by folder (the deepest), file by path, its episodes, the latest grab of
    them blocklisted, the file deleted, EpisodeSearch for the episodes."""
    series = [{"id": 1, "path": "/mnt/a/library/tv"}, {"id": 2, "path": SHOW + "/"}]
    history = [
        {"id": 10, "episodeId": 20, "eventType": "grabbed", "date": "2024-01-01T00:00:00Z"},
        {"id": 11, "episodeId": 20, "eventType": "grabbed", "date": "2024-02-01T00:00:00Z"},
        {"id": 12, "episodeId": 20, "eventType": "downloadFolderImported", "date": "2024-03-01"},
        {"id": 13, "episodeId": 99, "eventType": "grabbed", "date": "2025-01-01T00:00:00Z"},
    ]
    seen, outcome = drive(
        sonarr_plan("main", EPISODE),
        [
            series,
            [{"id": 5, "path": EPISODE + ".other"}, {"id": 6, "path": EPISODE}],
            [{"id": 21}, {"id": 20}],
            history,
            None,
            None,
            {"id": 444, "name": "EpisodeSearch"},
        ],
    )
    assert seen == [
        ArrRequest("GET", "/api/v3/series"),
        ArrRequest("GET", "/api/v3/episodefile", (("seriesId", "2"),)),
        ArrRequest("GET", "/api/v3/episode", (("episodeFileId", "6"),)),
        ArrRequest("GET", "/api/v3/history/series", (("seriesId", "2"), ("eventType", "grabbed"))),
        ArrRequest("POST", "/api/v3/history/failed/11"),
        ArrRequest("DELETE", "/api/v3/episodefile/6"),
        ArrRequest(
            "POST", "/api/v3/command", body={"name": "EpisodeSearch", "episodeIds": [20, 21]}
        ),
    ]
    assert (outcome.owner_id, outcome.file_id, outcome.item_ids) == (2, 6, (20, 21))
    assert (outcome.blocklisted, outcome.command_id) == (11, 444)


def test_radarr_plan_without_a_grab_still_deletes_and_searches():
    """No grab in the movie's history: nothing is blocklisted, the rest goes on."""
    path = "/mnt/a/movies/Film (2020)/Film.mkv"
    seen, outcome = drive(
        radarr_plan("r", path),
        [[{"id": 3, "path": "/mnt/a/movies/Film (2020)"}], [{"id": 9, "path": path}], [], None, {}],
    )
    assert [r.describe() for r in seen] == [
        "GET /api/v3/movie",
        "GET /api/v3/moviefile?movieId=3",
        "GET /api/v3/history/movie?movieId=3&eventType=grabbed",
        "DELETE /api/v3/moviefile/9",
        "POST /api/v3/command",
    ]
    assert seen[-1].body == {"name": "MoviesSearch", "movieIds": [3]}
    assert outcome.blocklisted is None and outcome.command_id is None
    assert "no grab in its history" in outcome.summary()


@pytest.mark.parametrize(
    ("answers", "error", "text"),
    [
        ([[{"id": 1, "path": "/mnt/a/library/tv/Show2"}]], ArrFileNotFound, "no series folder"),
        (
            [[{"id": 1, "path": SHOW}], [{"id": 5, "path": EPISODE + "x"}]],
            ArrFileNotFound,
            "has no episode file",
        ),
        ([{"id": 1}], ArrRequestError, "expected a JSON array"),
        ([[{"path": SHOW}]], ArrRequestError, "has no 'id'"),
        ([[{"id": "1", "path": SHOW}]], ArrRequestError, "not an integer"),
    ],
)
def test_sonarr_plan_errors(answers, error, text):
    """A path no series holds, a missing file, or answers not shaped as the OpenAPI
    document says end the plan with a named error."""
    with pytest.raises(error, match=text):
        drive(sonarr_plan("main", EPISODE), answers)


def test_arr_path_maps_the_mount():
    """The arr-side path is the mount path + altmount's path."""
    assert arr_path("/mnt/a/", "/complete/tv/x.mkv") == "/mnt/a/complete/tv/x.mkv"


def test_arrs_config_validation():
    """Instances need a unique name, an http(s) URL and an API key; enabling needs a mount."""
    good = (
        "sabnzbd: {mount_dir: /mnt/a}\narrs:\n  enabled: true\n  sonarr_instances:\n"
        "    - {name: s, url: 'http://127.0.0.1:8989', api_key: k, category: tv}\n"
    )
    config, warnings = parse_config(good)
    assert warnings == [] and config.arrs.sonarr_instances[0].category == "tv"
    bad = (
        "arrs:\n  enabled: true\n  sonarr_instances:\n"
        "    - {name: s, url: 'ftp://x', api_key: ''}\n  radarr_instances:\n"
        "    - {name: s, url: 'http://r', api_key: k, colour: red}\n"
    )
    with pytest.raises(ConfigError) as raised:
        parse_config(bad)
    message = str(raised.value)
    for part in (
        "arrs.sonarr_instances[0].url: must be an http:// or https:// URL",
        "arrs.sonarr_instances[0].api_key: required",
        "arrs.radarr_instances[0].name: duplicate instance name 's'",
        "arrs.mount_path: required",
    ):
        assert part in message
