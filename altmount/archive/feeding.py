"""The want/feed protocol of the sans-IO archive readers (RAR volumes, 7z headers, disc images).

A reader asks for one byte range at a time (`want`); the caller fetches the
articles covering it and `feed`s their bytes back, contiguous from any offset at
or before the one asked. Whole articles usually hold more than was asked, so a
reader keeps what it was given and may find its next structure there too.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from altmount.errors import ArchiveError

__all__ = ["Feeder"]


class Feeder(ABC):
    """A reader of `size` bytes, named `label` in errors, fed the ranges it asks for.

    A subclass sets `_want` to the next (offset, byte count), or None once it has
    all it needs, and reads what is fed in `_take`.
    """

    def __init__(self, label: str, size: int) -> None:
        self.label = label
        self.size = size
        self._want: tuple[int, int] | None = None

    @property
    def done(self) -> bool:
        """True once the reader needs no more bytes."""
        return self._want is None

    def want(self) -> tuple[int, int] | None:
        """(offset, byte count) to `feed` next, or None when done."""
        return self._want

    def feed(self, start: int, data: bytes) -> None:
        """Bytes from offset `start` on; they must cover what `want()` asked for.

        A range running past `size` may come back short: there are no bytes there.
        """
        wanted = self._want
        if wanted is None:
            return
        offset, size = wanted
        if not start <= offset or start + len(data) < min(offset + size, self.size):
            raise ArchiveError(
                f"{self.label}: bytes {offset}-{offset + size} were asked, "
                f"{start}-{start + len(data)} given"
            )
        self._take(start, data)

    @abstractmethod
    def _take(self, start: int, data: bytes) -> None:
        """Read fed bytes (from offset `start` on, covering `_want`) and set the next `_want`."""
