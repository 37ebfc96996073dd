"""Tests for altmount.stream.cbc: range decryption of AES-CBC files from any block on."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher as AesCipher
from cryptography.hazmat.primitives.ciphers import algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from altmount.errors import StreamError
from altmount.metadata import Cipher
from altmount.stream.cbc import CbcWindow, DecryptingConsumer, cipher_span, decrypt_range

KEY = bytes(range(32))
IV = bytes(range(100, 116))
PLAIN = os.urandom(16 * 64)
CIPHERTEXT = AesCipher(algorithms.AES(KEY), modes.CBC(IV)).encryptor().update(PLAIN)


def test_span_reads_one_block_before_the_range() -> None:
    """A range inside the file reads from the block before its first block (the IV)."""
    span = cipher_span(Cipher(KEY, IV, 0, len(PLAIN)), 40, 50)
    assert (span.start, span.end, span.with_iv, span.drop, span.length) == (16, 64, True, 8, 10)


def test_span_at_the_start_uses_the_stored_iv() -> None:
    """The first block has no ciphertext before it: the cipher's IV is used."""
    span = cipher_span(Cipher(KEY, IV, 0, len(PLAIN)), 0, 5)
    assert (span.start, span.end, span.with_iv) == (0, 16, False)


def test_span_outside_the_file_is_refused() -> None:
    """A range past the plaintext size is a caller bug, said plainly."""
    with pytest.raises(StreamError, match="outside"):
        cipher_span(Cipher(KEY, IV, 0, 10), 0, 11)


def test_short_ciphertext_is_refused() -> None:
    """decrypt_range needs the whole span."""
    cipher = Cipher(KEY, IV, 0, len(PLAIN))
    with pytest.raises(StreamError, match="ciphertext bytes needed"):
        decrypt_range(cipher, 20, 40, CIPHERTEXT[:16])


@settings(max_examples=300, deadline=None)
@given(
    offset=st.integers(0, 300),
    data=st.data(),
    pieces=st.lists(st.integers(1, 70), min_size=1, max_size=30),
)
def test_any_window_any_range_any_feed(offset: int, data: st.DataObject, pieces: list[int]) -> None:
    """Every range of every plaintext window decrypts exactly, however the ciphertext is cut."""
    size = data.draw(st.integers(0, len(PLAIN) - offset))
    start = data.draw(st.integers(0, size))
    end = data.draw(st.integers(start, size))
    cipher = Cipher(KEY, IV, offset, size)
    span = cipher_span(cipher, start, end)
    assert span.end <= len(CIPHERTEXT) and span.end - span.start <= end - start + 47
    wanted = PLAIN[offset + start : offset + end]
    assert decrypt_range(cipher, start, end, CIPHERTEXT[span.start : span.end]) == wanted
    written: list[bytes] = []
    consumer = DecryptingConsumer(
        type("Sink", (), {"write": staticmethod(written.append)}), CbcWindow(cipher, span)
    )
    ciphertext, position = CIPHERTEXT[span.start : span.end], 0
    for size_of_piece in pieces * (len(ciphertext) // sum(pieces) + 1):
        consumer.write(ciphertext[position : position + size_of_piece])
        position += size_of_piece
        if position >= len(ciphertext):
            break
    assert b"".join(written) == wanted and all(written)
