"""The import queue: SQLite store, state machine, processor and watch folder."""

from altmount.queue.model import Priority, QueueItem, State
from altmount.queue.service import QueueService
from altmount.queue.store import QueueStore

__all__ = ["Priority", "QueueItem", "QueueService", "QueueStore", "State"]
