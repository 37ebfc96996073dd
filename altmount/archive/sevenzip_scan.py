"""Read one 7z set's header from the bytes a caller fetches for it (no I/O).

The signature header comes from the first article of the first volume, which
the importer already read (`head`). It points at the next header at the end of
the archive; `want()` (feeding.py) asks for it together with `LOOKBEHIND` bytes before it,
because 7-Zip writes a packed (LZMA and maybe AES) header right before the
EncodedHeader that describes it: usually one round trip reads either kind.
Offsets are archive offsets: the caller maps them onto the volumes, which are
plain byte splits of the archive, and feeds back contiguous bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from altmount.archive.feeding import Feeder
from altmount.archive.sevenzip import (
    MAX_HEADER_SIZE,
    parse_header,
    parse_next_header,
    parse_start_header,
)
from altmount.archive.sevenzip_codec import KeyRing, decode_folder
from altmount.archive.sevenzip_members import SevenZipMember, archive_members
from altmount.archive.sevenzip_model import Header, StreamsInfo
from altmount.errors import ArchiveError

__all__ = ["LOOKBEHIND", "SevenZipScan"]

#: Bytes read before the next header in the same request, for a packed header lying there.
LOOKBEHIND = 64 << 10


class SevenZipScan(Feeder):
    """The header of one 7z set, from its first bytes and the tail bytes it asks for.

    Offsets are archive offsets; `done` once the header is read.
    """

    def __init__(self, name: str, head: bytes, volume_sizes: Sequence[int], keys: KeyRing) -> None:
        self.name = name
        self.volume_sizes = tuple(volume_sizes)
        self.keys = keys
        self.start = parse_start_header(head, name)
        super().__init__(name, self.start.archive_size)
        self._check_size()
        #: The parsed header once the walk is done.
        self.header: Header | None = None
        #: True when the header was stored encrypted (it decoded, so the password is right).
        self.headers_encrypted = False
        self._encoded: StreamsInfo | None = None
        self._chunks: list[tuple[int, bytes]] = []
        tail = self.start.next_header_start
        first = max(tail - LOOKBEHIND, 0)
        self._want = (first, self.start.archive_size - first)

    def _check_size(self) -> None:
        total, count = sum(self.volume_sizes), len(self.volume_sizes)
        needed = self.start.archive_size
        if total < needed:
            raise ArchiveError(f"volume {count + 1} of {self.name} missing")
        if total - self.volume_sizes[-1] >= needed:
            raise ArchiveError(
                f"{self.name}: damaged 7z archive: its header says it ends at byte {needed}, "
                f"before volume {count}"
            )

    def _take(self, start: int, data: bytes) -> None:
        self._chunks.append((start, data))
        self._advance()

    def members(self) -> list[SevenZipMember]:
        """The files with data, placed on the volumes (once `done`)."""
        if self.header is None:
            raise ArchiveError(f"{self.name}: the 7z header was not read")
        return archive_members(
            self.header, self.volume_sizes, self.start.next_header_start, self.name
        )

    def _bytes(self, offset: int, size: int) -> bytes | None:
        for start, data in self._chunks:
            if start <= offset and offset + size <= start + len(data):
                return data[offset - start : offset - start + size]
        return None

    def _advance(self) -> None:
        if self._encoded is None:
            data = self._bytes(self.start.next_header_start, self.start.next_header_size)
            assert data is not None  # feed() checked the asked range was covered
            parsed = parse_next_header(data, self.start, self.name)
            if isinstance(parsed, Header):
                self._finish(parsed)
                return
            if len(parsed.folders) != 1:
                raise ArchiveError(
                    f"{self.name}: damaged 7z archive: an encoded header of {len(parsed.folders)} folders"
                )
            self._encoded = parsed
        offset, size = self._packed_range(self._encoded)
        packed = self._bytes(offset, size)
        if packed is None:
            self._want = (offset, size)
            return
        folder = self._encoded.folders[0]
        self.headers_encrypted = folder.encrypted
        self._finish(parse_header(decode_folder(folder, packed, self.keys, self.name), self.name))

    def _packed_range(self, streams: StreamsInfo) -> tuple[int, int]:
        offset, size = streams.pack_starts()[0], sum(streams.pack_sizes)
        if offset + size > self.start.next_header_start:
            raise ArchiveError(
                f"{self.name}: damaged 7z archive: the packed header runs past the archive"
            )
        if max(size, *streams.folders[0].unpack_sizes) > MAX_HEADER_SIZE:
            raise ArchiveError(
                f"{self.name}: damaged 7z archive: a header of more than {MAX_HEADER_SIZE} bytes"
            )
        return offset, size

    def _finish(self, header: Header) -> None:
        self.header = header
        self._want = None
        self._chunks = []
