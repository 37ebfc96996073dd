"""`altmount serve`: start the demo provider if asked, the engine, the import queue
(processor and watch folder) and the HTTP site.

With a real provider unreachable the server still starts: it logs one warning
per provider and serves what it can.
"""

from __future__ import annotations

import dataclasses
import logging

from twisted.internet import defer
from twisted.logger import STDLibLogObserver, globalLogBeginner

from altmount.config import Config
from altmount.demo import DEMO_RELEASE, demo_provider, demo_release
from altmount.engine import Engine
from altmount.errors import ProviderAuthError
from altmount.nntp.probe import probe_provider
from altmount.ops import Ops
from altmount.queue import QueueService, QueueStore
from altmount.queue.watch import WatchFolder
from altmount.testing import nntpserver
from altmount.web.api import build_api_resources
from altmount.web.metrics import MetricsResource
from altmount.web.opsapi import build_ops_routes
from altmount.web.sabnzbd import ensure_category_dirs
from altmount.web.site import build_site

__all__ = ["Server", "route_twisted_logs"]

log = logging.getLogger(__name__)


def route_twisted_logs() -> None:
    """Send Twisted's own log events to the standard logging handlers."""
    globalLogBeginner.beginLoggingTo(
        [STDLibLogObserver()], redirectStandardIO=False, discardBuffer=True
    )


class Server:
    """The running service: engine, queue, HTTP listener (plus the demo provider)."""

    def __init__(self, reactor, config: Config, config_path: str | None = None) -> None:
        self.reactor = reactor
        self.config = config
        self.config_path = config_path  #: re-read by POST /api/config/reload
        self.engine: Engine | None = None
        self.queue: QueueService | None = None
        self.ops: Ops | None = None
        self.watch: WatchFolder | None = None
        self.http_port = None
        self._demo_port = None
        self._demo_release = None
        self._probes: list[defer.Deferred] = []
        self._stopping = False

    @defer.inlineCallbacks
    def start(self):
        """Bring everything up; fires with the listening HTTP port."""
        providers = list(self.config.providers)
        if self.config.demo.enabled:
            self._demo_release = demo_release(self.config.demo)
            self._demo_port, _ = nntpserver.listen(
                self.reactor, self._demo_release.articles, port=self.config.demo.port
            )
            port = self._demo_port.getHost().port
            providers.append(demo_provider(port))
            log.info("demo provider: serving a sample release on 127.0.0.1:%d", port)
        self.engine = Engine(self.reactor, dataclasses.replace(self.config, providers=providers))
        if self.config.sabnzbd.enabled:
            # Sonarr checks complete_dir + each category dir on the mount at once.
            ensure_category_dirs(self.engine.store, self.config)
        # Probes use a fresh connection each; running them before the HTTP port and the
        # queue open means no pooled traffic exists yet, so a probe can never push a
        # provider past max_connections. A refused or unresolvable host answers at once;
        # only a black-holed one costs up to nntp.connect_timeout_seconds of start-up.
        for provider in self.config.providers:
            if provider.enabled and provider.tls and provider.insecure_tls:
                log.warning(
                    "provider %s (%s:%d): insecure_tls is set, its TLS certificate is not "
                    "verified (anyone on the path can read and change the traffic)",
                    provider.name, provider.host, provider.port,
                )
        self._probes = [self._probe(p) for p in self.config.providers if p.enabled]
        yield self.probed
        store = QueueStore(self.config.database.path, max_attempts=self.config.import_.max_attempts)
        self.queue = QueueService(self.reactor, store, self.engine.importer, self.config)
        recovered = yield self.queue.recover()
        if recovered:
            log.warning(
                "queue: %d item(s) were being imported when altmount last stopped; "
                "they are queued again",
                recovered,
            )
        self.ops = Ops(
            self.reactor, self.config, self.engine, self.queue, config_path=self.config_path
        )
        self.engine.fetcher.on_crc_failure = self.ops.record_crc_failure
        routes = build_ops_routes(
            self.config,
            self.engine,
            self.ops,
            self.queue,
            api_key_provider=lambda: self.queue.api_key(self.config.api.key_override or None),
        )
        resources = build_api_resources(self.config, self.queue, self.engine, ops_routes=routes)
        resources[b"metrics"] = MetricsResource(self.ops, routes)
        site = build_site(
            self.config,
            self.engine.store,
            self.engine.cache,
            extra_resources=resources,
            ops=self.ops,
            reactor=self.reactor,
        )
        self.http_port = self.reactor.listenTCP(
            self.config.webdav.port, site, interface=self.config.webdav.bind_address
        )
        host = self.http_port.getHost()
        log.info("serving WebDAV on http://%s:%d/ (also under /webdav/)", host.host, host.port)
        self.queue.add_settled_listener(self.ops.record_import)
        self.queue.start()
        self.ops.start()
        if self.config.import_.watch_dir:
            self.watch = WatchFolder(self.reactor, self.queue, self.config)
            self.watch.start()
        if self._demo_release is not None:
            yield self._import_demo()
        return self.http_port

    @property
    def probed(self) -> defer.Deferred:
        """Fires once every startup provider probe has answered, failed or been cancelled."""
        return defer.DeferredList(self._probes, consumeErrors=True).addCallback(lambda _: None)

    def _probe(self, provider) -> defer.Deferred:
        def warn(failure):
            if self._stopping:
                return  # cancelled by stop(): not a finding about the provider
            if failure.check(ProviderAuthError):
                # Credentials (or a refused TLS certificate, ProviderTLSError) will not get
                # better by retrying: disable the provider now; the pool logs the one
                # warning, naming the provider and the 481 or the certificate's fault.
                for pool in self.engine.pools:
                    if pool.name == provider.name:
                        pool.disable(failure.value)
                return
            log.warning(
                "provider %s (%s:%d) is not usable now: %s; starting anyway, "
                "serving what other providers have",
                provider.name,
                provider.host,
                provider.port,
                failure.getErrorMessage(),
            )

        def ok(rtt_ms):
            log.info(
                "provider %s (%s:%d) reachable, %.0f ms round trip",
                provider.name,
                provider.host,
                provider.port,
                rtt_ms,
            )

        return probe_provider(self.reactor, provider, self.config.nntp).addCallbacks(ok, warn)

    @defer.inlineCallbacks
    def _import_demo(self):
        try:
            result = yield self.engine.importer.import_nzb(
                self._demo_release.nzb, f"{DEMO_RELEASE}.nzb", category="Default"
            )
        except Exception:
            log.exception("demo release could not be imported")
            return
        for record in result.files:
            log.info("demo file ready: %s (%d bytes)", record.path, record.size)

    @defer.inlineCallbacks
    def stop(self):
        """Stop listening, abandon unfinished provider probes, stop the watch folder and
        the queue (running imports finish first) and close the engine."""
        self._stopping = True
        for probe in self._probes:
            probe.cancel()
        yield self.probed
        if self.http_port is not None:
            yield self.http_port.stopListening()
        if self.watch is not None:
            yield self.watch.stop()
        if self.ops is not None:
            yield self.ops.stop()  # before the queue: it reads queue statistics
        if self.queue is not None:
            yield self.queue.stop()
        if self.engine is not None:
            yield self.engine.close()
        if self._demo_port is not None:
            yield self._demo_port.stopListening()
