"""Stored archives (RAR4, RAR5) inside releases: parse their headers, expose their members."""

from altmount.archive.model import ArchiveMember, Piece

__all__ = ["ArchiveMember", "Piece"]
