"""The import queue's vocabulary: item states, their legal changes, priorities, items.

Pure: no I/O, no clock. The transitions table is the one place that says which
state changes exist; the store checks every change against it.
"""

from __future__ import annotations

import re
import secrets
import string
import zlib
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from altmount.errors import NZBParseError, QueueError
from altmount.nzb.parser import MAX_NZB_BYTES

__all__ = [
    "State",
    "TRANSITIONS",
    "ACTIVE_STATES",
    "HISTORY_STATES",
    "check_transition",
    "Priority",
    "SABNZBD_DEFAULT_PRIORITY",
    "SABNZBD_PAUSED_PRIORITY",
    "resolve_priority",
    "SOURCES",
    "QueueItem",
    "Progress",
    "nzb_bytes",
    "new_nzo_id",
    "gunzip_nzb",
]


class State(StrEnum):
    """Where an item is in its life; stored as this text in the database."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    PAUSED = "paused"
    CANCELLED = "cancelled"


#: Every legal state change. PROCESSING → PENDING is a transient failure being
#: retried or an item recovered after a crash; FAILED/CANCELLED → PENDING is a retry.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.PENDING: frozenset({State.PROCESSING, State.PAUSED, State.CANCELLED}),
    State.PROCESSING: frozenset({State.COMPLETED, State.FAILED, State.PENDING, State.CANCELLED}),
    State.PAUSED: frozenset({State.PENDING, State.CANCELLED}),
    State.FAILED: frozenset({State.PENDING}),
    State.CANCELLED: frozenset({State.PENDING}),
    State.COMPLETED: frozenset(),
}

#: States shown in the queue (SABnzbd `mode=queue`).
ACTIVE_STATES: tuple[State, ...] = (State.PROCESSING, State.PENDING, State.PAUSED)
#: States shown in the history (SABnzbd `mode=history`).
HISTORY_STATES: tuple[State, ...] = (State.COMPLETED, State.FAILED, State.CANCELLED)


def check_transition(old: State, new: State, item_id: int | None = None) -> None:
    """Raise QueueError (naming the item if given) unless `old` → `new` is in TRANSITIONS."""
    if new not in TRANSITIONS[old]:
        what = "queue item" if item_id is None else f"queue item {item_id}"
        raise QueueError(f"{what} is {old}; it cannot become {new}")


class Priority(IntEnum):
    """SABnzbd's priority numbers, highest first in the queue."""

    LOW = -1
    NORMAL = 0
    HIGH = 1
    FORCE = 2


#: SABnzbd's "use the category's priority".
SABNZBD_DEFAULT_PRIORITY = -100
#: SABnzbd's "add the item paused".
SABNZBD_PAUSED_PRIORITY = -2


def resolve_priority(value: int | None, category_priority: int) -> tuple[Priority, bool]:
    """Map a SABnzbd priority (or None) to (Priority, add paused?).

    None and -100 take the category's priority; -2 adds the item paused with the
    category's priority; anything else must be a Priority value.
    """
    paused = value == SABNZBD_PAUSED_PRIORITY
    if value is None or value in (SABNZBD_DEFAULT_PRIORITY, SABNZBD_PAUSED_PRIORITY):
        value = category_priority
        if value in (SABNZBD_DEFAULT_PRIORITY, SABNZBD_PAUSED_PRIORITY):
            value = Priority.NORMAL  # a category cannot defer to itself
    try:
        return Priority(value), paused
    except ValueError:
        raise QueueError(
            f"priority {value} is not one of -100 (category default), -2 (paused), "
            f"-1 (low), 0 (normal), 1 (high), 2 (force)"
        ) from None


#: Where items come from (shown in the UI and logs).
SOURCES = frozenset({"cli", "api", "watch", "sabnzbd", "url"})


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One NZB in the queue or history, as stored.

    `target_path` is the release folder in the virtual tree and `size` the bytes
    of the files exposed there, both set on completion. `worker` names the
    process that claimed it last ("host:pid:n").
    """

    id: int
    nzo_id: str
    nzb_name: str
    category: str
    priority: Priority
    state: State
    attempts: int
    error: str
    created_at: float
    updated_at: float
    started_at: float | None
    completed_at: float | None
    target_path: str
    size: int
    source: str
    worker: str = ""


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a running import is: `done` (0..1, the share of import stages
    finished) after `elapsed` seconds."""

    done: float
    elapsed: float

    def seconds_left(self) -> float:
        """Remaining time at the pace so far (0 before anything is done)."""
        if self.done <= 0:
            return 0.0
        return max(0.0, self.elapsed * (1 - self.done) / self.done)


_SEGMENT_BYTES = re.compile(rb"<segment\b[^>]*?\bbytes\s*=\s*[\"'](\d{1,15})[\"']")


def nzb_bytes(nzb: bytes) -> int:
    """The bytes an NZB's segments announce (SABnzbd's job size), 0 for none.

    A scan of the `bytes` attributes, not a parse: it runs at enqueue for the
    queue's `mb` figure, and a malformed NZB is reported later by the import.
    """
    return sum(int(match) for match in _SEGMENT_BYTES.findall(nzb))


_NZO_ALPHABET = string.ascii_lowercase + string.digits
_NZO_LENGTH = 12


def new_nzo_id() -> str:
    """A fresh SABnzbd-style id: "SABnzbd_nzo_" and 12 random [a-z0-9]."""
    return "SABnzbd_nzo_" + "".join(secrets.choice(_NZO_ALPHABET) for _ in range(_NZO_LENGTH))


_GZIP_MAGIC = b"\x1f\x8b"


def gunzip_nzb(data: bytes) -> bytes:
    """`data` itself, or its gzip content (an .nzb.gz), at most MAX_NZB_BYTES of it.

    The cap is checked while inflating, so a gzip bomb costs no more memory
    than the largest NZB the parser accepts.
    """
    if not data.startswith(_GZIP_MAGIC):
        return data
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, MAX_NZB_BYTES + 1)
    except zlib.error as exc:
        raise NZBParseError(f"gzip-compressed NZB is corrupt: {exc}") from None
    if len(out) > MAX_NZB_BYTES or inflater.unconsumed_tail:
        raise NZBParseError(
            f"gzip-compressed NZB inflates beyond {MAX_NZB_BYTES >> 20} MiB; not an NZB"
        )
    if not inflater.eof:
        raise NZBParseError("gzip-compressed NZB is truncated")
    return out
