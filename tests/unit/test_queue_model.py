"""The queue's pure vocabulary: transitions, priorities, nzo ids and .nzb.gz handling."""

from __future__ import annotations

import gzip
import itertools
import re

import pytest

from altmount.errors import NZBParseError, QueueError
from altmount.nzb.parser import MAX_NZB_BYTES
from altmount.queue.model import (
    TRANSITIONS,
    Priority,
    State,
    check_transition,
    gunzip_nzb,
    new_nzo_id,
    resolve_priority,
)


@pytest.mark.parametrize(("old", "new"), list(itertools.product(State, State)))
def test_check_transition_follows_the_table(old, new):
    """Every pair of states is allowed exactly when the transitions table lists it."""
    if new in TRANSITIONS[old]:
        check_transition(old, new, 7)
    else:
        with pytest.raises(QueueError, match=f"queue item 7 is {old}; it cannot become {new}"):
            check_transition(old, new, 7)


def test_completed_is_final():
    """A completed item can change into nothing (it is only ever deleted or purged)."""
    assert TRANSITIONS[State.COMPLETED] == frozenset()


def test_every_state_has_a_row():
    """The transitions table covers every state, so lookups never KeyError."""
    assert set(TRANSITIONS) == set(State)


def test_queue_errors_have_http_statuses():
    """An illegal change is a 409 and an unknown id a 404 for the web layers."""
    from altmount.errors import QueueItemNotFound

    assert QueueError.http_status == 409
    assert QueueItemNotFound.http_status == 404 and issubclass(QueueItemNotFound, QueueError)


@pytest.mark.parametrize(
    ("value", "category_priority", "expected"),
    [
        (None, 1, (Priority.HIGH, False)),
        (-100, -1, (Priority.LOW, False)),
        (-2, 1, (Priority.HIGH, True)),
        (2, 0, (Priority.FORCE, False)),
        (0, 1, (Priority.NORMAL, False)),
        (None, -100, (Priority.NORMAL, False)),
        (-2, -2, (Priority.NORMAL, True)),
    ],
)
def test_resolve_priority(value, category_priority, expected):
    """SABnzbd's -100 defers to the category, -2 adds paused, others are taken as they are."""
    assert resolve_priority(value, category_priority) == expected


def test_resolve_priority_rejects_unknown_numbers():
    """A priority SABnzbd does not define is a QueueError listing the valid ones."""
    with pytest.raises(QueueError, match="priority 5 is not one of"):
        resolve_priority(5, 0)


def test_nzo_ids_look_like_sabnzbd_ones():
    """nzo ids are SABnzbd_nzo_ plus 12 of [a-z0-9], and do not repeat."""
    ids = {new_nzo_id() for _ in range(500)}
    assert len(ids) == 500
    assert all(re.fullmatch(r"SABnzbd_nzo_[a-z0-9]{12}", nzo) for nzo in ids)


def test_gunzip_passes_plain_nzb_through():
    """Bytes that are not gzip come back as the very same object."""
    data = b"<nzb/>"
    assert gunzip_nzb(data) is data


def test_gunzip_inflates_nzb_gz():
    """An .nzb.gz is inflated to the NZB inside."""
    data = b"<nzb>" + b"x" * 10_000 + b"</nzb>"
    assert gunzip_nzb(gzip.compress(data)) == data


def test_gunzip_refuses_a_bomb():
    """A gzip stream inflating beyond the NZB size cap fails without inflating it all."""
    bomb = gzip.compress(bytes(MAX_NZB_BYTES + 1024), compresslevel=9)
    with pytest.raises(NZBParseError, match="inflates beyond 64 MiB"):
        gunzip_nzb(bomb)


def test_gunzip_reports_corrupt_and_truncated_streams():
    """Garbage after the gzip magic and a cut-off stream each fail with their reason."""
    with pytest.raises(NZBParseError, match="corrupt"):
        gunzip_nzb(b"\x1f\x8b" + b"garbage" * 10)
    whole = gzip.compress(b"<nzb>" + bytes(range(256)) * 100 + b"</nzb>")
    with pytest.raises(NZBParseError, match="truncated"):
        gunzip_nzb(whole[: len(whole) // 2])
