"""Records shared by both `_core` implementations (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["DecodedArticle", "RangePlan"]


@dataclass(frozen=True, slots=True)
class DecodedArticle:
    """One yEnc article decoded: the bytes and what its headers announce.

    `begin`/`end` are 0-based, end exclusive, offsets in the posted file, so
    `len(data) == end - begin` always holds for a returned article.
    """

    data: bytes
    #: =ybegin name= (the rest of the line; may contain spaces).
    name: str
    #: =ybegin part=, 0 when the header has none.
    part: int
    #: =ybegin size=: the size of the whole posted file.
    total: int
    begin: int
    end: int
    #: CRC32 announced in =yend (pcrc32, or crc32 when the part is the whole file).
    crc: int | None
    #: True when `crc` is None or matches `data`; False means "try another provider".
    crc_ok: bool


@dataclass(frozen=True, slots=True)
class RangePlan:
    """Which segments cover a byte range and which slice of each one it needs.

    Segments `first .. last-1` are used; for the k-th of them, `src_start[k]` is
    where its contribution starts inside the segment's decoded data and
    `length[k]` how many bytes it contributes (0 for an empty segment).
    """

    first: int
    last: int
    src_start: npt.NDArray[np.int64]
    length: npt.NDArray[np.int64]
