"""Connections to the shared PostgreSQL database (`database.type: postgres`).

psycopg is imported here only, and only when PostgreSQL is configured: a single-host
install never needs it. Every failure becomes a `DatabaseUnavailable` naming the
DSN without its password.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from altmount.errors import ConfigError, DatabaseUnavailable

if TYPE_CHECKING:
    import psycopg

__all__ = ["connect", "redact", "describe", "database_errors", "unreachable_errors"]

#: Seconds to wait for the server to accept a connection.
CONNECT_TIMEOUT = 10


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise ConfigError(
            "database.type: postgres needs the psycopg package; install it with "
            "pip install 'altmount[postgres]'"
        ) from None
    return psycopg


def redact(dsn: str) -> str:
    """`dsn` without its password (for messages and logs)."""
    psycopg = _psycopg()
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(an unparsable DSN)"
    params.pop("password", None)
    return psycopg.conninfo.make_conninfo(**params)


def describe(exc: BaseException) -> str:
    """The first line of a psycopg error: the server's or libpq's own words."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def database_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a statement or a lost connection raises."""
    return (_psycopg().Error,)


def unreachable_errors() -> tuple[type[BaseException], ...]:
    """What a (re)connection or a statement on a lost session raises."""
    return (DatabaseUnavailable, *database_errors())


def connect(dsn: str, purpose: str, *, autocommit: bool = True) -> psycopg.Connection:
    """A new connection; `purpose` names it in the server's `pg_stat_activity`."""
    psycopg = _psycopg()
    try:
        return psycopg.connect(
            dsn,
            autocommit=autocommit,
            connect_timeout=CONNECT_TIMEOUT,
            application_name=f"altmount {purpose}"[:63],
        )
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"database.dsn: not a valid connection string ({describe(exc)})") from None
    except psycopg.Error as exc:
        raise DatabaseUnavailable(
            f"database.dsn {redact(dsn)}: cannot connect for the {purpose}: {describe(exc)}"
        ) from None
