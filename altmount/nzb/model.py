"""The parsed form of an NZB file: immutable values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["NZBSegment", "NZBFile", "NZB"]


@dataclass(frozen=True, slots=True)
class NZBSegment:
    """One article of a posted file.

    `bytes` is the article size the NZB announces (encoded, approximate);
    `message_id` has no angle brackets.
    """

    number: int
    bytes: int
    message_id: str


@dataclass(frozen=True, slots=True)
class NZBFile:
    """One posted file: its header attributes and its segments sorted by number.

    `filename` is the name found in the subject ("" if none); the real name
    comes later from the yEnc header of the first article.
    """

    subject: str
    poster: str
    date: int
    groups: tuple[str, ...]
    segments: tuple[NZBSegment, ...]
    filename: str

    @property
    def total_bytes(self) -> int:
        """Sum of the announced article sizes."""
        return sum(segment.bytes for segment in self.segments)


@dataclass(frozen=True, slots=True)
class NZB:
    """A whole NZB: its files in document order and its `<head>` metadata.

    `meta` maps a `<meta type="...">` to its values in document order.
    """

    files: tuple[NZBFile, ...]
    meta: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)

    @property
    def password(self) -> str | None:
        """The first `<meta type="password">` value, if any."""
        return self._first_meta("password")

    @property
    def name(self) -> str | None:
        """The first `<meta type="name">` value, if any."""
        return self._first_meta("name")

    def _first_meta(self, kind: str) -> str | None:
        values = self.meta.get(kind)
        return values[0] if values else None
