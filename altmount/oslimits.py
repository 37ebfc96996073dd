"""The operating-system limits a server needs, raised by the server itself where it can.

Every provider connection, client connection, slot lock and LMDB handle is a file
descriptor. Debian's default soft limit (1024) is below what a few providers of 50
connections and a library scan need, while the hard limit is usually far higher: a
process may raise its own soft limit up to it without privileges.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass

from altmount.config import Config

__all__ = ["FileLimit", "descriptors_needed", "raise_open_files_limit"]

log = logging.getLogger(__name__)

#: Descriptors a server holds besides provider and client connections (stores, logs,
#: slot and membership locks, the decode pool's pipes, listening sockets).
BASE_DESCRIPTORS = 64
#: Client connections planned for: each stream a player or a scan opens.
CLIENT_CONNECTIONS = 256


@dataclass(frozen=True, slots=True)
class FileLimit:
    """The open-files limit after start-up, and what the configuration needs."""

    soft: int
    hard: int
    before: int  #: the soft limit the process started with
    needed: int

    @property
    def sufficient(self) -> bool:
        return self.soft >= self.needed

    def as_dict(self) -> dict[str, int | bool]:
        return {
            "soft": self.soft,
            "hard": self.hard,
            "raised_from": self.before,
            "needed": self.needed,
            "sufficient": self.sufficient,
        }


def descriptors_needed(config: Config) -> int:
    """Descriptors the configured providers, the expected clients and the base need."""
    providers = sum(p.max_connections for p in config.providers if p.enabled)
    # Each connection has a socket and, with a shared budget, a slot lock.
    return BASE_DESCRIPTORS + 2 * providers + CLIENT_CONNECTIONS


def raise_open_files_limit(config: Config) -> FileLimit:
    """Raise the soft RLIMIT_NOFILE to the hard limit, log the result, and warn when it
    is below what `config` needs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = soft
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError) as exc:
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, target, exc)
    limit = FileLimit(soft, hard, before, descriptors_needed(config))
    if limit.sufficient:
        log.info("open-files limit %d (raised from %d; %d needed)", soft, before, limit.needed)
    else:
        log.warning(
            "open-files limit %d is below the %d this configuration needs (providers' "
            "max_connections plus clients); raise the hard limit (LimitNOFILE= in the "
            "systemd unit, or ulimit -Hn)",
            soft,
            limit.needed,
        )
    return limit
