"""Keys of encrypted RAR archives and decryption of their headers (no I/O).

RAR 5 (rarlab.com/technote.htm, "Archive encryption header" and "File
encryption record"): AES-256-CBC; the key is PBKDF2-HMAC-SHA256 of the UTF-8
password and a 16-byte salt over 2^n iterations, and the same chain run 32
iterations further, folded to 8 bytes, is the password check value stored in
the headers, so a wrong password shows before any data is read.

RAR 4 (RAR 3.x's crypt3: SetKey30): AES-128-CBC; key and IV come from one
SHA-1 over 2^18 rounds of password (UTF-16LE) + 8-byte salt + a 3-byte
little-endian round counter, the IV bytes read from the digest at every 2^14th
round. The input of a stretch of rounds is laid out at once with numpy and
hashed in one update, the running digest copied at the IV checkpoints.

Decryption itself runs in OpenSSL through `cryptography`.
"""

from __future__ import annotations

import hashlib

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from altmount.archive.rar import Block, Crypt, Kind
from altmount.errors import ArchiveError

__all__ = [
    "MAX_KDF_LG2",
    "MAX_KEYS",
    "MAX_RAR4_PASSWORD",
    "rar5_key",
    "rar5_password_check",
    "rar4_key",
    "aes_cbc_decrypt",
    "RarKeys",
    "Rar5Headers",
    "Rar4Headers",
]

#: rar writes 2^15 iterations; unrar accepts up to 2^24, which is seconds of CPU
#: on the reactor per derivation, so a release asking for more than 2^20 is refused.
MAX_KDF_LG2 = 20
#: Distinct keys derived per import: rar uses one salt per archive, and a release
#: of many archives stays far below this; more is an attack on the CPU.
MAX_KEYS = 64
#: RAR 3.x hashes password + salt with a SHA-1 that writes its message schedule
#: back into any 64-byte block it reads straight from the input, which happens
#: only when UTF-16 password + salt exceed 64 bytes (unrar's sha1_process_rar29).
#: Longer passwords would need that SHA-1 rewritten in Python; they are refused.
MAX_RAR4_PASSWORD = 28

_RAR4_ROUNDS = 1 << 18
_RAR4_IV_EVERY = _RAR4_ROUNDS // 16
_BLOCK = 16


def rar5_key(password: str, salt: bytes, lg2_count: int) -> bytes:
    """The AES-256 key of a RAR 5 archive or file for `password`."""
    return hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, 1 << lg2_count)


def rar5_password_check(password: str, salt: bytes, lg2_count: int) -> bytes:
    """The 8-byte password check value RAR 5 stores next to the salt.

    unrar's pbkdf2 keeps iterating after the key: 32 iterations on, its value
    (PBKDF2 of 2^n + 32 iterations) XOR-folded to 8 bytes is the check.
    """
    value = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, (1 << lg2_count) + 32)
    folded = bytearray(8)
    for index, byte in enumerate(value):
        folded[index % 8] ^= byte
    return bytes(folded)


def rar4_key(password: str, salt: bytes) -> tuple[bytes, bytes]:
    """(AES-128 key, IV) of RAR 3.x encryption for `password` and an 8-byte salt (or none).

    Raises ArchiveError for passwords longer than MAX_RAR4_PASSWORD UTF-16 units.
    """
    secret = password.encode("utf-16-le") + salt
    if len(secret) > 2 * MAX_RAR4_PASSWORD + 8:
        raise ArchiveError(
            f"RAR 4 encryption with a password longer than {MAX_RAR4_PASSWORD} characters is not supported"
        )
    width = len(secret) + 3
    rounds = np.empty((_RAR4_IV_EVERY, width), dtype=np.uint8)
    rounds[:, : len(secret)] = np.frombuffer(secret, dtype=np.uint8)
    digest = hashlib.sha1()
    iv = bytearray()
    # Round I is hashed, then when I % 2^14 == 0 the IV byte is read: the
    # checkpoints fall after rounds 0, 2^14, 2*2^14 ... so stretches run 1..2^14.
    done = 0
    while done < _RAR4_ROUNDS:
        count = 1 if done == 0 else min(_RAR4_IV_EVERY, _RAR4_ROUNDS - done)
        counters = np.arange(done, done + count, dtype="<u4").view(np.uint8).reshape(count, 4)
        rounds[:count, len(secret) :] = counters[:, :3]
        digest.update(rounds[:count].data)
        done += count
        if (done - 1) % _RAR4_IV_EVERY == 0:
            iv.append(digest.copy().digest()[19])
    final = digest.digest()
    # The key is the first four digest words, each stored little-endian.
    key = b"".join(final[i : i + 4][::-1] for i in range(0, 16, 4))
    return key, bytes(iv)


