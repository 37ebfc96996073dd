"""`altmount serve`: start the demo provider if asked, the engine, the import queue
(processor and watch folder) and the HTTP site.

With a real provider unreachable the server still starts: it logs one warning
per provider and serves what it can.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import STDLibLogObserver, globalLogBeginner

from altmount.backends import open_queue
from altmount.config import Config
from altmount.demo import DEMO_RELEASE, demo_provider, demo_release
from altmount.engine import Engine
from altmount.errors import ConfigError, DatabaseUnavailable, LinkError, ProviderAuthError
from altmount.links.service import LinkedTree, LinkService, link_service
from altmount.links.web import StrmResource
from altmount.nntp.probe import probe_provider
from altmount.ops import Ops
from altmount.oslimits import raise_open_files_limit
from altmount.queue import QueueService
from altmount.queue.watch import WatchFolder
from altmount.testing import nntpserver
from altmount.web.api import build_api_resources
from altmount.web.auth import Authenticator, exposure_problem
from altmount.web.metrics import MetricsResource
from altmount.web.opsapi import build_ops_routes
from altmount.web.sabnzbd import ensure_category_dirs
from altmount.web.session import SessionStore
from altmount.web.sessionshare import SharedSessions, open_shared_sessions
from altmount.web.site import build_site
from altmount.web.webdav import WebDAVResource
from altmount.workers import (
    PUBLISH_SECONDS,
    ProcessBoard,
    WorkerRole,
    board_dir,
    process_figures,
    reuseport_socket,
)

__all__ = ["Server", "route_twisted_logs"]

log = logging.getLogger(__name__)

#: How often a host sharing its metadata through PostgreSQL applies other hosts' changes
#: (a lookup that misses catches up at once as well).
REPLICA_POLL_SECONDS = 1.0


def route_twisted_logs() -> None:
    """Send Twisted's own log events to the standard logging handlers."""
    globalLogBeginner.beginLoggingTo(
        [STDLibLogObserver()], redirectStandardIO=False, discardBuffer=True
    )


