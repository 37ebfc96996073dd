"""What the archive stage learns about a stored archive set (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

from altmount.metadata import Cipher, SegmentTable

__all__ = ["Piece", "ArchiveMember", "MemberFile"]


@dataclass(frozen=True, slots=True)
class Piece:
    """`length` bytes of a member's data at `offset` of volume `volume` (0-based, in set order)."""

    volume: int
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class ArchiveMember:
    """A file inside an archive set: its path there, size, method and where its bytes are.

    `method` is the archiver's own name for it ("m0" is store); `pieces` are in
    file order and, for a stored member, add up to `size`.
    """

    path: str
    size: int
    method: str
    stored: bool
    encrypted: bool
    pieces: tuple[Piece, ...]


@dataclass(frozen=True, slots=True)
class MemberFile:
    """A member ready to become a candidate: its path in the archive and where its bytes are.

    `table` maps the member's bytes onto articles; with a `cipher` those bytes are
    AES-CBC ciphertext and the member is the plaintext window the cipher names.
    """

    path: str
    table: SegmentTable
    cipher: Cipher | None = None

    @property
    def size(self) -> int:
        """The member's size (plaintext)."""
        return self.cipher.size if self.cipher is not None else self.table.size
