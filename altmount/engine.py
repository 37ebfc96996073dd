"""The engine: the long-lived objects that live in the reactor, built from a Config.

One place wires the metadata store, the provider pools and router, the decode
pool, the segment fetcher and the importer, so `serve`, `import` and the
benchmarks assemble exactly the same thing. `engine.pool` chooses where stream
decodes run: `thread` (bodies over `INLINE_DECODE_MAX` in the decode thread pool,
where sabyenc3 releases the GIL; smaller ones on the reactor thread), `inline` (all
on the reactor thread) or `process` (worker processes fed through shared memory,
`altmount.engine_process`). The thread pool exists in every mode: imports parse
NZBs and decode in it.
"""

from __future__ import annotations

import logging
import os

from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from altmount import _core
from altmount.backends import open_metadata, provider_budget
from altmount.config import Config, ProviderConfig
from altmount.engine_process import ProcessDecodePool
from altmount.importer import DirectImporter
from altmount.nntp.pool import ProviderPool
from altmount.nntp.protocol import MAX_BODY_SIZE, ArticleBody, body_chunks
from altmount.nntp.router import ProviderRouter
from altmount.nntp.schedule import IMPORT_PRIORITY
from altmount.nntp.stats import ProviderStats
from altmount.stream.cache import DiskTier, SegmentCache
from altmount.stream.fetcher import SegmentFetcher
from altmount.stream.memory import MemoryBudget, RamTier

__all__ = ["INLINE_DECODE_MAX", "Engine"]

log = logging.getLogger(__name__)

#: With `engine.pool: thread`, stream bodies up to this size are decoded on the reactor
#: thread all the same: a SIMD decode of a 716,800-byte part (~0.1 ms) costs less than
#: handing it to a pool thread and back (~0.25 ms of process CPU per article, GIL
#: hand-overs included; benchmarks/RESULTS.md). Bigger bodies go to the pool, so that no
#: single decode holds the reactor for long.
INLINE_DECODE_MAX = 2 * 1024 * 1024
#: The largest body each pool decodes on the reactor thread (`process`: none).
INLINE_MAX_BY_POOL = {"thread": INLINE_DECODE_MAX, "inline": MAX_BODY_SIZE}


class Engine:
    """Store, providers, decode pool, fetcher, segment cache and importer for one process.

    Streams read through `cache` (RAM tier, shared in-flight fetches, disk tier, then
    `fetcher`); `memory` is the one budget of every stream's window and the RAM tier.
    """

    def __init__(
        self, reactor, config: Config, providers: list[ProviderConfig] | None = None
    ) -> None:
        self.reactor = reactor
        self.config = config
        self.store = open_metadata(config)
        workers = config.engine.decode_workers or os.cpu_count() or 2
        self.decode_pool = ThreadPool(minthreads=1, maxthreads=workers, name="altmount-decode")
        self.decode_pool.start()
        self.process_pool: ProcessDecodePool | None = None
        if config.engine.pool == "process":
            self.process_pool = ProcessDecodePool(reactor, workers)
            self.process_pool.start()
        enabled = [p for p in (config.providers if providers is None else providers) if p.enabled]
        # Every process using this database shares each provider's max_connections.
        self.pools = [
            ProviderPool(
                reactor,
                provider,
                config.nntp,
                ProviderStats(name=provider.name),
                provider_budget(config, provider, reactor.seconds),
            )
            for provider in enabled
        ]
        self.router = ProviderRouter(self.pools)
        self.fetcher = SegmentFetcher(
            reactor,
            self.router,
            self.decode_pool,
            config.streaming.max_download_workers,
            run_decode=self._stream_decoder(),
            inline_max=INLINE_MAX_BY_POOL.get(config.engine.pool, 0),
        )
        self.memory = MemoryBudget(config.streaming.memory_budget_mb << 20)
        self.io_pool: ThreadPool | None = None
        self.cache = SegmentCache(
            self.fetcher,
            RamTier(config.segment_cache.memory_mb << 20, self.memory),
            self._disk_tier(config),
            clock=reactor,
        )
        self.importer = DirectImporter(
            self.fetch_article,
            self.stat_for_import,
            self.store,
            config,
            run_in_thread=self.run_in_thread,
        )
        log.info(
            "yEnc/range kernels: %s implementation; %d decode %s(s); %d provider(s)",
            _core.IMPLEMENTATION,
            workers,
            config.engine.pool,
            len(self.pools),
        )

    def _disk_tier(self, config: Config) -> DiskTier | None:
        """The cache's disk tier (started: it scans what an earlier run left), or None."""
        cache = config.segment_cache
        if not cache.enabled:
            return None
        # Two threads: a read (a few hundred microseconds) never waits long behind a write.
        self.io_pool = ThreadPool(minthreads=0, maxthreads=2, name="altmount-cache-io")
        self.io_pool.start()
        pool = self.io_pool
        disk = DiskTier(
            self.reactor,
            cache.cache_path or os.path.join(config.metadata.root_path, "segment-cache"),
            lambda fn, *args: deferToThreadPool(self.reactor, pool, fn, *args),
            max_bytes=int(cache.max_size_gb * 1e9),
            expiry_seconds=cache.expiry_hours * 3600,
            min_free=int(cache.min_free_gb * 1e9),
        )
        disk.start()
        return disk

    def _stream_decoder(self):
        """The fetcher's decode hook for the process pool (None for the other pools)."""
        process_pool = self.process_pool
        if process_pool is None:
            return None
        # The process pool copies one buffer into shared memory: it gets the chunks joined.
        return lambda chunks: process_pool.decode(b"".join(chunks))

    def decode(self, body: ArticleBody | bytes) -> defer.Deferred:
        """Decode one article body in the decode pool; fires with a DecodedArticle
        whose `data` is bytes (importers keep and slice it)."""
        if self.process_pool is not None:
            return self.process_pool.decode(bytes(body), copy=True)
        return deferToThreadPool(
            self.reactor, self.decode_pool, _core.decode_article, body_chunks(body)
        )

    def fetch_article(self, message_id: str) -> defer.Deferred:
        """Fetch and decode one article at import priority; fires with its DecodedArticle.
        The article goes into the segment cache too: a media server probes the first
        and last articles of a new file, the ones an import fetches."""
        return (
            self.router.body(message_id, IMPORT_PRIORITY)
            .addCallback(self.decode)
            .addCallback(self._keep, message_id)
        )

    def stat_for_import(self, message_id: str) -> defer.Deferred:
        """STAT one article for an import's sample: after stream reads (nntp/schedule.py)."""
        return self.router.stat(message_id, IMPORT_PRIORITY)

    def count_streams(self, streams) -> None:
        """Tell every provider pool how many streams are open (`streams()`): while any
        is, imports and health checks leave connections free for them."""
        for pool in self.pools:
            pool.count_streams(streams)

    def _keep(self, decoded, message_id: str):
        self.cache.keep(message_id, decoded.data, decoded.begin, decoded.crc_ok)
        return decoded

    def run_in_thread(self, fn, *args) -> defer.Deferred:
        """Run CPU-heavy import work (parsing a big NZB) in the decode pool."""
        return deferToThreadPool(self.reactor, self.decode_pool, fn, *args)

    @defer.inlineCallbacks
    def close(self):
        """Close provider connections, stop the decode pools and close the store."""
        try:
            yield self.router.close()
        finally:
            if self.cache.disk is not None:
                self.cache.disk.stop()
            if self.io_pool is not None:
                self.io_pool.stop()
            self.decode_pool.stop()
            if self.process_pool is not None:
                self.process_pool.stop()
            self.store.close()
