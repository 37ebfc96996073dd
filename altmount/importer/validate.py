"""Validation: STAT a sample of every exposed file's articles, all at once.

`import.segment_sample_percentage` of each file's segments, spread evenly over
it, always its first and last (read by the probe already, so not asked again).
The sample stage sends the STATs of every posted file right after parsing, so
they travel with the probe's BODY requests instead of a round trip later; the
validate stage then reads the answers for the files actually exposed (and asks
for any other article a later stage put in a segment table). It fails as soon
as the missing articles exceed `import.acceptable_missing_segments_percentage`
of the sample, naming them.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from altmount.errors import ImportFailed
from altmount.importer.pipeline import ImportJob, StatChecker
from altmount.importer.probe import quote_ids

__all__ = ["SampleStage", "StatSample", "ValidateStage", "sample_indices"]


def sample_indices(count: int, percentage: float) -> list[int]:
    """Indices of `percentage` % of `count` segments, evenly spread, first and last included."""
    if count <= 0:
        return []
    wanted = min(count, max(min(count, 2), math.ceil(count * percentage / 100)))
    if wanted == 1:
        return [0]
    step = (count - 1) / (wanted - 1)
    return sorted({round(i * step) for i in range(wanted)})


class StatSample:
    """STATs sent early; their answers are kept until the validate stage reads them."""

    def __init__(self, stat: StatChecker, message_ids: list[str]) -> None:
        self._answers: dict[str, bool | Failure] = {}
        self._waiting: dict[str, list[defer.Deferred[bool]]] = {}
        self._requests: list[defer.Deferred[bool]] = []
        for mid in message_ids:
            if mid in self._waiting:
                continue
            self._waiting[mid] = []
            self._requests.append(stat(mid).addBoth(self._answered, mid))

    def answer(self, message_id: str) -> defer.Deferred[bool] | None:
        """The STAT answer for `message_id`, or None when it was not asked."""
        if message_id in self._answers:
            known = self._answers[message_id]
            return defer.fail(known) if isinstance(known, Failure) else defer.succeed(known)
        waiters = self._waiting.get(message_id)
        if waiters is None:
            return None
        waiter: defer.Deferred[bool] = defer.Deferred()
        waiters.append(waiter)
        return waiter

    def cancel(self) -> None:
        """Withdraw the STATs not answered yet (the import failed: nobody will read them)."""
        for request in self._requests:
            request.cancel()

    def _answered(self, result: Any, message_id: str) -> None:
        self._answers[message_id] = result
        for waiter in self._waiting.pop(message_id, []):
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)


class SampleStage:
    """Sends the sample's STATs for every posted file without waiting for them."""

    name = "sample"

    def __init__(self, stat: StatChecker, sample_percentage: float) -> None:
        self._stat = stat
        self._sample = sample_percentage

    def run(self, job: ImportJob) -> ImportJob:
        """The job with its StatSample (first and last articles are the probe's)."""
        assert job.nzb is not None
        ids = []
        for nzb_file in job.nzb.files:
            segments = nzb_file.segments
            ids += [
                segments[i].message_id for i in sample_indices(len(segments), self._sample)[1:-1]
            ]
        return replace(job, stats=StatSample(self._stat, ids))


class ValidateStage:
    """Fails the import when a sample of the exposed files' articles shows them gone."""

    name = "validate"

    def __init__(
        self, stat: StatChecker, sample_percentage: float, acceptable_missing_percentage: float
    ) -> None:
        self._stat = stat
        self._sample = sample_percentage
        self._acceptable = acceptable_missing_percentage

    def run(self, job: ImportJob) -> ImportJob | defer.Deferred[ImportJob]:
        """The job unchanged, or ImportFailed naming the missing message-ids."""
        sampled: dict[str, str] = {}  # message-id -> file it belongs to, in order
        for candidate in job.candidates:
            ids = candidate.table.message_ids
            for i in sample_indices(len(ids), self._sample):
                sampled.setdefault(ids[i], candidate.name)
        missing = [(mid, lost.label) for lost in job.lost if lost.counts for mid in lost.missing]
        total = len(sampled) + len(missing)
        to_ask = [mid for mid in sampled if mid not in job.verified]
        check = _Tally(job, total, missing, self._acceptable, len(to_ask))
        if check.exceeded():
            return defer.fail(check.error())
        if not to_ask:
            return check.finish()
        for mid in to_ask:
            early = job.stats.answer(mid) if job.stats is not None else None
            request = early if early is not None else self._stat(mid)
            request.addCallbacks(check.answered, check.failed, callbackArgs=(mid, sampled[mid]))
        return check.done


class _Tally:
    """Counts STAT answers; fires `done` once all are in or the limit is passed."""

    def __init__(
        self,
        job: ImportJob,
        total: int,
        missing: list[tuple[str, str]],
        acceptable: float,
        waiting: int,
    ) -> None:
        self.job = job
        self.total = total
        self.missing = list(missing)
        self.acceptable = acceptable
        self.waiting = waiting
        self.done: defer.Deferred[ImportJob] = defer.Deferred()

    def exceeded(self) -> bool:
        """True when the missing share of the sample passed the accepted percentage."""
        return len(self.missing) * 100 > self.acceptable * self.total

    def error(self) -> ImportFailed:
        """The failure naming the missing message-ids and their files."""
        ids = [mid for mid, _ in self.missing]
        files = sorted({label for _, label in self.missing})
        return ImportFailed(
            f"{len(self.missing)} of {self.total} sampled articles are missing on every "
            f"provider, more than import.acceptable_missing_segments_percentage "
            f"({self.acceptable:g}%) allows: {quote_ids(ids)} in {', '.join(files[:3])}"
            + (f" and {len(files) - 3} more file(s)" if len(files) > 3 else "")
        )

    def answered(self, present: bool, message_id: str, label: str) -> None:
        """One STAT answer: count it, fail at once past the limit."""
        if self.done.called:
            return
        if not present:
            self.missing.append((message_id, label))
            if self.exceeded():
                self.done.errback(self.error())
                return
        self.waiting -= 1
        if self.waiting == 0:
            self.finish()

    def failed(self, failure: Failure) -> None:
        """A STAT that could not be answered at all."""
        # A provider that cannot answer is not a missing article: the import
        # fails with that (transient) error and the queue tries again later.
        if not self.done.called:
            self.done.errback(failure)

    def finish(self) -> defer.Deferred[ImportJob]:
        """Fire `done` with the job, noting tolerated missing articles as a warning."""
        if self.missing:
            ids = [mid for mid, _ in self.missing]
            self.job = self.job.warn(
                f"{len(ids)} of {self.total} sampled articles are missing "
                f"({quote_ids(ids)}), within the accepted share"
            )
        self.done.callback(self.job)
        return self.done
