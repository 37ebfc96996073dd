"""Failed credentials counted per client address, scheme and credential (see altmount.web.auth).

No I/O: the clock is passed in, credentials arrive as fingerprints.
"""

from __future__ import annotations

import functools
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "MAX_FAILED_LOGINS",
    "MAX_DISTINCT_FAILURES",
    "LOGIN_WINDOW_SECONDS",
    "KNOWN_GOOD_SECONDS",
    "LoginLimiter",
    "client_key",
]

#: Tries of one wrong credential from one address within LOGIN_WINDOW_SECONDS.
MAX_FAILED_LOGINS = 10
#: Different wrong credentials one address may try within the window (guessing).
MAX_DISTINCT_FAILURES = 10
LOGIN_WINDOW_SECONDS = 60.0
#: How long a credential that worked from an address stays exempt from its blocks.
KNOWN_GOOD_SECONDS = 24 * 3600.0
#: Addresses tracked at once; past this the least recently seen are forgotten, so a
#: flood of addresses costs bounded memory.
MAX_TRACKED_CLIENTS = 10_000
#: Per address and scheme: wrong credentials remembered, good ones remembered.
_MAX_WRONG_PER_CLIENT = 64
_MAX_GOOD_PER_CLIENT = 16


@functools.lru_cache(maxsize=4096)  # parsing an address is most of a credential check's cost
def client_key(host: str) -> str:
    """The rate-limit key of a client address: the address, or its /64 for IPv6.

    One IPv6 host usually owns a whole /64, so counting per address would let it
    rotate through 2**64 of them.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return host


@dataclass(slots=True)
class _Client:
    """One address and scheme: when each wrong credential failed, when good ones worked."""

    wrong: OrderedDict[bytes, list[float]] = field(default_factory=OrderedDict)
    good: OrderedDict[bytes, float] = field(default_factory=OrderedDict)


class LoginLimiter:
    """Failed credentials per (address, scheme, credential) in a sliding window; `clock()`
    is now. Credentials are identified by fingerprints, never kept."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_failures: int = MAX_FAILED_LOGINS,
        max_distinct: int = MAX_DISTINCT_FAILURES,
        window: float = LOGIN_WINDOW_SECONDS,
        max_clients: int = MAX_TRACKED_CLIENTS,
    ) -> None:
        self._clock = clock
        self._max_failures = max_failures
        self._max_distinct = max_distinct
        self._window = window
        self._max_clients = max_clients
        self._clients: OrderedDict[tuple[str, str], _Client] = OrderedDict()

    def __len__(self) -> int:
        return len(self._clients)

    def _client(self, key: tuple[str, str]) -> _Client:
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = _Client()
            while len(self._clients) > self._max_clients:
                self._clients.popitem(last=False)
        self._clients.move_to_end(key)
        return client

    def failed(self, address: str, scheme: str, credential: bytes) -> None:
        """Record one failure of `credential` (a fingerprint) from `address`."""
        client = self._client((address, scheme))
        times = client.wrong.pop(credential, [])
        times = times[-(self._max_failures - 1) :] if self._max_failures > 1 else []
        times.append(self._clock())
        client.wrong[credential] = times
        while len(client.wrong) > _MAX_WRONG_PER_CLIENT:
            client.wrong.popitem(last=False)

    def succeeded(self, address: str, scheme: str, credential: bytes) -> None:
        """Record that `credential` worked from `address`: its blocks no longer apply."""
        known = self._clients.get((address, scheme))
        if known is not None and not known.wrong:
            worked = known.good.get(credential)
            if worked is not None and worked > self._clock() - self._window:
                return  # recorded within the window already: nothing to change
        client = self._client((address, scheme))
        client.wrong.pop(credential, None)
        client.good.pop(credential, None)
        client.good[credential] = self._clock()
        while len(client.good) > _MAX_GOOD_PER_CLIENT:
            client.good.popitem(last=False)

    def retry_after(self, address: str, scheme: str, credential: bytes) -> float:
        """Seconds before `credential` from `address` is checked again; 0 to check it now."""
        client = self._clients.get((address, scheme))
        if client is None or not client.wrong:
            return 0.0
        now = self._clock()
        horizon = now - self._window
        for key in [k for k, times in client.wrong.items() if times[-1] <= horizon]:
            del client.wrong[key]
        worked = client.good.get(credential)
        if worked is not None and worked > now - KNOWN_GOOD_SECONDS:
            return 0.0
        wait = 0.0
        times = [t for t in client.wrong.get(credential, ()) if t > horizon]
        if len(times) >= self._max_failures:
            wait = times[0] + self._window - now
        latest = sorted(t[-1] for t in client.wrong.values())
        if len(latest) >= self._max_distinct:
            wait = max(wait, latest[len(latest) - self._max_distinct] + self._window - now)
        return max(0.0, wait)
