"""An LMDB environment whose map grows on demand, up to `metadata.map_size_mb`.

The map starts small (`INITIAL_MAP_SIZE`, or the size of the data file already
there) and doubles whenever a write finds it full, until the configured limit; then
the write fails with a `MetadataError` that names `metadata.map_size_mb`. A write is
a function of its transaction, so a full map aborts it and it runs again, whole, in
the larger map. Another process that grew the map is followed on the next
transaction (LMDB's "map resized"). The map is only resized while no transaction
of this process is open (LMDB requires it), which a counter of open ones ensures.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import lmdb

from altmount.errors import MetadataError

__all__ = ["INITIAL_MAP_SIZE", "GrowingMap", "LIMIT_KEY"]

#: The map of a new environment; a metadata store of a few hundred releases fits.
INITIAL_MAP_SIZE = 64 << 20
#: A resize waits this long for this process's open transactions to end.
RESIZE_WAIT_SECONDS = 30.0
#: The configuration key that bounds every map.
LIMIT_KEY = "metadata.map_size_mb"

T = TypeVar("T")


class GrowingMap:
    """One LMDB environment (`env`) with growing writes (`write`) and reads (`read`).

    `what` names the store in messages ("metadata store /var/lib/altmount/metadata").
    """

    def __init__(
        self,
        path: Path,
        what: str,
        *,
        limit: int,
        readonly: bool = False,
        initial: int = INITIAL_MAP_SIZE,
        **options: Any,
    ) -> None:
        self.what = what
        self.limit = limit
        # A data file larger than the request keeps its size (LMDB maps at least it).
        self.env = lmdb.open(str(path), map_size=min(initial, limit), readonly=readonly, **options)
        self._open = 0
        self._idle = threading.Condition()

    @property
    def map_size(self) -> int:
        """The bytes mapped now."""
        return int(self.env.info()["map_size"])

    @contextmanager
    def _txn(self, write: bool) -> Iterator[lmdb.Transaction]:
        """A transaction, counted as open until it ends."""
        while True:
            with self._idle:
                self._open += 1
            try:
                txn = self.env.begin(write=write)
            except lmdb.MapResizedError:
                self._leave()
                self._resize(0)  # another process grew the map: follow it
                continue
            except BaseException:
                self._leave()
                raise
            break
        try:
            with txn:
                yield txn
        finally:
            self._leave()

    def _leave(self) -> None:
        with self._idle:
            self._open -= 1
            if not self._open:
                self._idle.notify_all()

    def _resize(self, size: int) -> None:
        """Map `size` bytes (0: what another process set) once no transaction is open."""
        with self._idle:
            if not self._idle.wait_for(lambda: not self._open, RESIZE_WAIT_SECONDS):
                raise MetadataError(
                    f"{self.what}: cannot grow the store while reads stay open for "
                    f"{RESIZE_WAIT_SECONDS:.0f} s"
                )
            self.env.set_mapsize(size)

    @contextmanager
    def read(self) -> Iterator[lmdb.Transaction]:
        """A read transaction; MetadataError on an LMDB failure."""
        try:
            with self._txn(write=False) as txn:
                yield txn
        except lmdb.Error as exc:
            raise MetadataError(f"{self.what}: read failed: {exc}") from None

    def write(self, body: Callable[[lmdb.Transaction], T]) -> T:
        """Run `body` in a write transaction and commit; when the map is full, grow it
        and run `body` again; MetadataError naming LIMIT_KEY when it cannot grow."""
        while True:
            try:
                with self._txn(write=True) as txn:
                    return body(txn)
            except lmdb.MapFullError:
                current = self.map_size
                if current >= self.limit:
                    raise MetadataError(
                        f"{self.what} is full: it reached {LIMIT_KEY} "
                        f"({self.limit >> 20} MiB); raise {LIMIT_KEY} in the configuration "
                        "and restart altmount"
                    ) from None
                self._resize(min(current * 2, self.limit))
            except lmdb.Error as exc:
                raise MetadataError(f"{self.what}: write failed: {exc}") from None

    def close(self) -> None:
        """Close the environment."""
        self.env.close()
