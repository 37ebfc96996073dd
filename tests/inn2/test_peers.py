"""The suite's ground truth: nyuu's posts reach INN2, its NZBs parse, the config is valid.

These run without `altmount serve`.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from inn2lib import (
    AUTH_PASSWORD,
    AUTH_PORT,
    AUTH_USER,
    READER_PORT,
    Posted,
    altmount_command,
    altmount_env,
    nntp_greeting,
    nntp_stat,
    provider,
    run,
    skip_without_peers,
    write_config,
)

from altmount.nzb import parse_nzb

pytestmark = pytest.mark.inn2
skip_without_peers()


def test_readers_greet() -> None:
    """Both INN2 readers answer with a 200 greeting."""
    assert (nntp_greeting(READER_PORT) or "").startswith("200")
    assert (nntp_greeting(AUTH_PORT) or "").startswith("200")


def test_movie_nzb_parses_and_matches_the_file(posted_movie: Posted) -> None:
    """nyuu's NZB for the movie parses: one file, the right name, one segment per 700 KiB."""
    nzb = parse_nzb(posted_movie.nzb.read_bytes())
    assert len(nzb.files) == 1
    (posted,) = nzb.files
    assert posted.filename == posted_movie.name
    assert posted.groups == ("alt.binaries.test",)
    expected_parts = -(-len(posted_movie.data) // posted_movie.article_size)
    assert [s.number for s in posted.segments] == list(range(1, expected_parts + 1))
    assert tuple(s.message_id for s in posted.segments) == posted_movie.message_ids


def test_every_posted_article_is_on_the_server(posted_movie: Posted, posted_wav: Posted) -> None:
    """INN2 has every article nyuu reported in its NZBs (STAT answers 223)."""
    for message_id in posted_movie.message_ids + posted_wav.message_ids:
        assert nntp_stat(message_id) == 223, message_id


def test_media_sizes_fit_the_plan(posted_movie: Posted, posted_wav: Posted) -> None:
    """The movie is 5-20 MB (many segments) and the WAV a few MB."""
    assert 5_000_000 <= len(posted_movie.data) <= 20_000_000
    assert len(posted_movie.message_ids) >= 8
    assert 2_000_000 <= len(posted_wav.data) <= 4_000_000
    assert len(posted_wav.message_ids) >= 10


def test_auth_reader_demands_login() -> None:
    """The reader on 1120 answers 480 before AUTHINFO and 281 with the right password."""
    with socket.create_connection(("127.0.0.1", AUTH_PORT), timeout=10) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b"GROUP alt.binaries.test\r\n")
        assert reader.readline()[:3] == b"480"
        sock.sendall(f"AUTHINFO USER {AUTH_USER}\r\n".encode())
        assert reader.readline()[:3] == b"381"
        sock.sendall(f"AUTHINFO PASS {AUTH_PASSWORD}\r\n".encode())
        assert reader.readline()[:3] == b"281"


def test_suite_config_passes_config_check(tmp_path: Path) -> None:
    """`altmount config check` accepts the suite's config without a warning."""
    providers = [provider("inn2"), provider("inn2-auth", AUTH_PORT, AUTH_USER, AUTH_PASSWORD)]
    config = write_config(tmp_path, providers)
    done = run(altmount_command("config", "check", "--config", str(config)), env=altmount_env())
    assert b"warning" not in done.stderr.lower(), done.stderr
    assert b"port: 1120" in done.stdout
