"""SegmentFetcher: the shared download queue, decode, CRC retry and table checks."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
from twisted.internet.defer import CancelledError, Deferred, fail, succeed

from altmount.errors import ArticleNotFound, NoProvidersAvailable, StreamError, YencError
from altmount.metadata import SegmentTable
from altmount.nntp.protocol import ArticleBody
from altmount.stream.fetcher import SegmentFetcher
from altmount.testing.articles import post_release

PART = 1000
DATA = bytes(range(256)) * 15  # 3840 bytes: 4 parts, the last one short
RELEASE = post_release({"f.bin": DATA}, article_size=PART)
IDS = RELEASE.files[0].message_ids
TABLE = SegmentTable.uniform(IDS, PART, len(DATA))


class InlineReactor:
    """Runs callFromThread calls at once (the decode 'thread' is the caller)."""

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


class InlinePool:
    """A ThreadPool stand-in that runs the work synchronously."""

    def callInThreadWithCallback(self, on_result, f, *args, **kwargs):
        try:
            result = f(*args, **kwargs)
        except Exception as exc:
            on_result(False, exc)
        else:
            on_result(True, result)


class ManualRouter:
    """Hands out a Deferred per body_from() call; the test fires them."""

    def __init__(self, articles=RELEASE.articles):
        self.articles = articles
        self.calls: list[tuple[str, Deferred]] = []
        self.cancelled: list[str] = []

    def body_from(self, message_id, priority=0, exclude=frozenset()):
        d = Deferred(lambda _: self.cancelled.append(message_id))
        self.calls.append((message_id, d))
        return d

    def answer(self, position):
        message_id, d = self.calls[position]
        d.callback((self.articles[message_id], "manual"))


class InstantRouter:
    """Answers every body_from() at once from memory, as the one provider "instant"."""

    def __init__(self, articles=RELEASE.articles):
        self.articles = articles
        self.calls = 0

    def body_from(self, message_id, priority=0, exclude=frozenset()):
        if "instant" in exclude:
            return fail(NoProvidersAvailable(f"no NNTP provider left to ask for <{message_id}>"))
        self.calls += 1
        if message_id not in self.articles:
            return fail(ArticleNotFound(message_id))
        return succeed((self.articles[message_id], "instant"))


def make(router, workers=2, decode=None):
    return SegmentFetcher(InlineReactor(), router, InlinePool(), workers, decode=decode)


def real_decode(body):
    from altmount import _core

    return _core.decode_article(body)


def test_fetch_returns_decoded_segment():
    """Each segment decodes to its slice of the posted file."""
    fetcher = make(InstantRouter())
    for index in range(len(IDS)):
        result = []
        fetcher.fetch(TABLE, index, path="/f.bin").addCallback(result.append)
        assert bytes(result[0]) == DATA[index * PART : (index + 1) * PART]
    stats = fetcher.stats()
    assert stats.segments == 4 and stats.bytes_decoded == len(DATA)
    assert stats.bytes_fetched == sum(len(RELEASE.articles[i]) for i in IDS)
    assert stats.active == 0 and stats.queued == 0 and stats.failures == 0


def test_decode_gets_the_body_chunks():
    """A body that arrived in chunks reaches the decoder as those chunks, not joined."""
    body = RELEASE.articles[IDS[0]]
    chunks = (body[:100], body[100:])
    hooks = []

    def decode(arg):
        hooks.append(arg)
        return real_decode(arg)

    fetcher = make(InstantRouter({IDS[0]: ArticleBody(chunks)}), decode=decode)
    result = []
    fetcher.fetch(TABLE, 0).addCallback(result.append)
    assert len(hooks) == 1 and all(a is b for a, b in zip(hooks[0], chunks, strict=True))
    assert bytes(result[0]) == DATA[:PART]
    assert fetcher.stats().bytes_fetched == len(body)


class CountingPool(InlinePool):
    """An InlinePool that counts the decodes handed to it."""

    def __init__(self):
        self.calls = 0

    def callInThreadWithCallback(self, on_result, f, *args, **kwargs):
        self.calls += 1
        super().callInThreadWithCallback(on_result, f, *args, **kwargs)


def test_small_bodies_decode_inline_big_ones_in_the_pool():
    """Bodies up to `inline_max` bytes skip the pool; a bigger one is handed to it."""
    sizes = [len(RELEASE.articles[i]) for i in IDS]
    pool = CountingPool()
    fetcher = SegmentFetcher(
        InlineReactor(), InstantRouter(), pool, 2, inline_max=sorted(sizes)[-2]
    )
    results = [[] for _ in IDS]
    for index in range(len(IDS)):
        fetcher.fetch(TABLE, index).addCallback(results[index].append)
    assert b"".join(bytes(r[0]) for r in results) == DATA
    assert pool.calls == sizes.count(max(sizes)) < len(IDS)


def test_at_most_max_workers_download_at_once():
    """With 2 workers, 4 fetches run 2 at a time in FIFO order."""
    router = ManualRouter()
    fetcher = make(router, workers=2)
    results = [[] for _ in IDS]
    for index in range(len(IDS)):
        fetcher.fetch(TABLE, index).addCallback(results[index].append)
    assert [mid for mid, _ in router.calls] == list(IDS[:2])
    assert (fetcher.active, fetcher.queued) == (2, 2)
    router.answer(0)
    assert [mid for mid, _ in router.calls] == list(IDS[:3])
    assert (fetcher.active, fetcher.queued) == (2, 1)
    for position in (1, 2, 3):
        router.answer(position)
    assert (fetcher.active, fetcher.queued) == (0, 0)
    assert b"".join(bytes(r[0]) for r in results) == DATA


def test_cancelled_waiter_leaves_queue():
    """Cancelling a queued fetch removes it at once; its article is never asked for."""
    router = ManualRouter()
    fetcher = make(router, workers=1)
    first = fetcher.fetch(TABLE, 0)
    second = fetcher.fetch(TABLE, 1)
    assert fetcher.queued == 1
    second.cancel()
    assert fetcher.queued == 0
    failures = []
    second.addErrback(failures.append)
    assert failures[0].check(CancelledError)
    router.answer(0)
    assert first.called
    assert [mid for mid, _ in router.calls] == [IDS[0]]


def test_cancelled_download_frees_its_slot():
    """Cancelling an active fetch cancels the body request and lets the next one start."""
    router = ManualRouter()
    fetcher = make(router, workers=1)
    first = fetcher.fetch(TABLE, 0)
    fetcher.fetch(TABLE, 1)
    first.addErrback(lambda f: f.trap(CancelledError))
    first.cancel()
    assert router.cancelled == [IDS[0]]
    assert (fetcher.active, fetcher.queued) == (1, 0)
    assert router.calls[-1][0] == IDS[1]
    assert fetcher.stats().failures == 0


def flaky_decode(bad_times):
    """A decode that reports a CRC mismatch for the first `bad_times` calls."""
    state = {"left": bad_times}

    def decode(body):
        decoded = real_decode(body)
        if state["left"] > 0:
            state["left"] -= 1
            return SimpleNamespace(data=decoded.data, begin=decoded.begin, crc_ok=False)
        return decoded

    return decode


def test_crc_mismatch_is_refetched_once():
    """One bad CRC triggers one refetch; the good copy is returned."""
    router = InstantRouter()
    fetcher = make(router, decode=flaky_decode(1))
    result = []
    fetcher.fetch(TABLE, 2, path="/f.bin").addCallback(result.append)
    assert bytes(result[0]) == DATA[2 * PART : 3 * PART]
    assert router.calls == 2
    assert fetcher.stats().crc_retries == 1


def test_crc_mismatch_on_every_copy_serves_the_decoded_bytes():
    """With one provider, two bad CRCs serve the decoded bytes and tell the hook once."""
    router = InstantRouter()
    fetcher = make(router, decode=flaky_decode(2))
    told = []
    fetcher.on_crc_failure = lambda *args: told.append(args)
    segments = []
    fetcher.fetch_segment(TABLE, 1, path="/movies/f.bin").addCallback(segments.append)
    (segment,) = segments
    assert segment.data == DATA[PART : 2 * PART] and not segment.crc_ok
    assert (segment.begin, segment.end) == (PART, 2 * PART)
    assert told == [("/movies/f.bin", 1, IDS[1])]
    assert router.calls == 2
    stats = fetcher.stats()
    assert (stats.crc_retries, stats.crc_served, stats.failures) == (1, 1, 0)


def test_broken_yenc_on_every_copy_is_an_error():
    """Framing that cannot be decoded on every copy fails with the YencError, freeing the slot."""
    broken = {IDS[0]: b"no yEnc here\r\n"}
    fetcher = make(InstantRouter(broken), workers=1, decode=real_decode)
    failures = []
    fetcher.fetch(TABLE, 0, path="/f.bin").addErrback(failures.append)
    assert failures[0].check(YencError)
    assert fetcher.active == 0 and fetcher.stats().failures == 1


def test_wrong_part_begin_is_stream_error():
    """A segment whose yEnc begin differs from the table is refused, naming both."""
    table = dataclasses.replace(TABLE, part_begins=[0, 1000, 2001, 3000])
    failures = []
    make(InstantRouter()).fetch(table, 2, path="/f.bin").addErrback(failures.append)
    message = str(failures[0].value)
    assert isinstance(failures[0].value, StreamError)
    assert "segment 2" in message and "/f.bin" in message and "2001" in message


def test_short_segment_is_stream_error():
    """Decoded data shorter than skip + contribution is refused."""
    table = dataclasses.replace(TABLE, skips=[0, 0, 0, 1])
    failures = []
    make(InstantRouter()).fetch(table, 3, path="/f.bin").addErrback(failures.append)
    assert isinstance(failures[0].value, StreamError)
    assert "needs 841" in str(failures[0].value)


def test_router_errors_pass_through():
    """ArticleNotFound from the router reaches the caller unchanged and frees the slot."""
    router = InstantRouter(articles={})
    fetcher = make(router, workers=1)
    failures = []
    fetcher.fetch(TABLE, 0).addErrback(failures.append)
    assert failures[0].check(ArticleNotFound)
    assert fetcher.active == 0 and fetcher.stats().failures == 1


@pytest.mark.parametrize("workers", [1, 3])
def test_counters_return_to_zero_after_mixed_outcomes(workers):
    """After successes, failures and cancellations nothing is left active or queued."""
    router = ManualRouter()
    fetcher = make(router, workers=workers)
    fetches = [fetcher.fetch(TABLE, index % len(IDS)) for index in range(8)]
    for d in fetches:
        d.addErrback(lambda f: None)
    fetches[5].cancel()
    fetches[0].cancel()
    while any(not d.called for _, d in router.calls):
        position = next(i for i, (_, d) in enumerate(router.calls) if not d.called)
        router.answer(position)
    assert all(d.called for d in fetches)
    assert (fetcher.active, fetcher.queued) == (0, 0)


def test_corrupt_copy_is_refetched_from_another_provider():
    """A provider serving a corrupt copy is left out of the retry: the other one answers."""
    from altmount.config import NNTPConfig, ProviderConfig
    from altmount.nntp.pool import ProviderPool
    from altmount.nntp.router import ProviderRouter
    from altmount.nntp.stats import ProviderStats
    from altmount.testing.nntpserver import Faults, MemoryNetReactor, NNTPServerFactory

    network = MemoryNetReactor()
    servers = {
        "a": NNTPServerFactory(network, RELEASE.articles, Faults(corrupt_rate=1.0), seed=1),
        "b": NNTPServerFactory(network, RELEASE.articles, Faults(), seed=1),
    }
    pools = []
    for name, server in servers.items():
        network.servers[name] = server
        provider = ProviderConfig(name=name, host=name, tls=False, max_connections=1)
        pools.append(ProviderPool(network, provider, NNTPConfig(), ProviderStats(name)))
    fetcher = make(ProviderRouter(pools), decode=real_decode)
    result = []
    fetcher.fetch(TABLE, 2, path="/f.bin").addBoth(result.append)
    network.flush()
    assert bytes(result[0]) == DATA[2 * PART : 3 * PART]
    assert [servers[n].commands["BODY"] for n in ("a", "b")] == [1, 1]
    assert fetcher.stats().crc_retries == 1


def two_providers(faults_a, faults_b, articles=RELEASE.articles):
    """A router over two in-memory fake servers with the given faults (network, servers, router)."""
    from altmount.config import NNTPConfig, ProviderConfig
    from altmount.nntp.pool import ProviderPool
    from altmount.nntp.router import ProviderRouter
    from altmount.nntp.stats import ProviderStats
    from altmount.testing.nntpserver import MemoryNetReactor, NNTPServerFactory

    network = MemoryNetReactor()
    servers = {
        "a": NNTPServerFactory(network, articles, faults_a, seed=1),
        "b": NNTPServerFactory(network, articles, faults_b, seed=1),
    }
    pools = []
    for name, server in servers.items():
        network.servers[name] = server
        provider = ProviderConfig(name=name, host=name, tls=False, max_connections=1)
        pools.append(ProviderPool(network, provider, NNTPConfig(), ProviderStats(name)))
    return network, servers, ProviderRouter(pools)


def test_corrupt_everywhere_is_served_after_asking_each_provider_once():
    """Both providers corrupt the article: each is asked once, the decoded bytes are served."""
    from altmount.testing.nntpserver import Faults

    network, servers, router = two_providers(Faults(corrupt={IDS[2]}), Faults(corrupt={IDS[2]}))
    fetcher = make(router, decode=real_decode)
    segments = []
    fetcher.fetch_segment(TABLE, 2, path="/f.bin").addBoth(segments.append)
    network.flush()
    (segment,) = segments
    assert not segment.crc_ok and len(segment.data) == PART
    assert segment.data != DATA[2 * PART : 3 * PART]
    assert [servers[n].commands["BODY"] for n in ("a", "b")] == [1, 1]
    assert fetcher.stats().crc_served == 1


def test_corrupt_copy_and_missing_elsewhere_is_served():
    """A corrupt copy whose only other provider lacks the article is served, not failed."""
    from altmount.testing.nntpserver import Faults

    network, servers, router = two_providers(Faults(corrupt={IDS[0]}), Faults(missing={IDS[0]}))
    fetcher = make(router, decode=real_decode)
    segments = []
    fetcher.fetch_segment(TABLE, 0, path="/f.bin").addBoth(segments.append)
    network.flush()
    assert not segments[0].crc_ok
    assert [servers[n].commands["BODY"] for n in ("a", "b")] == [1, 1]
