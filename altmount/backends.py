"""Where the shared state lives: on this host's files (SQLite, LMDB, lock files) or in
PostgreSQL (`database.type: postgres`), for every host that uses the same database."""

from __future__ import annotations

from collections.abc import Callable

from altmount.config import Config, ProviderConfig
from altmount.metadata import MetadataStore
from altmount.nntp.budget import ConnectionBudget, SlotBudget, budget_dir, provider_key
from altmount.queue.store import QueueStore

__all__ = ["open_metadata", "open_queue", "provider_budget", "shared_database"]


def shared_database(config: Config) -> bool:
    """Whether the state is shared through PostgreSQL."""
    return config.database.type == "postgres"


def open_metadata(config: Config) -> MetadataStore:
    """The metadata tree: the local LMDB store, or its replica of the shared log.

    The replica has the reading and writing methods of MetadataStore, plus `catch_up()`."""
    map_size = config.metadata.map_size_mb * 1024 * 1024
    if shared_database(config):
        from altmount.postgres.metadata import ReplicatedMetadataStore

        return ReplicatedMetadataStore(  # type: ignore[return-value]
            config.metadata.root_path, config.database.dsn, map_size
        )
    return MetadataStore(config.metadata.root_path, map_size=map_size)


def open_queue(config: Config, max_attempts: int | None = None) -> QueueStore:
    """The queue and history: the SQLite file at `database.path`, or PostgreSQL."""
    attempts = config.import_.max_attempts if max_attempts is None else max_attempts
    if shared_database(config):
        from altmount.postgres.queue import PgQueueStore

        return PgQueueStore(config.database.dsn, max_attempts=attempts)
    return QueueStore(config.database.path, max_attempts=attempts)


def provider_budget(
    config: Config, provider: ProviderConfig, clock: Callable[[], float]
) -> ConnectionBudget:
    """The `max_connections` of `provider`, shared by every process using the database."""
    key = provider_key(provider.host, provider.port, provider.username)
    if shared_database(config):
        from altmount.postgres.budget import PgSlotBudget

        return PgSlotBudget(config.database.dsn, key, provider.max_connections, clock=clock)
    return SlotBudget(budget_dir(config.database.path), key, provider.max_connections, clock=clock)
