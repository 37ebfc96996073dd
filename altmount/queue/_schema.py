"""The queue database schema: versioned migrations, columns and sort orders. No I/O."""

from __future__ import annotations

from altmount.queue.model import Priority, QueueItem, State

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SORT_KEYS", "COLUMNS", "item_from_row"]

_STATES_SQL = ", ".join(f"'{state}'" for state in State)

#: Schema migrations, applied in order at open; version N is MIGRATIONS[N - 1].
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        f"""CREATE TABLE queue_items (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            nzo_id TEXT NOT NULL UNIQUE,
            nzb_name TEXT NOT NULL,
            category TEXT NOT NULL,
            priority INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN ({_STATES_SQL})),
            attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            started_at REAL,
            completed_at REAL,
            target_path TEXT NOT NULL DEFAULT '',
            size INTEGER NOT NULL DEFAULT 0,
            source TEXT NOT NULL)""",
        """CREATE TABLE queue_nzbs (
            item_id INTEGER PRIMARY KEY REFERENCES queue_items(id) ON DELETE CASCADE,
            data BLOB NOT NULL)""",
        "CREATE INDEX queue_items_state ON queue_items (state, updated_at)",
        "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
    (
        # v2: who claimed an item, and an index that serves the claim's ORDER BY.
        "ALTER TABLE queue_items ADD COLUMN worker TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX queue_items_claim ON queue_items (priority DESC, created_at, id) "
        "WHERE state = 'pending'",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

#: `list(sort=...)` keys → ORDER BY (ascending form); "queue" is the claim order.
SORT_KEYS: dict[str, str] = {
    "queue": "priority DESC, created_at, id",
    "created_at": "created_at, id",
    "updated_at": "updated_at, id",
    "completed_at": "completed_at, id",
    "started_at": "started_at, id",
    "nzb_name": "nzb_name COLLATE NOCASE, id",
    "size": "size, id",
    "priority": "priority, id",
    "id": "id",
}

COLUMNS = (
    "id, nzo_id, nzb_name, category, priority, state, attempts, error, created_at, "
    "updated_at, started_at, completed_at, target_path, size, source, worker"
)


def item_from_row(row: tuple) -> QueueItem:
    """The item of a row selected as COLUMNS (QueueItem's fields, in its order)."""
    return QueueItem(*row[:4], Priority(row[4]), State(row[5]), *row[6:])