class Server:
    """The running service: engine, queue, HTTP listener (plus the demo provider)."""

    def __init__(
        self,
        reactor,
        config: Config,
        config_path: str | None = None,
        *,
        role: WorkerRole | None = None,
    ) -> None:
        self.reactor = reactor
        self.config = config
        #: One of several serving processes (`serve --processes N`); None: the only one.
        self.role = role
        self._board: ProcessBoard | None = None
        self._loops: list[LoopingCall] = []
        self.config_path = config_path  #: re-read by POST /api/config/reload
        self.engine: Engine | None = None
        self.queue: QueueService | None = None
        self.ops: Ops | None = None
        self.watch: WatchFolder | None = None
        self.links: LinkService | None = None
        self.http_port = None
        self._demo_port = None
        self._demo_release = None
        self._probes: list[defer.Deferred] = []
        self._stopping = False
        self._sessions: SharedSessions | None = None

    @defer.inlineCallbacks
    def start(self):
        """Bring everything up; fires with the listening HTTP port."""
        problem = exposure_problem(self.config.webdav)
        if problem:
            raise ConfigError(problem)
        file_limit = raise_open_files_limit(self.config)
        providers = list(self.config.providers)
        primary = self.role is None or self.role.primary
        if self.role is not None and self.role.demo_port:
            # The supervisor serves the demo provider for every process.
            if primary:
                self._demo_release = demo_release(self.config.demo)
            providers.append(demo_provider(self.role.demo_port))
        elif self.config.demo.enabled:
            self._demo_release = demo_release(self.config.demo)
            self._demo_port, _ = nntpserver.listen(
                self.reactor, self._demo_release.articles, port=self.config.demo.port
            )
            port = self._demo_port.getHost().port
            providers.append(demo_provider(port))
            log.info("demo provider: serving a sample release on 127.0.0.1:%d", port)
        self.engine = Engine(self.reactor, dataclasses.replace(self.config, providers=providers))
        if hasattr(self.engine.store, "catch_up"):
            self._follow_shared_metadata()
        if self.config.sabnzbd.enabled:
            # Sonarr checks complete_dir + each category dir on the mount at once.
            ensure_category_dirs(self.engine.store, self.config)
        self.links = link_service(self.reactor, self.config, self.engine.store)
        if self.links is not None:
            try:  # at start, before anything listens: Sonarr checks them at once
                self.links.manager.ensure_category_folders()
            except LinkError as exc:
                log.error("import strategy %s: %s", self.config.import_.import_strategy, exc)
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
        store = open_queue(self.config)
        self.queue = QueueService(
            self.reactor,
            store,
            self.engine.importer,
            self.config,
            on_imported=self.links.write_import if self.links is not None else None,
        )
        if self.links is not None:
            self.queue.add_deleted_listener(self.links.item_deleted)
        recovered = (yield self.queue.recover()) if primary else 0
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
        self.ops.health.file_limit = file_limit
        # Logins are kept in the database: every process and instance knows them.
        self._sessions = open_shared_sessions(self.config)
        auth = Authenticator(
            self.config,
            lambda: self.queue.api_key(self.config.api.key_override or None),
            clock=self.reactor.seconds,
            sessions=SessionStore(time.time, shared=self._sessions),
        )
        yield auth.load_key()
        routes = build_ops_routes(self.config, self.engine, self.ops, self.queue, auth=auth)
        resources = build_api_resources(
            self.config, self.queue, self.engine, ops_routes=routes, auth=auth, links=self.links
        )
        resources[b"metrics"] = MetricsResource(self.ops, routes)
        tree = self.engine.store
        if self.links is not None:
            # STRM URLs authenticate by their token alone (altmount.links.web).
            webdav = WebDAVResource(
                self.engine.store, self.engine.cache, self.config.streaming, ops=self.ops
            )
            resources[b"strm"] = StrmResource(self.links, self.engine.store, webdav)
            tree = LinkedTree(self.engine.store, self.links)
        site = build_site(
            self.config,
            tree,
            self.engine.cache,
            extra_resources=resources,
            ops=self.ops,
            reactor=self.reactor,
            auth=auth,
        )
        self.http_port = self._listen(site)
        host = self.http_port.getHost()
        log.info("serving WebDAV on http://%s:%d/ (also under /webdav/)", host.host, host.port)
        if self.role is not None:
            self._join_processes()
        if not primary:  # the first process imports, watches and checks file health
            self.ops.start(file_checks=False)
            return self.http_port
        self.queue.add_settled_listener(self.ops.record_import)
        self.queue.start()
        self.ops.start()
        if self.config.import_.watch_dir:
            self.watch = WatchFolder(self.reactor, self.queue, self.config)
            self.watch.start()
        if self._demo_release is not None:
            yield self._import_demo()
        return self.http_port

    def _listen(self, site):
        webdav = self.config.webdav
        if self.role is None:
            return self.reactor.listenTCP(webdav.port, site, interface=webdav.bind_address)
        # Every serving process binds the shared port; the kernel spreads connections.
        sock = reuseport_socket(webdav.bind_address, self.role.port, listen=True)
        try:
            return self.reactor.adoptStreamPort(sock.fileno(), sock.family, site)
        finally:
            sock.close()  # the reactor holds its own duplicate of the descriptor

    def _join_processes(self) -> None:
        """Publish this process's figures for the others; stop if the supervisor dies."""
        self._board = ProcessBoard(board_dir(self.config.database.path), self.role, wall=time.time)
        self.ops.health.board = self._board
        publish = LoopingCall(lambda: self._board.publish(process_figures(self.ops)))
        parent = os.getppid()
        orphaned = LoopingCall(self._stop_if_orphaned, parent)
        for loop in (publish, orphaned):
            loop.clock = self.reactor
            loop.start(PUBLISH_SECONDS, now=True)
            self._loops.append(loop)

    def _follow_shared_metadata(self) -> None:
        """Apply the other hosts' metadata changes every REPLICA_POLL_SECONDS."""
        unreachable = False

        def catch_up() -> None:
            nonlocal unreachable
            try:
                self.engine.store.catch_up()
            except DatabaseUnavailable as exc:
                if not unreachable:
                    log.warning("metadata: %s; serving what this host has", exc)
                unreachable = True
                return
            if unreachable:
                log.warning("metadata: the shared database answers again")
            unreachable = False

        loop = LoopingCall(catch_up)
        loop.clock = self.reactor
        loop.start(REPLICA_POLL_SECONDS, now=False)
        self._loops.append(loop)

    def _stop_if_orphaned(self, parent: int) -> None:
        if os.getppid() != parent and not self._stopping:
            log.warning("serving process %d: the supervisor is gone; stopping", self.role.index)
            self.reactor.stop()

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

        pool = next((p for p in self.engine.pools if p.name == provider.name), None)
        give_back = pool.hold_slot() if pool is not None else None
        if pool is not None and give_back is None:
            log.info(
                "provider %s (%s:%d): other processes hold all %d connection slots; "
                "not probed at start",
                provider.name,
                provider.host,
                provider.port,
                provider.max_connections,
            )
            return defer.succeed(None)
        probe = probe_provider(self.reactor, provider, self.config.nntp).addCallbacks(ok, warn)
        if give_back is not None:  # the probe's own connection counts against the budget
            probe.addBoth(lambda result: (give_back(), result)[1])
        return probe

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
        for loop in self._loops:
            if loop.running:
                loop.stop()
        if self._board is not None:
            self._board.withdraw()
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
        if self.links is not None:
            yield self.links.stop()
        if self._sessions is not None:
            self._sessions.close()
        if self.engine is not None:
            yield self.engine.close()
        if self._demo_port is not None:
            yield self._demo_port.stopListening()
