"""Fetch an NZB from a URL for SABnzbd `mode=addurl`, without becoming an SSRF proxy.

Only http and https. The host is resolved first and every address it resolves to
is checked (every address that is not globally routable, by `ipaddress` and a few
tunnel prefixes, is refused unless `sabnzbd.addurl_allow_private`); the connection then
goes to the checked address itself, so a second DNS answer cannot swap it for
another. Redirects are followed by hand (at most `MAX_REDIRECTS`), each target
checked the same way. The body is capped while it arrives and the whole fetch,
redirects included, has one time limit.
"""

from __future__ import annotations

import ipaddress
import posixpath
import socket
from collections.abc import Callable
from email.message import Message
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.web.client import URI, Agent, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgentEndpointFactory
from zope.interface import implementer

from altmount.errors import RequestError

__all__ = ["MAX_REDIRECTS", "Download", "NZBDownloader", "forbidden_reason", "system_resolver"]

MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = b"altmount (SABnzbd-compatible addurl)"
#: The reason a body protocol is told when a response ended normally.
_DONE = Failure(ResponseDone())

#: Resolves (host, port) to the IP address strings it stands for.
Resolver = Callable[[str, int], defer.Deferred]


class Download:
    """An NZB fetched from a URL: its bytes and the file name the server gave it."""

    __slots__ = ("data", "filename")

    def __init__(self, data: bytes, filename: str) -> None:
        self.data = data
        self.filename = filename


#: Networks that are not globally reachable, or that tunnel to an address nobody checks,
#: although Python 3.11's `is_global` passes them.
_NOT_GLOBAL: tuple[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network], ...] = (
    ("6to4", ipaddress.IPv6Network("2002::/16")),
    ("6to4 relay", ipaddress.IPv4Network("192.88.99.0/24")),
    ("NAT64", ipaddress.IPv6Network("64:ff9b::/96")),
    ("NAT64", ipaddress.IPv6Network("64:ff9b:1::/48")),
    ("IETF protocol", ipaddress.IPv4Network("192.0.0.0/24")),
)


