"""An in-memory stand-in for QueueService's read/delete/retry face, for API tests.

It answers with already-fired Deferreds, as the real service does once its
database thread has run, and fails with the same errors (QueueItemNotFound).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from twisted.internet import defer

from altmount.errors import QueueItemNotFound
from altmount.queue.model import Priority, QueueItem, State

__all__ = ["FakeQueue"]


class FakeQueue:
    """Items in a dict; `running` and `processing_paused` as QueueService has them."""

    def __init__(self) -> None:
        self.items: dict[int, QueueItem] = {}
        self.running: frozenset[int] = frozenset()
        self.processing_paused = False

    def add_item(
        self,
        item_id: int,
        state: str,
        *,
        started_at: float | None = None,
        completed_at: float | None = None,
        name: str = "",
    ) -> QueueItem:
        """Store an item in `state` (test setup)."""
        item = QueueItem(
            id=item_id,
            nzo_id=f"SABnzbd_nzo_{item_id:012d}",
            nzb_name=name or f"item{item_id}.nzb",
            category="Default",
            priority=Priority.NORMAL,
            state=State(state),
            attempts=1,
            error="",
            created_at=1000.0 + item_id,
            updated_at=1000.0 + item_id,
            started_at=started_at,
            completed_at=completed_at,
            target_path="",
            size=0,
            source="api",
        )
        self.items[item_id] = item
        return item

    def _select(self, states: Any, search: Any, category: Any) -> list[QueueItem]:
        chosen = [
            item
            for item in self.items.values()
            if (not states or item.state in states)
            and (not search or search.lower() in item.nzb_name.lower())
            and (not category or category.lower() == item.category.lower())
        ]
        return chosen

    def counts(self) -> defer.Deferred[dict[State, int]]:
        counts = dict.fromkeys(State, 0)
        for item in self.items.values():
            counts[item.state] += 1
        return defer.succeed(counts)

    def list(
        self,
        states=None,
        search=None,
        category=None,
        offset=0,
        limit=50,
        sort="created_at",
        descending=True,
    ) -> defer.Deferred[list[QueueItem]]:
        chosen = sorted(
            self._select(states, search, category),
            key=lambda item: (getattr(item, sort if sort != "queue" else "id") or 0, item.id),
            reverse=descending,
        )
        return defer.succeed(chosen[offset : offset + limit])

    def count(self, states=None, search=None, category=None) -> defer.Deferred[int]:
        return defer.succeed(len(self._select(states, search, category)))

    def get(self, item_id: int) -> defer.Deferred[QueueItem]:
        if item_id not in self.items:
            return defer.fail(QueueItemNotFound(f"no queue item {item_id}"))
        return defer.succeed(self.items[item_id])

    def delete(self, item_id: int) -> defer.Deferred[None]:
        if self.items.pop(item_id, None) is None:
            return defer.fail(QueueItemNotFound(f"no queue item {item_id}"))
        return defer.succeed(None)

    def retry(self, item_id: int) -> defer.Deferred[QueueItem]:
        if item_id not in self.items:
            return defer.fail(QueueItemNotFound(f"no queue item {item_id}"))
        item = dataclasses.replace(self.items[item_id], state=State.PENDING)
        self.items[item_id] = item
        return defer.succeed(item)
