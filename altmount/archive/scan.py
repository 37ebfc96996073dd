"""Walk one RAR volume's block headers from the bytes a caller fetches for it (no I/O).

`VolumeScan` asks for volume bytes by the protocol of feeding.py; the caller
fetches the articles covering them and feeds them back, contiguous from the
first article's start. Data areas are skipped, never read, so a volume costs
the articles holding its headers: usually the first and the last. Encrypted
headers are walked the same way, decrypted with the keys of the release's
password; without a password, or with a wrong one, the walk stops where they
begin and the volume is `locked`.
"""

from __future__ import annotations

from altmount.archive.feeding import Feeder
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


class VolumeScan(Feeder):
    """The block headers of one volume, read as far as the end-of-archive block.

    `done` once the walk reached the end block (or the volume's end, or a lock); a
    read at the volume's end may come back short.
    """

    def __init__(
        self, version: int, volume_size: int, label: str, keys: RarKeys | None = None
    ) -> None:
        super().__init__(label, volume_size)
        self.version = version
        self.blocks: list[Block] = []
        #: True when the headers are encrypted and the password does not open them.
        self.locked = False
        self._keys = keys
        self._headers: HeaderCipher | None = None
        self._offset = signature_size(version)
        self._buffer = memoryview(b"")
        self._base = 0
        self._advance()

    def _take(self, start: int, data: bytes) -> None:
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
