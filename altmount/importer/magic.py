"""Guess a file's extension from its first bytes, for posts whose names say nothing. No I/O.

Only container formats a release actually holds are recognised; each test
names the specification it follows. Order matters where signatures overlap
(FLAC and MP3 may both carry ID3 tags; FLAC files start with `fLaC` itself).
"""

from __future__ import annotations

__all__ = ["sniff_extension", "MAGIC_PREFIX"]

#: Bytes of the file start the sniffers look at: four MPEG-TS or M2TS packets.
MAGIC_PREFIX = 1024

_TS_PACKET = 188
_M2TS_PACKET = 192  # a TS packet behind a 4-byte arrival timestamp (Blu-ray BDAV)
_SYNC = 0x47
_ASF = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")


def sniff_extension(head: bytes) -> str | None:
    """The extension (with its dot) the bytes look like, or None when unsure."""
    for test in _TESTS:
        found = test(head)
        if found:
            return found
    return None


def _matroska(head: bytes) -> str | None:
    # EBML header (RFC 9559 section 4/5): ID 0x1A45DFA3, then DocType "matroska" or "webm".
    if not head.startswith(b"\x1a\x45\xdf\xa3"):
        return None
    return ".webm" if b"webm" in head[:64] else ".mkv"


def _iso_media(head: bytes) -> str | None:
    # ISO/IEC 14496-12: the first box is `ftyp` with a major brand.
    if head[4:8] != b"ftyp":
        return None
    brand = head[8:12]
    return {b"qt  ": ".mov", b"M4A ": ".m4a", b"M4V ": ".m4v", b"M4VH": ".m4v"}.get(brand, ".mp4")


def _riff(head: bytes) -> str | None:
    if head[:4] != b"RIFF":
        return None
    return {b"AVI ": ".avi", b"WAVE": ".wav"}.get(head[8:12])


def _transport_stream(head: bytes) -> str | None:
    # ISO/IEC 13818-1: every 188-byte packet starts with the sync byte 0x47.
    for size, offset, extension in ((_TS_PACKET, 0, ".ts"), (_M2TS_PACKET, 4, ".m2ts")):
        packets = (len(head) - offset) // size
        if packets >= 4 and all(head[offset + i * size] == _SYNC for i in range(packets)):
            return extension
    return None


def _plain(head: bytes) -> str | None:
    signatures = (
        (b"\x00\x00\x01\xba", ".mpg"),  # MPEG program stream pack header
        (b"fLaC", ".flac"),
        (b"OggS", ".ogg"),
        (b"Rar!\x1a\x07\x01\x00", ".rar"),  # RAR 5
        (b"Rar!\x1a\x07\x00", ".rar"),  # RAR 1.5-4
        (b"7z\xbc\xaf\x27\x1c", ".7z"),
        (b"PAR2\x00PKT", ".par2"),
        (b"PK\x03\x04", ".zip"),
        (_ASF, ".wmv"),
        (b"ID3", ".mp3"),
    )
    for signature, extension in signatures:
        if head.startswith(signature):
            return extension
    return None


def _mpeg_audio(head: bytes) -> str | None:
    # An MPEG-1/2 Layer III frame header: 11 sync bits, then layer bits 01.
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and (head[1] >> 1) & 3 == 1:
        return ".mp3"
    return None


_TESTS = (_matroska, _iso_media, _riff, _plain, _transport_stream, _mpeg_audio)
