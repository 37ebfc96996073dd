"""Which provider to ask for an article, and whom to ask next when it is not there.

Primary providers share the load: each request goes first to the enabled primary with
the lowest load (queued plus in-flight requests per pipeline slot), then, on a 430 or
a connection-level failure, to the other primaries by load, then to the backups in
configuration order. Only when every provider asked said 430 is the article missing.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from altmount.errors import ArticleNotFound, NNTPError, NoProvidersAvailable
from altmount.nntp.pool import ProviderPool

__all__ = ["ProviderRouter"]


class ProviderRouter:
    """Every configured provider behind one `body`/`stat` interface."""

    def __init__(self, pools: Sequence[ProviderPool]) -> None:
        self._pools = tuple(pools)

    @property
    def providers(self) -> tuple[ProviderPool, ...]:
        """The pools in configuration order (for the API and /metrics)."""
        return self._pools

    def body(
        self, message_id: str, priority: int = 0, exclude: Collection[str] = ()
    ) -> defer.Deferred[bytes]:
        """The dot-stuffed body from the first provider that has it.

        `exclude` names providers not to ask (e.g. the one whose copy failed its CRC).
        Fails with ArticleNotFound when every provider asked answered 430, with the
        last provider's error when some failed otherwise, and with
        NoProvidersAvailable when there is nobody to ask.
        """
        return self._ask("body", message_id, priority, exclude)

    def body_from(
        self, message_id: str, priority: int = 0, exclude: Collection[str] = ()
    ) -> defer.Deferred[tuple[bytes, str]]:
        """`body`, with the name of the provider that answered (to exclude it when its
        copy turns out corrupt)."""
        return self._ask("body_from", message_id, priority, exclude)

    def stat(self, message_id: str, priority: int = 0) -> defer.Deferred[bool]:
        """True if any provider has the article; False only if every one said 430."""
        return self._ask("stat", message_id, priority, ())

    def close(self) -> defer.Deferred[None]:
        """Close every pool."""
        closing = [pool.close() for pool in self._pools]
        return defer.DeferredList(closing).addCallback(lambda _: None)

    def _candidates(self, exclude: Collection[str]) -> list[ProviderPool]:
        usable = [p for p in self._pools if p.enabled and p.name not in exclude]
        # sorted() is stable: equally loaded primaries keep configuration order.
        primaries = sorted((p for p in usable if not p.is_backup), key=lambda p: p.load)
        ordered = primaries + [p for p in usable if p.is_backup]
        # A provider refusing connections goes last: waiting out its backoff would cost
        # every request connect + request timeout before the failover.
        return [p for p in ordered if p.reachable] + [p for p in ordered if not p.reachable]

    def _ask(
        self, kind: str, message_id: str, priority: int, exclude: Collection[str]
    ) -> defer.Deferred[Any]:
        candidates = self._candidates(exclude)
        if not candidates:
            return defer.fail(self._nobody(message_id, exclude))
        return self._try(kind, message_id, priority, candidates, 0, [])

    def _try(
        self,
        kind: str,
        message_id: str,
        priority: int,
        candidates: list[ProviderPool],
        index: int,
        errors: list[NNTPError],
    ) -> defer.Deferred[Any]:
        pool = candidates[index]
        more = index + 1 < len(candidates)

        def next_or_give_up() -> Any:
            if more:
                return self._try(kind, message_id, priority, candidates, index + 1, errors)
            failures = [e for e in errors if not isinstance(e, ArticleNotFound)]
            if failures:  # someone could not answer: the article may exist after all
                raise failures[-1]
            if kind == "stat":
                return False
            raise ArticleNotFound(message_id)

        def answered(result: Any) -> Any:
            if kind == "stat" and result is False:
                errors.append(ArticleNotFound(message_id))
                return next_or_give_up()
            return (result, pool.name) if kind == "body_from" else result

        def failed(failure: Failure) -> Any:
            if not isinstance(failure.value, NNTPError):
                return failure
            errors.append(failure.value)
            return next_or_give_up()

        request = (
            pool.stat(message_id, priority) if kind == "stat" else pool.body(message_id, priority)
        )
        return request.addCallbacks(answered, failed)

    def _nobody(self, message_id: str, exclude: Collection[str]) -> NoProvidersAvailable:
        reasons = [
            f"{p.name}: {'excluded' if p.name in exclude else p.disabled_reason or 'closed'}"
            for p in self._pools
        ]
        detail = "; ".join(reasons) if reasons else "none configured"
        return NoProvidersAvailable(f"no NNTP provider left to ask for <{message_id}> ({detail})")
