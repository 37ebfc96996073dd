"""Background file health checks: STAT a sample of each file's segments, now and then.

`check_file` STATs the first and last segment and a random `segment_sample_percentage`
of the rest through the provider router, pipelined, at most
`max_connections_for_health_checks` × PIPELINE_DEPTH requests at once and at a low
priority (streams come first). It stops as soon as more segments are missing than
`acceptable_missing_segments_percentage` of the sample allows: the file is corrupted
and the other answers would not change that. A provider failure (not a 430) makes the
check inconclusive: the status stays, the error is recorded, it is retried soon.

`HealthScheduler` walks the metadata store to find files, checks those due
(`files_per_cycle` per round, every `check_interval_seconds`) and schedules the next
check after an interval that grows with the file's age.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections.abc import Callable, Iterator
from typing import Any

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from altmount.config import HealthConfig
from altmount.errors import NNTPError
from altmount.nntp.schedule import BACKGROUND_PRIORITY
from altmount.ops.healthstore import MAX_RECORDED_MISSING, FileHealth, HealthStore, file_id

__all__ = [
    "HealthScheduler",
    "check_file",
    "sample_indices",
    "next_interval",
    "HEALTH_PRIORITY",
    "PIPELINE_DEPTH",
    "DISCOVERY_BATCH",
]

log = logging.getLogger(__name__)

#: Pool priority of health STATs: background work, after streams, imports and probes.
HEALTH_PRIORITY = BACKGROUND_PRIORITY + 5
#: STATs in flight per connection health checks may use.
PIPELINE_DEPTH = 4
#: Metadata records looked at per round when discovering new and removed files.
DISCOVERY_BATCH = 1000
#: An inconclusive check (providers unreachable) is retried after this many seconds.
RETRY_SECONDS = 600.0


def sample_indices(count: int, percentage: float, rng: random.Random) -> list[int]:
    """Segment indices to STAT: first, last and `percentage` % of all, sorted, distinct."""
    if count <= 0:
        return []
    wanted = max(min(count, 2), math.ceil(count * percentage / 100))
    chosen = {0, count - 1}
    middle = range(1, count - 1)
    extra = min(len(middle), wanted - len(chosen))
    if extra > 0:
        chosen.update(rng.sample(middle, extra))
    return sorted(chosen)


def next_interval(age_seconds: float, config: HealthConfig) -> float:
    """Seconds until the next check: the file's age, kept within the configured bounds."""
    low = config.min_recheck_interval_hours * 3600
    high = config.max_recheck_interval_hours * 3600
    return min(high, max(low, age_seconds))


def classify(missing: int, sampled: int, acceptable_percentage: float) -> str:
    """healthy (none missing), degraded (within tolerance) or corrupted."""
    if missing == 0:
        return "healthy"
    return "degraded" if missing <= sampled * acceptable_percentage / 100 else "corrupted"


@defer.inlineCallbacks
def check_file(
    router: Any, record: Any, config: HealthConfig, rng: random.Random, now: float
) -> Any:
    """STAT a sample of `record`'s segments; fires with a FileHealth (next_check unset).

    `router` has `stat(message_id, priority) -> Deferred[bool]`. Never fails: a
    provider error yields the record's old status with `error` set (inconclusive).
    """
    ids = record.segments.message_ids
    indices = sample_indices(len(ids), config.segment_sample_percentage, rng)
    allowed = math.floor(len(indices) * config.acceptable_missing_segments_percentage / 100)
    limit = defer.DeferredSemaphore(config.max_connections_for_health_checks * PIPELINE_DEPTH)
    missing: list[str] = []
    errors: list[str] = []
    requests: list[defer.Deferred] = []
    verdict: defer.Deferred = defer.Deferred()

    def answered(found: bool, message_id: str) -> None:
        if not found:
            missing.append(message_id)
            if len(missing) > allowed and not verdict.called:
                verdict.callback(None)  # known bad: stop asking

    def failed(failure: Any) -> None:
        if failure.check(defer.CancelledError):
            return
        if not failure.check(NNTPError):
            log.error("health check of %s: %s", record.path, failure.getErrorMessage())
        errors.append(failure.getErrorMessage())

    for index in indices:
        if verdict.called:
            break  # answers already came back and settled it
        stat = limit.run(router.stat, ids[index], HEALTH_PRIORITY)
        stat.addCallbacks(answered, failed, callbackArgs=(ids[index],))
        requests.append(stat)
    everything = defer.DeferredList(requests, consumeErrors=True)
    everything.addCallback(lambda _: None if verdict.called else verdict.callback(None))
    try:
        yield verdict
    finally:
        for request in requests:
            request.cancel()
    kept = tuple(missing[:MAX_RECORDED_MISSING])
    if errors and len(missing) <= allowed:
        return FileHealth(
            record.path,
            "unchecked",
            now,
            0.0,
            len(ids),
            len(indices),
            len(missing),
            kept,
            errors[-1],
        )
    status = classify(len(missing), len(indices), config.acceptable_missing_segments_percentage)
    return FileHealth(record.path, status, now, 0.0, len(ids), len(indices), len(missing), kept)


