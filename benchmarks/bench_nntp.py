"""Benchmark: body() through one ProviderPool (8 connections) from the fake server in
another process over loopback; reports articles/s, MB/s and client CPU s per GiB."""
import random
import subprocess
import sys
import time

ARTICLES = int(sys.argv[1]) if len(sys.argv) > 1 else 300
DEPTH = int(sys.argv[2]) if len(sys.argv) > 2 else 4
WINDOW = 64
SERVER = r'''
import random, sys
from twisted.internet import reactor
from altmount.testing.articles import post_release
from altmount.testing.nntpserver import listen
n = int(sys.argv[1])
release = post_release({"f.bin": random.Random(1).randbytes(716_800) * n})
port, _ = listen(reactor, release.articles)
print(port.getHost().port, flush=True)
reactor.run()
'''


def main():
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(ARTICLES)],
                              stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline())
    from twisted.internet import defer, reactor

    from altmount.config import NNTPConfig, ProviderConfig
    from altmount.nntp.pool import ProviderPool
    from altmount.nntp.stats import ProviderStats
    from altmount.testing.articles import post_release

    release = post_release({"f.bin": random.Random(1).randbytes(716_800) * ARTICLES})
    ids = list(release.articles)
    provider = ProviderConfig(name="bench", host="127.0.0.1", port=port, tls=False,
                              max_connections=8, inflight_requests=DEPTH)
    pool = ProviderPool(reactor, provider, NNTPConfig(), ProviderStats("bench", reactor.seconds))
    result = {}

    @defer.inlineCallbacks
    def run():
        # warm up: open all 8 connections
        yield defer.gatherResults([pool.body(m) for m in ids[:16]])
        total = 0
        wall, cpu = time.perf_counter(), time.process_time()
        pending = iter(ids)
        sem = defer.DeferredSemaphore(WINDOW)

        def one(m):
            return pool.body(m)

        bodies = yield defer.gatherResults([sem.run(one, m) for m in pending])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        total = sum(map(len, bodies))
        assert all(b == release.articles[m] for b, m in zip(bodies, ids, strict=True)), "mismatch"
        result.update(wall=wall, cpu=cpu, total=total)
        yield pool.close()
        reactor.stop()

    reactor.callWhenRunning(run)
    reactor.run()
    server.terminate()
    gib = result["total"] / 2**30
    print(f"{ARTICLES} articles, depth {DEPTH}: {ARTICLES / result['wall']:.0f} articles/s, "
          f"{result['total'] / result['wall'] / 1e6:.0f} MB/s, client CPU {result['cpu']:.2f} s "
          f"= {result['cpu'] / gib:.2f} CPU s/GiB ({result['cpu'] / result['wall'] * 100:.0f}% of a core)")


if __name__ == "__main__":
    main()
