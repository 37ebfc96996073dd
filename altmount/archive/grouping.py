"""Which RAR volumes make a set, in which order, and the members each set holds (no I/O).

The order comes from the headers first: RAR 5 main headers carry the volume
number, RAR 4 end blocks usually do (EARC_VOLNUMBER), RAR 4 main headers mark the
first volume, and a member split across volumes must continue, with the same name
and size, at the start of the next one. Names (`.partN.rar`, `.rar` + `.r00`,
`<stem>.1`) only give an ordinal where the headers have none and break ties
between sets with equal headers, so obfuscated names and names without an
extension group as well as plain ones.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from altmount.archive.model import ArchiveMember, Piece
from altmount.archive.rar import Block, Crypt, Kind, rar4_method_name
from altmount.errors import ArchiveError

__all__ = [
    "Volume",
    "BrokenVolume",
    "ArchiveSet",
    "RarMember",
    "name_ordinal",
    "group_volumes",
    "set_members",
]

_PART = re.compile(r"^(?P<stem>.*)\.part(?P<n>\d+)\.rar$", re.IGNORECASE)
_FIRST = re.compile(r"^(?P<stem>.*)\.rar$", re.IGNORECASE)
_OLD = re.compile(r"^(?P<stem>.*)\.(?P<letter>[r-z])(?P<n>\d{2})$", re.IGNORECASE)
_NUMERIC = re.compile(r"^(?P<stem>.*)\.(?P<n>\d{1,4})$")


@dataclass(frozen=True, slots=True)
class Volume:
    """One posted file that is a RAR volume: its name, format and block headers.

    `locked`: its headers are encrypted and the password did not open them, so
    `blocks` stop where they begin.
    """

    key: int
    name: str
    version: int
    size: int
    blocks: tuple[Block, ...]
    locked: bool = False

    @property
    def main(self) -> Block | None:
        """The main archive header."""
        return next((b for b in self.blocks if b.kind is Kind.MAIN), None)

    @property
    def end(self) -> Block | None:
        """The end-of-archive block, when the volume has one."""
        return next((b for b in self.blocks if b.kind is Kind.END), None)

    @property
    def headers_decrypted(self) -> bool:
        """True when its headers were encrypted and decrypted: the password is proved."""
        return not self.locked and any(b.headers_encrypted for b in self.blocks)

    @property
    def files(self) -> list[Block]:
        """The file headers, in volume order."""
        return [b for b in self.blocks if b.kind is Kind.FILE]

    @property
    def is_volume(self) -> bool:
        """True when the main header says the archive is multi-volume."""
        return self.main is not None and self.main.is_volume

    def number(self) -> int | None:
        """0-based volume number from the headers, or None when they have none."""
        main, end = self.main, self.end
        if self.version == 5 and main is not None:
            return main.volume_number
        if end is not None and end.volume_number is not None:
            return end.volume_number
        if main is not None and main.first_volume:
            return 0
        return None

    def head_piece(self) -> tuple[str, int | None] | None:
        """The member this volume continues from the previous one."""
        files = self.files
        return (files[0].name, files[0].unpacked_size) if files and files[0].split_before else None

    def tail_piece(self) -> tuple[str, int | None] | None:
        """The member this volume leaves for the next one."""
        files = self.files
        return (
            (files[-1].name, files[-1].unpacked_size) if files and files[-1].split_after else None
        )

    def more_volumes(self) -> bool | None:
        """True/False when the end block says whether a next volume exists, else None."""
        end = self.end
        if end is None:
            return True if self.tail_piece() else None
        return end.more_volumes or self.tail_piece() is not None


@dataclass(frozen=True, slots=True)
class RarMember:
    """A member of a RAR set and, when its data is encrypted, the key parameters.

    An encrypted member's pieces hold one AES-CBC stream, continued across
    volumes (rar cuts it anywhere and pads only the whole to 16 bytes), so the
    member is the first `member.size` bytes of its pieces' decryption.
    """

    member: ArchiveMember
    crypt: Crypt | None = None


@dataclass(frozen=True, slots=True)
class BrokenVolume:
    """A posted file that starts like a RAR volume but whose headers could not be read."""

    error: str


@dataclass(frozen=True, slots=True)
class ArchiveSet:
    """Volumes of one archive in order; `problem` says why the set cannot be used."""

    name: str
    volumes: tuple[Volume, ...]
    problem: str | None = None


def name_ordinal(name: str) -> tuple[str, int] | None:
    """(set stem, 0-based ordinal) from a volume name, or None when the name says nothing."""
    for pattern in (_PART, _OLD, _FIRST, _NUMERIC):
        match = pattern.match(name)
        if not match:
            continue
        stem = match["stem"].lower()
        if pattern is _PART:
            return stem, int(match["n"]) - 1
        if pattern is _OLD:
            # .r00-.r99, then .s00-.s99, ... follow the .rar (ordinal 0).
            return stem, 1 + (ord(match["letter"].lower()) - ord("r")) * 100 + int(match["n"])
        if pattern is _FIRST:
            return stem, 0
        return stem, int(match["n"]) - 1
    return None


def _ordinal(volume: Volume) -> int | None:
    number = volume.number()
    if number is not None:
        return number
    named = name_ordinal(volume.name)
    return named[1] if named else None


def _stem(volume: Volume) -> str | None:
    named = name_ordinal(volume.name)
    return named[0] if named else None


def _follows(previous: Volume, candidate: Volume) -> bool:
    """True when the headers allow `candidate` right after `previous`."""
    if candidate.version != previous.version or not candidate.is_volume:
        return False
    if candidate.main is not None and candidate.main.first_volume:
        return False
    tail, head = previous.tail_piece(), candidate.head_piece()
    return tail == head


def group_volumes(volumes: Sequence[Volume]) -> list[ArchiveSet]:
    """Split RAR volumes (in NZB order) into ordered sets; a set with a gap gets a problem."""
    sets: list[ArchiveSet] = []
    left = list(volumes)
    for volume in volumes:
        if volume in left and not volume.is_volume:
            left.remove(volume)
            sets.append(ArchiveSet(volume.name, (volume,)))
    while left:
        starts = [
            v for v in left if _ordinal(v) == 0 or (v.main is not None and v.main.first_volume)
        ]
        start = starts[0] if starts else min(left, key=lambda v: _ordinal(v) or 0)
        left.remove(start)
        chain = [start]
        problem = None
        if start not in starts:
            problem = f"volume 1 of {_set_label(start)} missing"
        while problem is None:
            current, wanted = chain[-1], _ordinal(chain[-1])
            nexts = [
                v
                for v in left
                if _follows(current, v) and (wanted is None or _ordinal(v) in (None, wanted + 1))
            ]
            # Equal headers in two sets: the one with the same name stem, else NZB order.
            same = [v for v in nexts if _stem(v) is not None and _stem(v) == _stem(current)]
            chosen = (same or nexts)[0] if same or nexts else None
            if chosen is None:
                if current.more_volumes():
                    problem = f"volume {len(chain) + 1} of {_set_label(start)} missing"
                break
            left.remove(chosen)
            chain.append(chosen)
        if problem is not None:
            chain += _stragglers(chain, left)
        sets.append(ArchiveSet(_set_label(start), tuple(chain), problem))
    return sets


def _stragglers(chain: list[Volume], left: list[Volume]) -> list[Volume]:
    """Volumes after a gap that belong to the broken set (same stem or same members)."""
    stems = {_stem(v) for v in chain} - {None}
    names = {b.name for v in chain for b in v.files}
    taken = []
    for volume in list(left):
        if _stem(volume) in stems or any(b.name in names for b in volume.files):
            left.remove(volume)
            taken.append(volume)
    return taken


def _set_label(volume: Volume) -> str:
    return volume.name


def set_members(archive: ArchiveSet) -> list[RarMember]:
    """The members of an ordered set, split pieces joined; directories left out.

    Raises ArchiveError naming the set when a piece does not continue the member
    the previous volume left open, or a stored member's pieces miss its size.
    """
    members: list[RarMember] = []
    open_blocks: list[tuple[int, Block]] = []
    for index, volume in enumerate(archive.volumes):
        for block in volume.files:
            if block.is_dir:
                continue
            if block.split_before:
                if not open_blocks or open_blocks[0][1].name != block.name:
                    raise ArchiveError(
                        f"{volume.name}: {block.name} continues from a volume that is not there (volume {index} of {archive.name} missing or out of order)"
                    )
            elif open_blocks:
                raise ArchiveError(
                    f"{volume.name}: {open_blocks[0][1].name} is not continued (volume {index + 1} of {archive.name} missing or out of order)"
                )
            open_blocks.append((index, block))
            if not block.split_after:
                members.append(_member(archive, open_blocks))
                open_blocks = []
    if open_blocks:
        raise ArchiveError(
            f"volume {len(archive.volumes) + 1} of {archive.name} missing ({open_blocks[0][1].name} continues there)"
        )
    return members


def _member(archive: ArchiveSet, blocks: list[tuple[int, Block]]) -> RarMember:
    first = blocks[0][1]
    version = archive.volumes[0].version
    method = f"m{first.method}" if version == 5 else rar4_method_name(first.method)
    pieces = tuple(Piece(index, b.data_offset, b.data_size) for index, b in blocks)
    stored = all(b.stored for _, b in blocks)
    encrypted = any(b.encrypted for _, b in blocks)
    packed = sum(p.length for p in pieces)
    size = first.unpacked_size if first.unpacked_size is not None else packed
    if stored and encrypted:
        if first.unpacked_size is None:
            raise ArchiveError(
                f"{archive.name}: encrypted member {first.name} does not announce its size"
            )
        # AES pads the stored bytes to whole 16-byte blocks.
        if packed != -(-size // 16) * 16:
            raise ArchiveError(
                f"{archive.name}: encrypted stored member {first.name} holds {packed} bytes, "
                f"not {size} padded to 16"
            )
    elif stored and packed != size:
        raise ArchiveError(
            f"{archive.name}: stored member {first.name} holds {packed} bytes but announces {size}"
        )
    member = ArchiveMember(first.name, size, method, stored, encrypted, pieces)
    return RarMember(member, first.crypt if encrypted else None)
