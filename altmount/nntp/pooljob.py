"""One caller's request inside a provider pool, and how its failures are counted.

No I/O: the pool (nntp/pool.py) creates a `Job` per `body`/`stat`/`date` call, sends
it on one connection after another until it is answered or out of attempts.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from altmount.errors import (
    NNTPAuthExpired,
    NNTPConnectionLost,
    NNTPError,
    NNTPProtocolError,
    NNTPServiceUnavailable,
    NNTPTimeout,
    ProviderAuthError,
)
from altmount.nntp.schedule import request_class

__all__ = ["Job", "OUTAGE_SECONDS", "error_kind"]

#: Connection losses of one request within this long of each other are one outage.
OUTAGE_SECONDS = 1.0


class Job:
    """One caller's request, possibly tried on several connections."""

    __slots__ = (
        "kind",
        "message_id",
        "priority",
        "cls",
        "deferred",
        "attempts",
        "deadline",
        "lost_at",
        "outage_losses",
        "reauthed",
    )

    def __init__(self, kind: str, message_id: str, priority: int, deadline: float) -> None:
        self.kind = kind
        self.message_id = message_id
        self.priority = priority
        self.cls = request_class(priority)  # stream, import or background (nntp/schedule.py)
        self.deadline = deadline
        self.attempts = 0
        self.lost_at = -OUTAGE_SECONDS  # when a connection loss last cost an attempt
        self.outage_losses = 0
        self.reauthed = False  # already retried after a 480 during the session
        # Cancelling a queued job just lets the queue skip it; an answer that arrives
        # for a cancelled job in flight is dropped.
        self.deferred: defer.Deferred[Any] = defer.Deferred()

    @property
    def alive(self) -> bool:
        """False once answered, failed or cancelled (a queue skips it)."""
        return not self.deferred.called

    def same_outage(self, now: float, connections: int) -> bool:
        """Whether a connection loss now is part of one this job was already charged for.

        A provider that drops every connection at once (a restart) is noticed one
        connection at a time, so a retried request can be sent to a sibling that is
        already dead. Losses soon after the charged one are the same outage, free up to
        one per connection (`connections`); a request that kills each connection it is
        sent on is still charged each time after that.
        """
        if now - self.lost_at < OUTAGE_SECONDS and self.outage_losses < connections:
            self.outage_losses += 1
            return True
        self.lost_at = now
        self.outage_losses = 0
        return False


def error_kind(error: NNTPError) -> str:
    """The stats bucket of a failed request or connect."""
    if isinstance(error, NNTPTimeout):
        return "timeout"
    if isinstance(error, NNTPServiceUnavailable):
        return "unavailable"
    if isinstance(error, NNTPAuthExpired):
        return "reauth"
    if isinstance(error, NNTPConnectionLost):
        return "connection_lost"
    if isinstance(error, ProviderAuthError):
        return "auth"
    if isinstance(error, NNTPProtocolError):
        return "protocol"
    return "connect"
