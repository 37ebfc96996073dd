"""Decrypt a byte range of an AES-CBC encrypted file without reading from its start (no I/O).

CBC decrypts block i as AES⁻¹(C[i]) XOR C[i−1], so reading plaintext bytes
[start, end) needs the ciphertext blocks covering them plus the one block before
(its IV); the key derivation happened once, at import (`Cipher.key`). AES runs in
OpenSSL through `cryptography` (AES-NI: several GB/s per core).
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher as _AesCipher
from cryptography.hazmat.primitives.ciphers import algorithms, modes

from altmount.errors import StreamError
from altmount.metadata import Cipher

__all__ = ["BLOCK", "CipherSpan", "cipher_span", "CbcWindow", "DecryptingConsumer", "decrypt_range"]

BLOCK = 16


class CipherSpan:
    """Which ciphertext to read for plaintext [start, end) of a file, and what to drop."""

    __slots__ = ("start", "end", "with_iv", "drop", "length")

    def __init__(self, start: int, end: int, with_iv: bool, drop: int, length: int) -> None:
        self.start = start  #: first ciphertext byte to read (an IV block when `with_iv`)
        self.end = end  #: ciphertext end (exclusive), a block boundary
        self.with_iv = with_iv  #: the first block read is only the IV of the next
        self.drop = drop  #: plaintext bytes to drop after decryption
        self.length = length  #: plaintext bytes wanted


def cipher_span(cipher: Cipher, start: int, end: int) -> CipherSpan:
    """The ciphertext to read for file bytes [start, end) (0 <= start <= end <= cipher.size)."""
    if not 0 <= start <= end <= cipher.size:
        raise StreamError(f"range {start}-{end} outside an encrypted file of {cipher.size} bytes")
    first = cipher.offset + start
    block = first - first % BLOCK
    last = cipher.offset + end
    ciphertext_end = -(-last // BLOCK) * BLOCK
    with_iv = block >= BLOCK
    return CipherSpan(
        block - BLOCK if with_iv else block, ciphertext_end, with_iv, first - block, end - start
    )


class CbcWindow:
    """Turns the ciphertext of one `CipherSpan`, fed in pieces of any size, into plaintext."""

    def __init__(self, cipher: Cipher, span: CipherSpan) -> None:
        self._key = cipher.key
        self._iv = bytearray()
        self._decryptor: Any = None if span.with_iv else self._decryptor_from(cipher.iv)
        self._drop = span.drop
        self._left = span.length

    def _decryptor_from(self, iv: bytes) -> Any:
        return _AesCipher(algorithms.AES(self._key), modes.CBC(iv)).decryptor()

    @property
    def done(self) -> bool:
        """Every wanted plaintext byte was produced."""
        return self._left == 0

    def feed(self, data: bytes) -> bytes:
        """Plaintext that the next ciphertext bytes complete (empty until a block is whole)."""
        if self._decryptor is None:
            taken = BLOCK - len(self._iv)
            self._iv += data[:taken]
            if len(self._iv) < BLOCK:
                return b""
            self._decryptor = self._decryptor_from(bytes(self._iv))
            data = data[taken:]
        if not data or self._left == 0:
            return b""
        plain = self._decryptor.update(data)
        if self._drop:
            dropped = min(self._drop, len(plain))
            plain = plain[dropped:]
            self._drop -= dropped
        if len(plain) > self._left:
            plain = plain[: self._left]
        self._left -= len(plain)
        return plain


class DecryptingConsumer:
    """A consumer that decrypts what a RangeStreamer writes and passes the plaintext on."""

    __slots__ = ("_consumer", "_window")

    def __init__(self, consumer: Any, window: CbcWindow) -> None:
        self._consumer = consumer
        self._window = window

    def write(self, data: bytes) -> None:
        """Decrypt `data` (ciphertext, in stream order) and write what it completes."""
        plain = self._window.feed(data)
        if plain:
            self._consumer.write(plain)


def decrypt_range(cipher: Cipher, start: int, end: int, ciphertext: bytes) -> bytes:
    """File bytes [start, end) from the ciphertext of `cipher_span(cipher, start, end)`."""
    span = cipher_span(cipher, start, end)
    if len(ciphertext) < span.end - span.start:
        raise StreamError(
            f"{span.end - span.start} ciphertext bytes needed for {start}-{end}, {len(ciphertext)} given"
        )
    return CbcWindow(cipher, span).feed(ciphertext[: span.end - span.start])
