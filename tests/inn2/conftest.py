"""Fixtures of the INN2 integration suite: real peers, posted media, running altmount servers.

The suite needs INN2 on 127.0.0.1:1119/1120 and nyuu (scripts/setup-peers.sh). Without
them each test module skips itself with the reason (`skip_without_peers`), except under
CI (CI=true), where a missing peer is a failure: CI runs the setup first, and a silently
skipped suite would prove nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from inn2lib import (
    TLS_CA_FILE,
    AltmountServer,
    Posted,
    make_movie,
    make_wav,
    peers_problem,
    post,
    provider,
    tls_provider,
    write_config,
)


@pytest.fixture(scope="session", autouse=True)
def inn2_peers() -> None:
    """Under CI, fail every test here when INN2 or nyuu is missing (elsewhere it is a skip)."""
    problem = peers_problem()
    if problem is not None:
        pytest.fail(f"{problem} (CI must run it before the suite)", pytrace=False)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for the generated media and the NZBs nyuu writes."""
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def posted_movie(media_dir: Path) -> Posted:
    """A 40 s 720p H.264+AAC mkv posted with nyuu's default article size."""
    return post(make_movie(media_dir / "movie.mkv"), media_dir / "Test.Movie.720p.nzb")


@pytest.fixture(scope="session")
def posted_wav(media_dir: Path) -> Posted:
    """A 3 MB WAV posted in 256 KiB articles (more segments per MB than the movie)."""
    return post(
        make_wav(media_dir / "noise.wav", 3_000_000, seed=1),
        media_dir / "Noise.Album.nzb",
        article_size=256 * 1024,
    )


def _serving(directory: Path, entry: dict[str, object], name: str) -> Iterator[AltmountServer]:
    """A started altmount server whose only provider is `entry`, stopped afterwards."""
    server = AltmountServer(write_config(directory, [entry]), name=name)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def session_server(
    tmp_path_factory: pytest.TempPathFactory, inn2_peers: None
) -> Iterator[AltmountServer]:
    """One altmount server for the session, its only provider the open INN2 reader."""
    yield from _serving(tmp_path_factory.mktemp("altmount"), provider("inn2"), "session")


@pytest.fixture(scope="session")
def tls_session_server(
    tmp_path_factory: pytest.TempPathFactory, inn2_peers: None
) -> Iterator[AltmountServer]:
    """A second server whose only provider is INN2's TLS reader, verified against the test CA."""
    if not TLS_CA_FILE.exists():
        pytest.skip(f"{TLS_CA_FILE} missing: run scripts/setup-peers.sh as root")
    yield from _serving(tmp_path_factory.mktemp("altmount-tls"), tls_provider("inn2-tls"), "tls")


@pytest.fixture(scope="session")
def tls_imported_movie(tls_session_server: AltmountServer, posted_movie: Posted) -> str:
    """The WebDAV path of the movie imported through the TLS provider."""
    tls_session_server.import_nzb(posted_movie.nzb)
    return tls_session_server.find_file(posted_movie.release, posted_movie.name).path


@pytest.fixture(params=["plain", "tls"])
def movie_over(request: pytest.FixtureRequest) -> tuple[AltmountServer, str]:
    """(server, WebDAV path of the movie): once over INN2's plain reader, once over its
    TLS reader with the certificate verified (ca_file)."""
    if request.param == "plain":
        server, path = request.getfixturevalue("session_server"), "imported_movie"
    else:
        server, path = request.getfixturevalue("tls_session_server"), "tls_imported_movie"
    request.node.altmount_servers = [server]
    return server, request.getfixturevalue(path)


@pytest.fixture
def altmount(request: pytest.FixtureRequest, session_server: AltmountServer) -> AltmountServer:
    """The session's server, its log attached to the report of a failing test."""
    request.node.altmount_servers = [session_server]
    return session_server


@pytest.fixture
def altmount_factory(
    request: pytest.FixtureRequest, tmp_path: Path, inn2_peers: None
) -> Iterator[Callable[..., AltmountServer]]:
    """Start extra servers with their own providers; all are stopped after the test."""
    started: list[AltmountServer] = []
    request.node.altmount_servers = started

    def start(providers: list[dict[str, object]], name: str) -> AltmountServer:
        directory = tmp_path / name
        directory.mkdir()
        server = AltmountServer(write_config(directory, providers), name=name)
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="session")
def imported_movie(session_server: AltmountServer, posted_movie: Posted) -> str:
    """The WebDAV path of the movie after `altmount import` of its NZB."""
    session_server.import_nzb(posted_movie.nzb)
    return session_server.find_file(posted_movie.release, posted_movie.name).path


@pytest.fixture(scope="session")
def imported_wav(session_server: AltmountServer, posted_wav: Posted) -> str:
    """The WebDAV path of the WAV after `altmount import` of its NZB."""
    session_server.import_nzb(posted_wav.nzb)
    return session_server.find_file(posted_wav.release, posted_wav.name).path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Attach the log of every altmount server a failing test used to its report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for server in getattr(item, "altmount_servers", ()):
            report.sections.append((f"altmount log ({server.name})", server.log_tail()))
