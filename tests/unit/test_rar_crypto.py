"""Encrypted RAR archives: key derivation against real archives, encrypted header walks,
wrong passwords and fuzzed encrypted headers (only ArchiveError escapes)."""

from __future__ import annotations

import importlib.util
import random
import struct
import time
import zlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from altmount.archive.grouping import Volume, group_volumes, set_members
from altmount.archive.rar import Block, Crypt, Kind, Locked, Need, detect, parse_block
from altmount.archive.rarcrypto import (
    MAX_KEYS,
    MAX_RAR4_PASSWORD,
    Rar5Headers,
    RarKeys,
    aes_cbc_decrypt,
    rar4_key,
    rar5_key,
    rar5_password_check,
)
from altmount.archive.scan import VolumeScan
from altmount.errors import ArchiveError

DATA = Path(__file__).parent.parent / "data" / "rar"
MOVIE = b"\x1a\x45\xdf\xa3" + random.Random(1).randbytes(6000)
RAR5_VOL = [f"rar5-encrypted-vol.part{n}.rar" for n in (1, 2, 3)]
RAR5_HP_VOL = [f"rar5-headers-encrypted-vol.part{n}.rar" for n in (1, 2, 3)]
RAR4_HP_VOL = [f"rar4-headers-encrypted-vol.{ext}" for ext in ("rar", "r00", "r01")]


def load(name: str) -> bytes:
    """A fixture archive's bytes."""
    return (DATA / name).read_bytes()


