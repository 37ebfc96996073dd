"""Check at startup that a provider answers: connect, log in, DATE, QUIT."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from altmount.config import NNTPConfig, ProviderConfig
from altmount.nntp.client import NNTPClientProtocol, connect

__all__ = ["probe_provider"]


@defer.inlineCallbacks
def probe_provider(reactor: Any, provider: ProviderConfig, nntp: NNTPConfig) -> Any:
    """Open one connection and time a DATE round trip; fires with it in milliseconds.

    Fails with the NNTPError of whatever went wrong (unreachable, 481, timeout),
    whose message names the provider.
    """
    conn: NNTPClientProtocol = yield connect(reactor, provider, nntp)
    try:
        yield conn.date()
        return conn.last_rtt_ms
    finally:
        yield conn.quit()
