"""The PostgreSQL schema of altmount: versioned migrations, applied once by whichever
process gets there first (under an advisory lock, so concurrent starts do not race)."""

from __future__ import annotations

from typing import Any

from altmount.errors import DatabaseUnavailable

__all__ = ["MIGRATIONS", "ensure_schema"]

#: Advisory lock held while migrating: "altmount schema".
SCHEMA_LOCK = 0x616C7363

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