def rar4writer():
    """The test-side RAR 4 writer module (its key derivation is the plain loop)."""
    spec = importlib.util.spec_from_file_location("rar4writer", DATA / "rar4writer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def walk(name: str, keys: RarKeys | None, data: bytes | None = None, chunk=None) -> VolumeScan:
    """The finished scan of a fixture volume, fed whole or in chunks as it asks."""
    data = load(name) if data is None else data
    scan = VolumeScan(detect(data), len(data), name, keys)
    rng = random.Random(len(data))
    while (wanted := scan.want()) is not None:
        start, size = wanted
        end = len(data) if chunk is None else start + size + chunk(rng)
        scan.feed(start, data[start:end])
    return scan


def member_bytes(names: list[str], keys: RarKeys) -> tuple[bytes, Crypt]:
    """(the pieces of the one non-directory member joined, its Crypt) across volumes."""
    volumes = [
        Volume(i, n, detect(load(n)), len(load(n)), tuple(walk(n, keys).blocks))
        for i, n in enumerate(names)
    ]
    (archive,) = group_volumes(volumes)
    (item,) = set_members(archive)
    joined = b"".join(
        load(names[p.volume])[p.offset : p.offset + p.length] for p in item.member.pieces
    )
    return joined, item.crypt


def test_rar5_check_value_of_a_real_archive():
    """PBKDF2 2^15 + 32 folded to 8 bytes is the check value rar stored for "secret"."""
    (block,) = [b for b in walk("rar5-encrypted.rar", None).blocks if b.kind is Kind.FILE]
    crypt = block.crypt
    assert (crypt.version, crypt.lg2_count, len(crypt.salt), len(crypt.iv)) == (5, 15, 16, 16)
    assert rar5_password_check("secret", crypt.salt, crypt.lg2_count) == crypt.check
    assert rar5_password_check("Secret", crypt.salt, crypt.lg2_count) != crypt.check


def test_rar5_key_decrypts_a_real_member():
    """The PBKDF2 key and the record's IV decrypt rar's -p member to the original bytes."""
    data = load("rar5-encrypted.rar")
    (block,) = [b for b in walk("rar5-encrypted.rar", None).blocks if b.kind is Kind.FILE]
    assert block.data_size == 6016 and block.unpacked_size == len(MOVIE)
    key = rar5_key("secret", block.crypt.salt, block.crypt.lg2_count)
    plain = aes_cbc_decrypt(key, block.crypt.iv, data[block.data_offset : block.next_offset])
    assert plain[: len(MOVIE)] == MOVIE


def test_rar5_volumes_hold_one_cbc_stream():
    """rar cuts one CBC stream anywhere across volumes; restarting per volume is wrong."""
    keys = RarKeys("secret")
    joined, crypt = member_bytes(RAR5_VOL, keys)
    pieces = [b for n in RAR5_VOL for b in walk(n, None).blocks if b.kind is Kind.FILE]
    assert [p.data_size for p in pieces] == [2246, 2245, 1525]
    assert {p.crypt.iv for p in pieces} == {crypt.iv}
    key, iv = keys.data_key(crypt, "x")
    assert aes_cbc_decrypt(key, iv, joined)[: len(MOVIE)] == MOVIE
    second = load(RAR5_VOL[1])[pieces[1].data_offset :][:2240]
    assert aes_cbc_decrypt(key, iv, second) != MOVIE[2246 : 2246 + 2240]


def test_rar4_key_is_the_vector_rar_accepts():
    """The key and IV of "secret" and salt b"altmount" (rar4-encrypted.rar passes `rar t`)."""
    key, iv = rar4_key("secret", b"altmount")
    assert key.hex() == "4d8df1fb16e69a8de2f7dc069a0895ee"
    assert iv.hex() == "5c95c4e1e7d05e7ac2bff0345ed36220"


@pytest.mark.parametrize(
    ("password", "salt"),
    [("secret", b"altmount"), ("pässwörd €", b"\x00\xff" * 4), ("x" * MAX_RAR4_PASSWORD, b"")],
)
def test_rar4_key_equals_the_round_by_round_loop(password, salt):
    """The batched SHA-1 gives what 2^18 single updates (unrar's loop) give."""
    assert rar4_key(password, salt) == rar4writer().rar3_key(password, salt)


def test_rar4_long_password_is_refused():
    """Passwords past 28 UTF-16 units would need RAR 3.x's SHA-1 quirk: refused, not guessed."""
    with pytest.raises(ArchiveError, match="longer than 28 characters is not supported"):
        rar4_key("y" * (MAX_RAR4_PASSWORD + 1), b"altmount")


def test_key_derivation_timings():
    """Deriving a key takes tens of milliseconds, not seconds (timings printed)."""
    started = time.perf_counter()
    rar5_key("secret", bytes(16), 15)
    rar5 = time.perf_counter() - started
    started = time.perf_counter()
    rar5_password_check("secret", bytes(16), 15)
    check = time.perf_counter() - started
    started = time.perf_counter()
    rar4_key("secret", b"altmount")
    rar4 = time.perf_counter() - started
    print(f"\nRAR5 key {rar5 * 1e3:.1f} ms, check {check * 1e3:.1f} ms, RAR4 {rar4 * 1e3:.1f} ms")
    assert max(rar5, check, rar4) < 0.5


def test_rar4_encrypted_data_decrypts():
    """A RAR 4 -p member (salt in its header) decrypts with the SHA-1 key and IV."""
    joined, crypt = member_bytes(["rar4-encrypted.rar"], RarKeys("secret"))
    assert crypt == Crypt(4, b"altmount")
    key, iv = rar4_key("secret", crypt.salt)
    assert aes_cbc_decrypt(key, iv, joined)[: len(MOVIE)] == MOVIE


@pytest.mark.parametrize("chunk", [None, lambda rng: 0, lambda rng: rng.randint(0, 40)])
def test_rar5_encrypted_headers_walked(chunk):
    """-hp headers decrypt (IV + padded header) however the bytes are fed."""
    blocks = walk("rar5-headers-encrypted.rar", RarKeys("secret"), chunk=chunk).blocks
    kinds = [Kind.ENCRYPTION, Kind.MAIN, Kind.FILE, Kind.SERVICE, Kind.END]
    assert [b.kind for b in blocks] == kinds
    assert blocks[1].data_offset == blocks[1].offset + 32  # IV + one block
    joined, crypt = member_bytes(["rar5-headers-encrypted.rar"], RarKeys("secret"))
    key = rar5_key("secret", crypt.salt, crypt.lg2_count)
    assert aes_cbc_decrypt(key, crypt.iv, joined)[: len(MOVIE)] == MOVIE


@pytest.mark.parametrize(("names", "version"), [(RAR5_HP_VOL, 5), (RAR4_HP_VOL, 4)])
def test_encrypted_header_volumes_give_the_member(names, version):
    """Header-encrypted volumes group and their pieces, cut anywhere (one CBC stream: `rar t`
    accepts the RAR 4 ones), decrypt to the original."""
    keys = RarKeys("secret")
    sizes = [b.data_size for n in names for b in walk(n, keys).blocks if b.name.endswith(".mkv")]
    assert len(sizes) == 3 and any(size % 16 for size in sizes)
    joined, crypt = member_bytes(names, keys)
    assert crypt.version == version
    key, iv = keys.data_key(crypt, "x")
    assert aes_cbc_decrypt(key, iv, joined)[: len(MOVIE)] == MOVIE


@pytest.mark.parametrize("password", ["", "wrong"])
@pytest.mark.parametrize(
    ("name", "stop"),
    [
        ("rar5-headers-encrypted.rar", Kind.ENCRYPTION),
        ("rar4-headers-encrypted-vol.rar", Kind.MAIN),
    ],
)
def test_no_or_wrong_password_locks_the_walk(password, name, stop):
    """Without the password the walk stops where encrypted headers begin, and says so."""
    scan = walk(name, RarKeys(password))
    assert scan.locked and scan.done
    assert [b.kind for b in scan.blocks] == [stop]
    assert walk(name, None).locked


def test_wrong_password_is_told_by_the_check_value_alone():
    """A RAR 5 check value rejects a wrong password without any header being decrypted."""
    blocks = walk("rar5-headers-encrypted.rar", None).blocks
    keys = RarKeys("wrong")
    assert keys.headers(blocks[0], "x") is None
    assert keys.data_key(walk("rar5-encrypted.rar", None).blocks[1].crypt, "x") is None


def test_damaged_header_with_a_proved_key_is_corruption():
    """A flipped byte in an encrypted RAR 5 header is a CRC error once the check value
    proved the key; with RAR 4's unproved key it locks the walk."""
    data = bytearray(load("rar5-headers-encrypted.rar"))
    data[150] ^= 0x01  # in the third AES block of the encrypted file header
    with pytest.raises(ArchiveError, match="header CRC mismatch"):
        walk("bad.rar", RarKeys("secret"), bytes(data))
    data = bytearray(load("rar4-headers-encrypted-vol.rar"))
    data[60] ^= 0x01
    assert walk("bad.rar", RarKeys("secret"), bytes(data)).locked


def test_damaged_check_value_proves_nothing():
    """A check value whose own checksum fails is ignored (unrar does the same)."""
    data = load("rar5-encrypted.rar")
    file_block = walk("rar5-encrypted.rar", None).blocks[1]
    header = bytearray(data[file_block.offset : file_block.data_offset])
    at = header.index(file_block.crypt.check)
    header[at] ^= 0xFF
    header[:4] = zlib.crc32(header[4:]).to_bytes(4, "little")
    block = parse_block(5, bytes(header), file_block.offset, len(data), "x.rar")
    assert isinstance(block, Block) and block.encrypted and block.crypt.check is None


def test_key_derivation_limits():
    """Absurd iteration counts and more distinct keys than a release needs are refused."""
    keys = RarKeys("secret")
    with pytest.raises(ArchiveError, match=r"x\.rar: RAR key derivation of 2\^21 rounds refused"):
        keys.data_key(Crypt(5, bytes(16), 21, bytes(16)), "x.rar")
    for n in range(MAX_KEYS):
        keys.data_key(Crypt(5, n.to_bytes(16, "little"), 0, bytes(16)), "x.rar")
    with pytest.raises(ArchiveError, match="more than 64 different RAR keys"):
        keys.data_key(Crypt(5, b"\xff" * 16, 0, bytes(16)), "x.rar")
    with pytest.raises(ArchiveError, match="x.rar: RAR 4 encryption with a password longer"):
        RarKeys("z" * 40).data_key(Crypt(4, b"altmount"), "x.rar")


def test_need_before_the_first_encrypted_block():
    """An encrypted header asks for IV + one block, then for its padded size."""
    data = load("rar5-headers-encrypted.rar")
    headers = RarKeys("secret").headers(walk("rar5-headers-encrypted.rar", None).blocks[0], "x")
    assert parse_block(5, data[46:60], 46, len(data), "x", headers) == Need(32)
    need = parse_block(5, data[78:110], 78, len(data), "x", headers)
    assert need == Need(16 + 96)


_KEY, _IV = bytes(range(32)), bytes(range(16, 32))


def encrypted_rar5(fields: bytes) -> bytes:
    """IV + a RAR 5 header around `fields` (type onwards), CRC'd, padded, encrypted."""
    body = bytes([len(fields)]) + fields
    plain = zlib.crc32(body).to_bytes(4, "little") + body
    plain += bytes(-len(plain) % 16)
    encryptor = Cipher(algorithms.AES(_KEY), modes.CBC(_IV)).encryptor()
    return _IV + encryptor.update(plain) + encryptor.finalize()


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=120), st.booleans(), st.integers(0, 200))
def test_fuzzed_encrypted_rar5_headers(fields, verified, slack):
    """Random encrypted headers with good CRCs parse, lock or raise ArchiveError, nothing else."""
    header = encrypted_rar5(fields)
    headers = Rar5Headers(_KEY, verified)
    try:
        result = parse_block(5, header, 8, 8 + len(header) + slack, "fuzz.rar", headers)
    except ArchiveError as exc:
        assert "fuzz.rar" in str(exc)
        return
    assert isinstance(result, Block | Need | Locked)


