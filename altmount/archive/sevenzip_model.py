"""What a 7z header says: folders of coders, packed streams, substreams, files (no I/O).

The names follow 7-Zip's DOC/7zFormat.txt and 7zIn.cpp; sevenzip.py fills these
from bytes, sevenzip_members.py places the members on the volumes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "SIGNATURE",
    "SIGNATURE_HEADER_SIZE",
    "AES_METHOD",
    "COPY_METHOD",
    "method_name",
    "StartHeader",
    "Coder",
    "Folder",
    "StreamsInfo",
    "Entry",
    "Header",
    "AesParams",
]

SIGNATURE = b"7z\xbc\xaf\x27\x1c"
SIGNATURE_HEADER_SIZE = 32
AES_METHOD = b"\x06\xf1\x07\x01"
COPY_METHOD = b"\x00"
_METHODS = {
    COPY_METHOD: "Copy",
    b"\x03": "Delta",
    b"\x04": "BCJ",
    b"\x05": "PPC",
    b"\x06": "IA64",
    b"\x07": "ARM",
    b"\x08": "ARMT",
    b"\x09": "SPARC",
    b"\x0a": "ARM64",
    b"\x0b": "RISCV",
    b"\x21": "LZMA2",
    b"\x03\x01\x01": "LZMA",
    b"\x03\x03\x01\x03": "BCJ",
    b"\x03\x03\x01\x1b": "BCJ2",
    b"\x03\x04\x01": "PPMD",
    b"\x04\x01\x08": "Deflate",
    b"\x04\x01\x09": "Deflate64",
    b"\x04\x02\x02": "BZip2",
    AES_METHOD: "7zAES",
}


def method_name(method_id: bytes) -> str:
    """7-Zip's name of a coder ("LZMA2"), or its id in hex when unknown."""
    return _METHODS.get(method_id) or "0x" + (method_id.hex() or "00")


@dataclass(frozen=True, slots=True)
class StartHeader:
    """The signature header: where the next header is, how big, its CRC."""

    next_header_offset: int
    next_header_size: int
    next_header_crc: int

    @property
    def next_header_start(self) -> int:
        """Archive offset of the next header."""
        return SIGNATURE_HEADER_SIZE + self.next_header_offset

    @property
    def archive_size(self) -> int:
        """The archive's size: it ends with the next header."""
        return self.next_header_start + self.next_header_size


@dataclass(frozen=True, slots=True)
class Coder:
    """One coder of a folder: its method id, how many streams feed it, its properties."""

    method: bytes
    inputs: int
    properties: bytes

    @property
    def name(self) -> str:
        """The method's name."""
        return method_name(self.method)


@dataclass(frozen=True, slots=True)
class Folder:
    """Coders whose chain turns packed streams into one unpacked stream.

    `bonds` are (coder input stream index, coder index whose output feeds it);
    `packed` are the coder input streams fed by the folder's packed streams, in
    packed-stream order; `unpack_sizes` has one size per coder (its output).
    """

    coders: tuple[Coder, ...]
    bonds: tuple[tuple[int, int], ...]
    packed: tuple[int, ...]
    unpack_sizes: tuple[int, ...]
    crc: int | None

    @property
    def main(self) -> int:
        """The coder whose output is the folder's output (bound to no input)."""
        bound = {coder for _, coder in self.bonds}
        return next(i for i in range(len(self.coders)) if i not in bound)

    @property
    def size(self) -> int:
        """The unpacked size of the folder."""
        return self.unpack_sizes[self.main]

    def chain(self) -> list[int] | None:
        """Coder indices from the output to the packed stream when the folder is one
        straight chain (every coder has one input), else None."""
        first_input = [0]
        for coder in self.coders:
            first_input.append(first_input[-1] + coder.inputs)
        feeds = dict(self.bonds)
        order = [self.main]
        while True:
            coder = self.coders[order[-1]]
            if coder.inputs != 1:
                return None
            stream = first_input[order[-1]]
            if stream not in feeds:
                return order if len(order) == len(self.coders) else None
            order.append(feeds[stream])
            if len(order) > len(self.coders):
                return None

    def method(self) -> str:
        """The coders' names in decoding order, AES left out ("LZMA2", "LZMA2 BCJ")."""
        chain = self.chain() or list(range(len(self.coders)))
        names = [
            self.coders[i].name for i in reversed(chain) if self.coders[i].method != AES_METHOD
        ]
        return " ".join(names) or "Copy"

    @property
    def encrypted(self) -> bool:
        """True when one of the coders is 7-Zip's AES."""
        return any(coder.method == AES_METHOD for coder in self.coders)

    @property
    def stored(self) -> bool:
        """True when the output is the packed bytes, maybe AES-encrypted (a straight
        chain of Copy coders and at most one AES coder)."""
        methods = [coder.method for coder in self.coders]
        return (
            len(self.packed) == 1
            and methods.count(AES_METHOD) <= 1
            and all(m in (COPY_METHOD, AES_METHOD) for m in methods)
            and self.chain() is not None
        )


@dataclass(frozen=True, slots=True)
class StreamsInfo:
    """Packed streams (archive offset `SIGNATURE_HEADER_SIZE + pack_pos` on), folders, substreams."""

    pack_pos: int
    pack_sizes: tuple[int, ...]
    folders: tuple[Folder, ...]
    #: Per folder, the sizes of the streams it unpacks into (one per file with data).
    substreams: tuple[tuple[int, ...], ...]

    def pack_starts(self) -> list[int]:
        """Archive offset of each folder's first packed stream."""
        starts, offset, stream = [], SIGNATURE_HEADER_SIZE + self.pack_pos, 0
        for folder in self.folders:
            starts.append(offset)
            for _ in folder.packed:
                offset += self.pack_sizes[stream]
                stream += 1
        return starts

    def folder_pack_sizes(self) -> list[int]:
        """The packed size of each folder (all its packed streams)."""
        sizes, stream = [], 0
        for folder in self.folders:
            count = len(folder.packed)
            sizes.append(sum(self.pack_sizes[stream : stream + count]))
            stream += count
        return sizes


@dataclass(frozen=True, slots=True)
class Entry:
    """One item of the files info."""

    name: str
    has_stream: bool
    is_dir: bool
    is_anti: bool


@dataclass(frozen=True, slots=True)
class Header:
    """The decoded header: the main streams and the files."""

    streams: StreamsInfo
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class AesParams:
    """7-Zip AES coder properties: key derivation rounds (2^cycles), salt, IV."""

    cycles: int
    salt: bytes
    iv: bytes
