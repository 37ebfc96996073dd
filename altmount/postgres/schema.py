"""The PostgreSQL schema of altmount: versioned migrations, applied once by whichever
process gets there first (under an advisory lock, so concurrent starts do not race)."""

from __future__ import annotations

from typing import Any

from altmount.errors import DatabaseUnavailable
from altmount.queue.model import State

__all__ = ["MIGRATIONS", "ensure_schema"]

#: Advisory lock held while migrating: "altmount schema".
SCHEMA_LOCK = 0x616C7363

_STATES_SQL = ", ".join(f"'{state}'" for state in State)

#: Version N is MIGRATIONS[N - 1].
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # One random id per database: a host's local replica knows which log it follows.
        "CREATE TABLE altmount_log_id (id TEXT NOT NULL)",
        "INSERT INTO altmount_log_id VALUES (md5(random()::text || clock_timestamp()::text))",
        """CREATE TABLE metadata_log (
            seq BIGSERIAL PRIMARY KEY,
            at DOUBLE PRECISION NOT NULL,
            op TEXT NOT NULL,
            paths TEXT[] NOT NULL,
            records BYTEA[] NOT NULL)""",
    ),
    (
        # QueueStore's tables (altmount/queue/_schema.py, at its version 2) in PostgreSQL's words.
        f"""CREATE TABLE queue_items (
            id BIGSERIAL PRIMARY KEY,
            nzo_id TEXT NOT NULL UNIQUE,
            nzb_name TEXT NOT NULL,
            category TEXT NOT NULL,
            priority INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN ({_STATES_SQL})),
            attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT NOT NULL DEFAULT '',
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            started_at DOUBLE PRECISION,
            completed_at DOUBLE PRECISION,
            target_path TEXT NOT NULL DEFAULT '',
            size BIGINT NOT NULL DEFAULT 0,
            source TEXT NOT NULL,
            worker TEXT NOT NULL DEFAULT '')""",
        """CREATE TABLE queue_nzbs (
            item_id BIGINT PRIMARY KEY REFERENCES queue_items(id) ON DELETE CASCADE,
            data BYTEA NOT NULL)""",
        "CREATE INDEX queue_items_state ON queue_items (state, updated_at)",
        "CREATE INDEX queue_items_claim ON queue_items (priority DESC, created_at, id) "
        "WHERE state = 'pending'",
        "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        # A counter every change of queue_items moves: QueueStore.data_version.
        "CREATE TABLE queue_version (version BIGINT NOT NULL)",
        "INSERT INTO queue_version VALUES (0)",
        """CREATE FUNCTION queue_changed() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN UPDATE queue_version SET version = version + 1; RETURN NULL; END $$""",
        "CREATE TRIGGER queue_items_changed AFTER INSERT OR UPDATE OR DELETE ON queue_items "
        "FOR EACH STATEMENT EXECUTE FUNCTION queue_changed()",
    ),
)


def ensure_schema(conn: Any) -> None:
    """Bring the database to the newest schema; the caller commits."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
    conn.execute(
        "CREATE TABLE IF NOT EXISTS altmount_schema (version INTEGER NOT NULL)"
    )
    row = conn.execute("SELECT version FROM altmount_schema").fetchone()
    version = row[0] if row else 0
    if version > len(MIGRATIONS):
        raise DatabaseUnavailable(
            f"the database has schema version {version}, this altmount knows up to "
            f"{len(MIGRATIONS)}: upgrade altmount on this host"
        )
    for statements in MIGRATIONS[version:]:
        for statement in statements:
            conn.execute(statement)
    if row is None:
        conn.execute("INSERT INTO altmount_schema VALUES (%s)", (len(MIGRATIONS),))
    elif version < len(MIGRATIONS):
        conn.execute("UPDATE altmount_schema SET version = %s", (len(MIGRATIONS),))
