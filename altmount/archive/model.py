"""What the archive stage learns about a stored archive set (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Piece", "ArchiveMember"]


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
