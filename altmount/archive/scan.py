"""Walk one RAR volume's block headers from the bytes a caller fetches for it (no I/O).

`VolumeScan.want()` says which volume bytes it needs next (offset, size); the
caller fetches the articles covering them and `feed`s them back, contiguous from
the first article's start. Data areas are skipped, never read, so a volume costs
the articles holding its headers: usually the first and the last. Encrypted
headers are walked the same way, decrypted with the keys of the release's
password; without a password, or with a wrong one, the walk stops where they
begin and the volume is `locked`.
"""

from __future__ import annotations

from altmount.archive.rar import (
    Block,
    HeaderCipher,
    Kind,
    Locked,
    Need,
    parse_block,
    signature_size,
)
from altmount.archive.rarcrypto import RarKeys
from altmount.errors import ArchiveError

__all__ = ["VolumeScan", "MAX_BLOCKS"]

#: More blocks than this in one volume is not a release, it is an attack (or garbage).
MAX_BLOCKS = 100_000


class VolumeScan:
    """The block headers of one volume, read as far as the end-of-archive block."""

    def __init__(
        self, version: int, volume_size: int, label: str, keys: RarKeys | None = None
    ) -> None:
        self.version = version
        self.size = volume_size
        self.label = label
        self.blocks: list[Block] = []
        #: True when the headers are encrypted and the password does not open them.
        self.locked = False
        self._keys = keys
        self._headers: HeaderCipher | None = None
        self._offset = signature_size(version)
        self._buffer = memoryview(b"")
        self._base = 0
        self._want: tuple[int, int] | None = None
        self._advance()

    @property
    def done(self) -> bool:
        """True once the walk reached the end block (or the volume's end, or a lock)."""
        return self._want is None

    def want(self) -> tuple[int, int] | None:
        """(volume offset, byte count) to `feed` next, or None when done."""
        return self._want

    def feed(self, start: int, data: bytes) -> None:
        """Volume bytes from offset `start` on; they must cover what `want()` asked for."""
        wanted = self._want
        if wanted is None:
            return
        offset, size = wanted
        if not start <= offset or start + len(data) < min(offset + size, self.size):
            raise ArchiveError(
                f"{self.label}: bytes {offset}-{offset + size} were asked, {start}-{start + len(data)} given"
            )
        self._base, self._buffer = start, memoryview(data)
        self._advance()

    def _advance(self) -> None:
        while True:
            if self._offset >= self.size:
                self._want = None  # old RAR 4 archives may end without an end block
                return
            relative = self._offset - self._base
            available = (
                self._buffer[relative:] if 0 <= relative < len(self._buffer) else memoryview(b"")
            )
            result = parse_block(
                self.version,
                available,  # type: ignore[arg-type]
                self._offset,
                self.size,
                self.label,
                self._headers,
            )
            if isinstance(result, Need):
                self._want = (self._offset, result.size)
                return
            if isinstance(result, Locked):
                self._lock()
                return
            self.blocks.append(result)
            if len(self.blocks) > MAX_BLOCKS:
                raise ArchiveError(f"{self.label}: more than {MAX_BLOCKS} blocks in one volume")
            if result.kind is Kind.END:
                self._want = None
                return
            if result.headers_encrypted and self._headers is None:
                # A RAR 5 encryption header, or a RAR 4 main header saying the rest is encrypted.
                self._headers = (
                    self._keys.headers(result, self.label) if self._keys is not None else None
                )
                if self._headers is None:
                    self._lock()
                    return
            self._offset = result.next_offset

    def _lock(self) -> None:
        self.locked = True
        self._want = None