class HealthScheduler:
    """Finds files, checks those due, records results; keeps the set of corrupted paths.

    `metadata` is the MetadataStore, `router` the provider router, `store` a
    HealthStore; `clock` returns epoch seconds (file ages are measured against
    record mtimes).
    """

    def __init__(
        self,
        reactor: Any,
        config: HealthConfig,
        metadata: Any,
        router: Any,
        store: HealthStore,
        *,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._reactor = reactor
        self.config = config
        self._metadata = metadata
        self._router = router
        self.store = store
        self._clock = clock or reactor.seconds
        self._rng = rng or random.Random()
        self._loop: LoopingCall | None = None
        self._round: defer.Deferred | None = None
        self._walk: Iterator[Any] | None = None
        self._seen: set[str] = set()
        self._running: dict[str, defer.Deferred] = {}
        #: Paths known corrupted: hidden from WebDAV listings.
        self.corrupted: set[str] = {h.path for h in store.all() if h.status == "corrupted"}
        self.checks_total = 0
        #: Called with each recorded check (the repair loop picks corrupted files up).
        self.on_result: Callable[[FileHealth], None] | None = None

    # -- life cycle ------------------------------------------------------------

    def start(self) -> None:
        """Run a round now and then every `check_interval_seconds` (if enabled)."""
        if not self.config.enabled or self._loop is not None:
            return
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self._reactor
        self._loop.start(self.config.check_interval_seconds, now=True)

    def pause(self) -> None:
        """Stop scheduling rounds (checks under way finish); `start()` resumes."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    @defer.inlineCallbacks
    def stop(self):
        """Stop scheduling; cancel checks under way; fires when all have ended."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        for check in list(self._running.values()):
            check.cancel()
        running_round = self._round
        if running_round is not None:
            yield defer.DeferredList([running_round], consumeErrors=True)

    # -- API -------------------------------------------------------------------

    def mark_for_recheck(self, path: str, reason: str) -> None:
        """Make `path` due now (a stream met a missing article) and run a round soon."""
        health = self.store.get(path) or FileHealth(path)
        self.store.put(_replace(health, next_check=0.0))
        log.warning("health: %s marked for re-check: %s", path, reason)
        if self._loop is not None and self._round is None:
            self._reactor.callLater(0, self._tick)

    def find(self, path_or_id: str) -> FileHealth | None:
        """The record of a path or of a file id."""
        if path_or_id.startswith("/"):
            return self.store.get(path_or_id)
        return next((h for h in self.store.all() if h.id == path_or_id), None)

    def check_now(self, path: str) -> defer.Deferred:
        """Check `path` at once; fires with its new FileHealth, or None if no such file."""
        if path in self._running:
            return _follow(self._running[path])
        record = self._metadata.get_file(path)
        if record is None:
            self.store.delete(path)
            self.corrupted.discard(path)
            return defer.succeed(None)
        running = check_file(self._router, record, self.config, self._rng, self._clock())
        running.addCallback(self._record, record)
        follower = _follow(running)
        if not running.called:
            self._running[path] = running
            running.addBoth(self._done_running, path)
        return follower

    # -- internals ---------------------------------------------------------------

    def _done_running(self, result: Any, path: str) -> Any:
        self._running.pop(path, None)
        return result

    def _record(self, health: FileHealth, record: Any) -> FileHealth:
        now = self._clock()
        if health.error:
            old = self.store.get(record.path)
            health = _replace(
                health, status=old.status if old else "unchecked", next_check=now + RETRY_SECONDS
            )
        elif health.status == "corrupted":
            health = _replace(
                health, next_check=now + self.config.max_recheck_interval_hours * 3600
            )
        else:
            health = _replace(
                health, next_check=now + next_interval(now - record.mtime, self.config)
            )
        old = self.store.get(record.path)
        if old is not None and old.damage:
            # A sampled check rarely hits what a stream found: keep it until a repair.
            status = "corrupted" if health.status == "corrupted" else "degraded"
            health = _replace(health, damage=old.damage, status=status)
        if old is not None:
            health = _replace(
                health,
                repair_state=old.repair_state,
                repair_detail=old.repair_detail,
                repair_at=old.repair_at,
                repair_attempts=old.repair_attempts,
            )
        self.store.put(health)
        if self.on_result is not None:
            self.on_result(health)
        self.checks_total += 1
        if health.status == "corrupted":
            if record.path not in self.corrupted:
                log.error(
                    "health: %s corrupted: %d of %d sampled segments missing (e.g. <%s>)",
                    record.path,
                    health.missing_count,
                    health.sampled,
                    health.missing[0],
                )
            self.corrupted.add(record.path)
        elif not health.error:
            self.corrupted.discard(record.path)
        log.info(
            "health: file=%s id=%s status=%s sampled=%d missing=%d%s",
            record.path,
            file_id(record.path),
            health.status,
            health.sampled,
            health.missing_count,
            f" error={health.error}" if health.error else "",
        )
        return health

    def _tick(self) -> defer.Deferred | None:
        if self._round is not None:
            return None  # the previous round is still checking
        self._round = defer.ensureDeferred(self._run_round())
        self._round.addErrback(lambda f: log.error("health round failed: %s", f.getErrorMessage()))

        def over(_: Any) -> None:
            self._round = None

        self._round.addBoth(over)
        return None

    async def _run_round(self) -> None:
        self._discover(self._clock())
        for health in self.store.due(self._clock(), self.config.files_per_cycle):
            if self._loop is None:
                return
            try:
                await self.check_now(health.path)
            except defer.CancelledError:
                return

    def _discover(self, now: float) -> None:
        """Look at the next DISCOVERY_BATCH files: add new ones, prune records of gone ones."""
        if self._walk is None:
            self._walk = self._metadata.walk_files()
            self._seen = set()
        for _ in range(DISCOVERY_BATCH):
            record = next(self._walk, None)
            if record is None:
                self._prune()
                self._walk = None
                return
            self._seen.add(record.path)
            if record.status == "corrupted":
                self.corrupted.add(record.path)
            if self.store.get(record.path) is None:
                self.store.put(FileHealth(record.path, next_check=now))

    def _prune(self) -> None:
        for health in list(self.store.all()):
            if health.path not in self._seen:
                self.store.delete(health.path)
                self.corrupted.discard(health.path)


def _replace(health: FileHealth, **changes: Any) -> FileHealth:
    return dataclasses.replace(health, **changes)


def _follow(running: defer.Deferred) -> defer.Deferred:
    """A Deferred with `running`'s outcome; cancelling it leaves `running` alone."""
    follower: defer.Deferred = defer.Deferred()

    def relay(result: Any) -> Any:
        if not follower.called:
            if isinstance(result, Failure):
                follower.errback(result)
            else:
                follower.callback(result)
        return None if isinstance(result, Failure) else result

    running.addBoth(relay)
    return follower