def forbidden_reason(address: str) -> str | None:
    """Why `address` must not be fetched from by default ("loopback", ...), or None:
    anything not globally routable is refused, shared address space (100.64.0.0/10,
    CGNAT and Tailscale) and tunnels such as 6to4 included."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for reason, flag in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if flag:
            return reason
    for reason, network in _NOT_GLOBAL:
        if ip.version == network.version and ip in network:
            return reason
    if not ip.is_global:
        return "shared (not globally routable)"
    return None


def system_resolver(reactor: Any) -> Resolver:
    """A Resolver using the system's getaddrinfo in the reactor's thread pool."""

    def lookup(host: str, port: int) -> list[str]:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    def resolve(host: str, port: int) -> defer.Deferred:
        return deferToThreadPool(reactor, reactor.getThreadPool(), lookup, host, port)

    return resolve


@implementer(IAgentEndpointFactory)
class _PinnedEndpoints:
    """Endpoints to one already-checked address, whatever host the URI names (TLS still
    verifies the certificate against that host name)."""

    def __init__(self, reactor: Any, address: str, timeout: float) -> None:
        self._reactor = reactor
        self._address = address
        self._timeout = timeout

    def endpointForURI(self, uri: URI) -> Any:
        version = ipaddress.ip_address(self._address).version
        kind = TCP6ClientEndpoint if version == 6 else TCP4ClientEndpoint
        endpoint = kind(self._reactor, self._address, uri.port, timeout=self._timeout)
        if uri.scheme == b"https":
            endpoint = wrapClientTLS(optionsForClientTLS(uri.host.decode("idna")), endpoint)
        return endpoint


class _CappedBody(Protocol):
    """Collects a response body, failing as soon as it passes `limit` bytes."""

    def __init__(self, finished: defer.Deferred, limit: int, url: str) -> None:
        self._finished = finished
        self._limit = limit
        self._url = url
        self._chunks: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:
        if self._finished.called:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._finished.errback(
                RequestError(
                    f"{self._url}: larger than the {self._limit >> 20} MB addurl limit", 413
                )
            )
            self.transport.stopProducing()
            return
        self._chunks.append(data)

    def connectionLost(self, reason: Failure = _DONE) -> None:
        if self._finished.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self._finished.callback(b"".join(self._chunks))
        else:
            self._finished.errback(
                RequestError(f"{self._url}: download interrupted: {reason.getErrorMessage()}", 502)
            )


class _Discard(Protocol):
    """Drops a body that is not wanted (a redirect's, a refused one) and the connection."""

    def makeConnection(self, transport: Any) -> None:
        super().makeConnection(transport)
        transport.stopProducing()

    def connectionLost(self, reason: Failure = _DONE) -> None:
        """Nothing to report: the body was not wanted."""


class NZBDownloader:
    """Downloads NZBs for addurl under the size, time, scheme and address rules."""

    def __init__(
        self,
        reactor: Any,
        *,
        max_bytes: int,
        timeout: float,
        allow_private: bool,
        resolve: Resolver | None = None,
        forbidden: Callable[[str], str | None] = forbidden_reason,
    ) -> None:
        self._reactor = reactor
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._allow_private = allow_private
        self._resolve = resolve or system_resolver(reactor)
        self._forbidden = forbidden

    def fetch(self, url: str) -> defer.Deferred:
        """Fires with a Download, or fails with RequestError saying what was refused or broke."""
        fetching = self._fetch(url)
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            fetching.cancel()

        timer = self._reactor.callLater(self._timeout, expire)

        def done(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            # Cancelling surfaces as whatever the step under way raises (CancelledError,
            # ConnectingCancelledError while connecting, ...): the timer says why.
            if isinstance(result, Failure) and expired:
                return Failure(
                    RequestError(f"{url}: no complete answer within {self._timeout:g} s", 504)
                )
            return result

        return fetching.addBoth(done)

    @defer.inlineCallbacks
    def _fetch(self, url: str):
        for _ in range(MAX_REDIRECTS + 1):
            host, port = _check_url(url)
            address = yield self._checked_address(url, host, port)
            agent = Agent.usingEndpointFactory(
                self._reactor, _PinnedEndpoints(self._reactor, address, self._timeout)
            )
            headers = Headers({b"User-Agent": [_USER_AGENT], b"Accept": [b"*/*"]})
            response = yield agent.request(b"GET", url.encode("ascii"), headers)
            if response.code in _REDIRECTS:
                location = response.headers.getRawHeaders(b"location", [b""])[0]
                response.deliverBody(_Discard())
                if not location:
                    raise RequestError(f"{url}: redirect without a Location", 502)
                url = urljoin(url, location.decode("latin-1"))
                continue
            if response.code != 200:
                response.deliverBody(_Discard())
                raise RequestError(f"{url}: the server answered HTTP {response.code}", 502)
            if response.length is not UNKNOWN_LENGTH and response.length > self._max_bytes:
                response.deliverBody(_Discard())
                raise RequestError(
                    f"{url}: larger than the {self._max_bytes >> 20} MB addurl limit", 413
                )
            body = yield self._read(response, url)
            return Download(body, _filename(response, url))
        raise RequestError(f"{url}: more than {MAX_REDIRECTS} redirects", 502)

    @defer.inlineCallbacks
    def _checked_address(self, url: str, host: str, port: int):
        try:
            addresses = yield self._resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise RequestError(f"{url}: cannot resolve {host}: {exc}", 502) from None
        if not addresses:
            raise RequestError(f"{url}: {host} has no address", 502)
        if not self._allow_private:
            for address in addresses:
                reason = self._forbidden(address)
                if reason is not None:
                    raise RequestError(
                        f"{url}: {host} resolves to {reason} address {address}; addurl "
                        "refuses those unless sabnzbd.addurl_allow_private is set",
                        403,
                    )
        return addresses[0]

    def _read(self, response: Any, url: str) -> defer.Deferred:
        holder: list[_CappedBody] = []

        def cancel(_: defer.Deferred) -> None:
            if holder and holder[0].transport is not None:
                holder[0].transport.stopProducing()

        finished: defer.Deferred = defer.Deferred(cancel)
        protocol = _CappedBody(finished, self._max_bytes, url)
        holder.append(protocol)
        response.deliverBody(protocol)
        return finished


def _check_url(url: str) -> tuple[str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RequestError(f"{url!r} is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise RequestError(f"{url!r}: only http and https URLs can be added")
    if not parts.hostname:
        raise RequestError(f"{url!r}: the URL has no host")
    if not url.isascii():
        raise RequestError(f"{url!r}: the URL must be ASCII (percent-encode it)")
    return parts.hostname, port or (443 if scheme == "https" else 80)


def _filename(response: Any, url: str) -> str:
    disposition = response.headers.getRawHeaders(b"content-disposition", [b""])[0]
    if disposition:
        message = Message()
        message["content-disposition"] = disposition.decode("latin-1")
        name = message.get_filename()
        if name:
            return posixpath.basename(name.replace("\\", "/")) or "download.nzb"
    path_name = posixpath.basename(unquote(urlsplit(url).path))
    return path_name or "download.nzb"