def aes_cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-CBC decryption of whole 16-byte blocks."""
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return decryptor.update(data) + decryptor.finalize()


class RarKeys:
    """The keys one import's password opens, each derived once (by format, salt and rounds)."""

    def __init__(self, password: str) -> None:
        self.password = password
        self._rar5: dict[tuple[bytes, int], bytes] = {}
        self._checks: dict[tuple[bytes, int], bytes] = {}
        self._rar4: dict[bytes, tuple[bytes, bytes]] = {}
        self._salts: set[tuple[int, bytes, int]] = set()

    def data_key(self, crypt: Crypt, label: str) -> tuple[bytes, bytes] | None:
        """(key, IV) of an encrypted member's data; None without a password or when the
        check value says it is wrong. Raises ArchiveError for unsupported parameters."""
        if not self.password:
            return None
        if crypt.version == 5:
            key = self.rar5(crypt, label)
            return None if key is None else (key, crypt.iv)
        return self.rar4(crypt.salt, label)

    def rar5(self, crypt: Crypt, label: str) -> bytes | None:
        """The RAR 5 key for `crypt`, or None when its password check value rejects the password."""
        where = (crypt.salt, crypt.lg2_count)
        if crypt.check is not None:
            check = self._checks.get(where)
            if check is None:
                self._count(label, 5, *where)
                check = rar5_password_check(self.password, *where)
                self._checks[where] = check
            if check != crypt.check:
                return None
        key = self._rar5.get(where)
        if key is None:
            self._count(label, 5, *where)
            key = rar5_key(self.password, *where)
            self._rar5[where] = key
        return key

    def rar4(self, salt: bytes, label: str) -> tuple[bytes, bytes]:
        """The RAR 4 (key, IV) for `salt`."""
        known = self._rar4.get(salt)
        if known is None:
            self._count(label, 4, salt, 0)
            try:
                known = rar4_key(self.password, salt)
            except ArchiveError as exc:
                raise ArchiveError(f"{label}: {exc}") from None
            self._rar4[salt] = known
        return known

    def headers(self, block: Block, label: str) -> Rar5Headers | Rar4Headers | None:
        """The decryptor of the headers after `block` (a RAR 5 encryption header or a RAR 4
        main header marking encrypted headers); None without a password or when RAR 5's
        check value rejects it."""
        if not self.password:
            return None
        if block.kind is Kind.ENCRYPTION and block.crypt is not None:
            key = self.rar5(block.crypt, label)
            return None if key is None else Rar5Headers(key, block.crypt.check is not None)
        return Rar4Headers(self, label)

    def _count(self, label: str, version: int, salt: bytes, lg2_count: int) -> None:
        """Refuse a derivation past the limits before spending the CPU on it."""
        if lg2_count > MAX_KDF_LG2:
            raise ArchiveError(
                f"{label}: RAR key derivation of 2^{lg2_count} rounds refused (rar writes 2^15, "
                f"at most 2^{MAX_KDF_LG2} accepted)"
            )
        self._salts.add((version, salt, lg2_count))
        if len(self._salts) > MAX_KEYS:
            raise ArchiveError(f"{label}: more than {MAX_KEYS} different RAR keys in one release")


class Rar5Headers:
    """RAR 5 encrypted headers: each is a 16-byte IV, then the header padded to 16 bytes,
    all with the key of the archive encryption header."""

    prefix_size = 16

    def __init__(self, key: bytes, verified: bool) -> None:
        self._key = key
        #: True when the password check value proved the key, so a bad CRC is damage.
        self.verified = verified

    def decrypt(self, prefix: bytes, ciphertext: bytes) -> bytes:
        """Plaintext of `ciphertext` (whole blocks) after the IV `prefix`."""
        return aes_cbc_decrypt(self._key, prefix, ciphertext)


class Rar4Headers:
    """RAR 4 encrypted headers: each is an 8-byte salt, then the header padded to 16 bytes,
    with the key and IV that password and salt give. Nothing checks the password but
    the header CRC."""

    prefix_size = 8
    verified = False

    def __init__(self, keys: RarKeys, label: str) -> None:
        self._keys = keys
        self._label = label

    def decrypt(self, prefix: bytes, ciphertext: bytes) -> bytes:
        """Plaintext of `ciphertext` (whole blocks) after the salt `prefix`."""
        key, iv = self._keys.rar4(prefix, self._label)
        return aes_cbc_decrypt(key, iv, ciphertext)
