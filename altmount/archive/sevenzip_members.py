"""Place the members of a parsed 7z header on the volumes of its set (no I/O).

A split set (`name.7z.001`, `.002` …) is one archive cut into plain byte
pieces, so an archive offset maps to (volume, offset) by the volume sizes. A
member of a copy folder is its substream's bytes; a member of an AES folder is
a window of the folder's decrypted bytes, so its pieces are the ciphertext
blocks around it and the stage streams it through a `Cipher`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

from altmount.archive.model import ArchiveMember, Piece
from altmount.archive.sevenzip_model import AES_METHOD, AesParams, Folder, Header
from altmount.errors import ArchiveError

__all__ = ["SevenZipMember", "aes_params", "volume_pieces", "archive_members"]

#: AES block size: CBC decrypts block i with block i - 1 as its IV.
_BLOCK = 16


@dataclass(frozen=True, slots=True)
class SevenZipMember:
    """A member of a 7z set: its path, method, and the volume bytes that hold it.

    For a member of an AES folder, `member.pieces` hold the ciphertext blocks
    covering it (and the block before, the CBC IV, when it does not start the
    folder); the member is plaintext bytes [window, window + size) of their
    decryption with the key of `aes` and its IV.
    """

    member: ArchiveMember
    aes: AesParams | None
    window: int


def aes_params(properties: bytes, label: str) -> AesParams:
    """The key derivation and IV of a 7zAES coder's properties (7-Zip's 7zAes.cpp)."""
    if not properties:
        raise ArchiveError(f"{label}: damaged 7z header: AES coder without properties")
    first = properties[0]
    cycles = first & 0x3F
    if first & 0xC0 == 0:
        salt, iv = b"", b""
        rest = properties[1:]
    else:
        if len(properties) < 2:
            raise ArchiveError(f"{label}: damaged 7z header: AES properties truncated")
        salt_size = (first >> 7) + (properties[1] >> 4)
        iv_size = ((first >> 6) & 1) + (properties[1] & 0x0F)
        rest = properties[2 + salt_size + iv_size :]
        salt = properties[2 : 2 + salt_size]
        iv = properties[2 + salt_size : 2 + salt_size + iv_size]
        if len(salt) != salt_size or len(iv) != iv_size:
            raise ArchiveError(f"{label}: damaged 7z header: AES properties truncated")
    if rest:
        raise ArchiveError(f"{label}: damaged 7z header: AES properties too long")
    return AesParams(cycles, salt, iv.ljust(_BLOCK, b"\x00"))


def volume_pieces(start: int, length: int, volume_sizes: Sequence[int]) -> tuple[Piece, ...]:
    """Archive bytes [start, start + length) as pieces of the volumes that hold them."""
    return _pieces(start, length, list(accumulate(volume_sizes, initial=0)))


def _pieces(start: int, length: int, bounds: list[int]) -> tuple[Piece, ...]:
    """`volume_pieces` given the volumes' archive offsets (and the archive's end)."""
    pieces = []
    index = max(0, bisect_right(bounds, start) - 1)
    end = start + length
    while start < end and index < len(bounds) - 1:
        take = min(end, bounds[index + 1]) - start
        if take > 0:
            pieces.append(Piece(index, start - bounds[index], take))
            start += take
        index += 1
    return tuple(pieces)


@dataclass(frozen=True, slots=True)
class _FolderFacts:
    """What every member of one folder shares, worked out once per folder."""

    folder: Folder
    method: str
    stored: bool
    aes: AesParams | None


def archive_members(
    header: Header, volume_sizes: Sequence[int], data_end: int, label: str
) -> list[SevenZipMember]:
    """Every file with data, in archive order, with its pieces over the volumes.

    `data_end` is where the packed streams must end (the next header's start).
    Directories, anti-items and empty files are left out. Raises ArchiveError when
    a stored folder does not fit its packed stream.
    """
    streams = header.streams
    starts, pack_sizes = streams.pack_starts(), streams.folder_pack_sizes()
    if starts and starts[-1] + pack_sizes[-1] > data_end:
        raise ArchiveError(f"{label}: damaged 7z archive: packed streams run past the header")
    bounds = list(accumulate(volume_sizes, initial=0))
    facts = [
        _FolderFacts(f, f.method(), f.stored, _folder_aes(f, label) if f.encrypted else None)
        for f in streams.folders
    ]
    slots = [
        (folder_index, offset, size)
        for folder_index, sizes in enumerate(streams.substreams)
        for offset, size in zip(_running(sizes), sizes, strict=True)
    ]
    members = []
    files = (entry for entry in header.entries if entry.has_stream)
    for entry, (folder_index, offset, size) in zip(files, slots, strict=True):
        if entry.is_anti or size == 0:
            continue
        fact = facts[folder_index]
        pieces: tuple[Piece, ...] = ()
        window = 0
        if fact.stored:
            start, length, window = _span(
                fact.folder, offset, size, pack_sizes[folder_index], label
            )
            pieces = _pieces(starts[folder_index] + start, length, bounds)
        member = ArchiveMember(
            entry.name, size, fact.method, fact.stored, fact.aes is not None, pieces
        )
        members.append(SevenZipMember(member, fact.aes, window))
    return members


def _running(sizes: tuple[int, ...]) -> list[int]:
    offsets, total = [], 0
    for size in sizes:
        offsets.append(total)
        total += size
    return offsets


def _span(
    folder: Folder, offset: int, size: int, pack_size: int, label: str
) -> tuple[int, int, int]:
    """(packed offset, length, plaintext window offset) of a stored folder's substream."""
    if not folder.encrypted:
        if pack_size != folder.size:
            raise ArchiveError(
                f"{label}: damaged 7z archive: a stored folder of {folder.size} bytes packs {pack_size}"
            )
        return offset, size, 0
    # CBC: a block decrypts with the ciphertext block before it as IV; the folder's
    # first block uses the coder's IV.
    first_block = offset - offset % _BLOCK
    begin = max(0, first_block - _BLOCK)
    end = -(-(offset + size) // _BLOCK) * _BLOCK
    if end > pack_size or pack_size % _BLOCK or folder.size > pack_size:
        raise ArchiveError(
            f"{label}: damaged 7z archive: an encrypted folder of {folder.size} bytes packs {pack_size}"
        )
    return begin, end - begin, offset - begin


def _folder_aes(folder: Folder, label: str) -> AesParams:
    coder = next(c for c in folder.coders if c.method == AES_METHOD)
    return aes_params(coder.properties, label)
