"""An article that INN2 no longer has: the read fails cleanly and the server keeps serving.

The article is cancelled after the import, as happens when a takedown removes it from a
provider: an import that STAT-samples segments could otherwise pick the cancelled one and
(rightly) refuse the release, which would test the importer instead of streaming.
"""

from __future__ import annotations

import pytest
from inn2lib import (
    AltmountServer,
    Posted,
    cancel_article,
    make_wav,
    md5,
    nntp_stat,
    post,
    skip_without_peers,
)

pytestmark = pytest.mark.inn2
skip_without_peers()

ARTICLE = 100 * 1024
MISSING = 5  # zero-based part index of the cancelled article, in the middle of the file
MAX_TIME = 60.0


@pytest.fixture(scope="module")
def gapped(
    session_server: AltmountServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Posted, str]:
    """A 1.2 MB WAV posted in 100 KiB articles, imported, then its 6th article cancelled."""
    folder = tmp_path_factory.mktemp("gap")
    posted = post(
        make_wav(folder / "gap.wav", 1_200_000, seed=2),
        folder / "Gap.Test.nzb",
        article_size=ARTICLE,
    )
    session_server.import_nzb(posted.nzb)
    path = session_server.find_file(posted.release, posted.name).path
    cancel_article(posted.message_ids[MISSING])
    assert nntp_stat(posted.message_ids[MISSING]) == 430
    return posted, path


def test_range_over_a_missing_article_fails_cleanly(
    altmount: AltmountServer, gapped: tuple[Posted, str]
) -> None:
    """A range covering the cancelled article ends early or errors: never wrong bytes, no hang."""
    posted, path = gapped
    first, last = MISSING * ARTICLE - 5000, (MISSING + 1) * ARTICLE + 5000
    code, status, body, elapsed = altmount.curl(path, f"{first}-{last}", max_time=MAX_TIME)
    assert code != 28, f"no answer within {MAX_TIME:.0f} s (curl timed out)"
    assert elapsed < MAX_TIME
    if status < 500:
        # Headers went out before the gap was found: the body must stop short of it, and
        # the client must see an incomplete transfer (curl 18), not a clean end.
        assert status == 206, f"HTTP {status}"
        assert body == posted.data[first : first + len(body)], "bytes differ from the original"
        assert len(body) <= MISSING * ARTICLE - first, "bytes served for the missing article"
        assert code != 0, f"a truncated body looked complete ({len(body)} bytes)"


def test_range_starting_in_a_missing_article_fails_cleanly(
    altmount: AltmountServer, gapped: tuple[Posted, str]
) -> None:
    """A range starting inside the cancelled article gets an error or no bytes, in time."""
    posted, path = gapped
    first = MISSING * ARTICLE + 10
    code, status, body, elapsed = altmount.curl(path, f"{first}-{first + 1000}", max_time=MAX_TIME)
    assert code != 28 and elapsed < MAX_TIME, "no answer in time"
    assert status >= 500 or body == b"", f"served {len(body)} bytes (HTTP {status})"


def test_server_keeps_serving_after_a_missing_article(
    altmount: AltmountServer, gapped: tuple[Posted, str], imported_wav: str, posted_wav: Posted
) -> None:
    """After failing a read, the server still serves the intact parts and other files."""
    posted, path = gapped
    altmount.curl(path, f"{MISSING * ARTICLE - 10}-{MISSING * ARTICLE + 10}", max_time=MAX_TIME)
    code, status, body, _ = altmount.curl(path, f"0-{MISSING * ARTICLE - 1}")
    assert (code, status) == (0, 206)
    assert md5(body) == md5(posted.data[: MISSING * ARTICLE])
    code, status, body, _ = altmount.curl(imported_wav)
    assert (code, status) == (0, 200)
    assert md5(body) == md5(posted_wav.data)