@settings(max_examples=150, deadline=None)
@given(
    st.binary(min_size=1, max_size=40),
    st.sampled_from(
        ["rar5-headers-encrypted.rar", "rar5-encrypted.rar", "rar4-encrypted.rar", *RAR4_HP_VOL]
    ),
    st.integers(0, 300),
)
def test_fuzzed_encrypted_volumes_walk_or_raise_archive_error(noise, name, at):
    """Damaged encrypted volumes, walked with the right password, give blocks, a lock or
    an ArchiveError naming the volume."""
    data = bytearray(load(name))
    data[at : at + len(noise)] = noise
    try:
        walk(name, RarKeys("secret"), bytes(data))
    except ArchiveError as exc:
        assert name in str(exc)


_RAR4_KEYS = RarKeys("secret")


def rar4_header(kind: int, flags: int, body: bytes, encrypted: bool) -> bytes:
    """A RAR 4 header with a correct CRC; encrypted behind the salt b"altmount" on request."""
    header = struct.pack("<BHH", kind, flags, 7 + len(body)) + body
    plain = struct.pack("<H", zlib.crc32(header) & 0xFFFF) + header
    if not encrypted:
        return plain
    key, iv = _RAR4_KEYS.rar4(b"altmount", "x")
    padded = plain + bytes(-len(plain) % 16)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return b"altmount" + encryptor.update(padded) + encryptor.finalize()


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([0x73, 0x74, 0x7A, 0x7B, 0x75]),
    st.integers(0, 0xFFFF),
    st.binary(max_size=80),
    st.booleans(),
    st.integers(0, 200),
)
def test_fuzzed_rar4_headers_with_good_crcs(kind, flags, body, encrypted, slack):
    """RAR 4 headers of any flags (salt, large sizes, names) with good CRCs, plain or
    encrypted, parse, lock or raise ArchiveError, nothing else."""
    header = rar4_header(kind, flags, body, encrypted)
    headers = _RAR4_KEYS.headers(Block(Kind.MAIN, 7, 20, headers_encrypted=True), "x")
    try:
        result = parse_block(
            4, header, 7, 7 + len(header) + slack, "fuzz.rar", headers if encrypted else None
        )
    except ArchiveError as exc:
        assert "fuzz.rar" in str(exc)
        return
    assert isinstance(result, Block | Need | Locked)
