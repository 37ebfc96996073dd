"""NNTP: the sans-IO response parser, pipelined Twisted clients, per-provider pools, failover."""

from altmount.nntp.client import NNTPClientProtocol, connect
from altmount.nntp.pool import ProviderPool
from altmount.nntp.protocol import NNTPStatus, Response, ResponseParser
from altmount.nntp.router import ProviderRouter
from altmount.nntp.stats import ProviderStats

__all__ = [
    "NNTPClientProtocol",
    "NNTPStatus",
    "ProviderPool",
    "ProviderRouter",
    "ProviderStats",
    "Response",
    "ResponseParser",
    "connect",
]
