"""The archive stage's article cache: each article fetched once while cached, memory bounded."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from twisted.internet import defer

from altmount.archive.articles import Articles
from altmount.errors import ArticleNotFound


class Fetches:
    """A fetch function answering at once with 10 bytes per article, counting calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.later: dict[str, defer.Deferred] = {}

    def __call__(self, message_id: str) -> defer.Deferred:
        self.calls.append(message_id)
        if message_id.startswith("missing"):
            return defer.fail(ArticleNotFound(message_id))
        if message_id.startswith("slow"):
            self.later[message_id] = defer.Deferred()
            return self.later[message_id]
        return defer.succeed(SimpleNamespace(data=message_id.encode().ljust(10, b".")))


def result(deferred: defer.Deferred):
    box: list = []
    deferred.addBoth(box.append)
    return box[0]


def test_each_article_is_fetched_once_while_cached() -> None:
    """Asking twice, or while the first fetch is in flight, costs one fetch."""
    fetch = Fetches()
    articles = Articles(fetch)
    first, second = articles.get("slow1"), articles.get("slow1")
    fetch.later["slow1"].callback(SimpleNamespace(data=b"x" * 10))
    assert result(first) == result(second) == b"x" * 10
    assert result(articles.get("slow1")) == b"x" * 10
    assert fetch.calls == ["slow1"] and articles.read == {"slow1"}


def test_the_cache_is_bounded_and_drops_the_least_recently_used() -> None:
    """Past the budget the oldest article goes; asking for it again fetches it again."""
    fetch = Fetches()
    articles = Articles(fetch, budget=25)
    for message_id in ("a", "b"):
        result(articles.get(message_id))
    result(articles.get("a"))  # a is now the most recently used
    result(articles.get("c"))
    assert articles.held <= 25
    assert fetch.calls == ["a", "b", "c"]
    result(articles.get("a"))
    assert fetch.calls == ["a", "b", "c"]
    result(articles.get("b"))
    assert fetch.calls == ["a", "b", "c", "b"]
    assert articles.read == {"a", "b", "c"}


def test_failures_are_remembered_without_counting_as_bytes() -> None:
    """A missing article fails every asker, once fetched, and holds no budget."""
    fetch = Fetches()
    articles = Articles(fetch, budget=25)
    for _ in range(2):
        with pytest.raises(ArticleNotFound):
            result(articles.get("missing1")).raiseException()
    assert fetch.calls == ["missing1"] and articles.held == 0 and not articles.read


def test_articles_an_earlier_stage_decoded_are_not_fetched_again() -> None:
    """The probe's first and last articles start the cache: asking for them costs nothing."""
    fetch = Fetches()
    articles = Articles(fetch, {"first": b"f" * 10, "last": b"l" * 5})
    assert result(articles.get("first")) == b"f" * 10
    assert result(articles.get("last")) == b"l" * 5
    assert fetch.calls == [] and articles.held == 15
    assert articles.read == {"first", "last"}
    result(articles.get("other"))
    assert fetch.calls == ["other"]
