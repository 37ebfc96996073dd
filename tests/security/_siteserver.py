"""A child process serving the real site on 127.0.0.1 for the raw-socket attack tests.

`python _siteserver.py STORE_DIR IDLE_TIMEOUT` builds `build_site` over a metadata
store holding one small file (its articles served from memory) and the SABnzbd
and upload `/api` resources over a queue in STORE_DIR, listens on an ephemeral
port and prints it. Auth is on: user `usenet`, password `secret`, API key KEY.
"""

from __future__ import annotations

import logging
import sys

FILE_PATH = "/complete/movies/film.mkv"
FILE_DATA = bytes(range(256)) * 1000
KEY = "0123456789abcdef0123456789abcdef"
USER, PASSWORD = "usenet", "secret"
#: Seconds a request body may take; connections one address may hold.
BODY_TIMEOUT = 3.0
MAX_PER_ADDRESS = 20


def main(store_dir: str, idle_timeout: float) -> None:
    """Build and run the site; log records go to stderr (the tests read them)."""
    from twisted.internet import defer, reactor
    from twisted.python.threadpool import ThreadPool

    from altmount.config import (
        APIConfig,
        Config,
        DatabaseConfig,
        SABnzbdConfig,
        StreamingConfig,
        WebDAVConfig,
    )
    from altmount.metadata import FileRecord, MetadataStore, SegmentTable
    from altmount.queue import QueueService, QueueStore
    from altmount.server import route_twisted_logs
    from altmount.stream.fetcher import SegmentFetcher
    from altmount.testing.articles import post_release
    from altmount.web.api import build_api_resources
    from altmount.web.site import build_site

    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG, format="%(name)s %(message)s")
    route_twisted_logs()

    class Router:
        def __init__(self, articles: dict[str, bytes]) -> None:
            self.articles = articles

        def body_from(self, message_id, priority=0, exclude=frozenset()):
            return defer.succeed((self.articles[message_id], "memory"))

    release = post_release({"film.mkv": FILE_DATA}, article_size=64_000, salt="sec")
    posted = release.files[0]
    store = MetadataStore(f"{store_dir}/meta", map_size=16 << 20)
    table = SegmentTable.uniform(posted.message_ids, 64_000, len(FILE_DATA))
    store.put_files([FileRecord(FILE_PATH, len(FILE_DATA), 1_700_000_000.0, "ok", table, "r")])
    pool = ThreadPool(minthreads=1, maxthreads=2, name="decode")
    pool.start()
    reactor.addSystemEventTrigger("during", "shutdown", pool.stop)
    fetcher = SegmentFetcher(reactor, Router(release.articles), pool, 4)
    config = Config(
        webdav=WebDAVConfig(
            user=USER,
            password=PASSWORD,
            bind_address="127.0.0.1",
            debug=True,
            body_timeout_seconds=BODY_TIMEOUT,
            max_connections_per_address=MAX_PER_ADDRESS,
        ),
        api=APIConfig(key_override=KEY),
        database=DatabaseConfig(path=f"{store_dir}/altmount.db"),
        sabnzbd=SABnzbdConfig(enabled=True),
        streaming=StreamingConfig(
            max_range_size=1 << 20, streaming_chunk_size=1 << 20, max_download_workers=4
        ),
    )
    queue = QueueService(reactor, QueueStore(config.database.path), None, config)

    class Engine:
        pass

    engine = Engine()
    engine.reactor = reactor
    site = build_site(
        config,
        store,
        fetcher,
        extra_resources=build_api_resources(config, queue, engine),
        reactor=reactor,
        idle_timeout=idle_timeout,
    )
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    print(port.getHost().port, flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
