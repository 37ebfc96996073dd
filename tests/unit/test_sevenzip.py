"""The 7z header parser, key derivation, scan and set grouping, on archives made by 7zz."""

from __future__ import annotations

import hashlib
import importlib.util
import random
import time
from pathlib import Path

import pytest

from altmount.archive.model import Piece
from altmount.archive.sevenzip import parse_next_header, parse_start_header
from altmount.archive.sevenzip_codec import KeyRing, derive_key
from altmount.archive.sevenzip_members import SevenZipMember, volume_pieces
from altmount.archive.sevenzip_model import AesParams, Header, StreamsInfo
from altmount.archive.sevenzip_scan import LOOKBEHIND, SevenZipScan
from altmount.archive.sevenzip_sets import PostedFile, find_sets
from altmount.errors import ArchiveError
from altmount.metadata import Cipher
from altmount.stream.cbc import cipher_span, decrypt_range

DATA = Path(__file__).parent.parent / "data" / "7z"
MOVIE = b"\x1a\x45\xdf\xa3" + random.Random(1).randbytes(6000)
NOTES = b"compressible text " * 300
SPLIT = [f"copy-split.7z.{n:03d}" for n in (1, 2, 3)]


def writer():
    """The test-side 7z writer module (solid copy folders)."""
    spec = importlib.util.spec_from_file_location("sevenzip_writer", DATA / "sevenzip_writer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scanned(volumes: list[bytes], password: str = "", name: str = "set.7z"):
    """(scan, number of reads) after walking the header of the set of `volumes`."""
    archive = b"".join(volumes)
    scan = SevenZipScan(name, volumes[0][:1024], [len(v) for v in volumes], KeyRing(password))
    reads = 0
    while (wanted := scan.want()) is not None:
        offset, size = wanted
        scan.feed(offset, archive[offset : offset + size])
        reads += 1
    return scan, reads


def member_bytes(volumes: list[bytes], item: SevenZipMember, key: bytes | None = None) -> bytes:
    """A member's bytes from its pieces, decrypted through the streaming CBC code."""
    raw = b"".join(volumes[p.volume][p.offset : p.offset + p.length] for p in item.member.pieces)
    if item.aes is None:
        return raw
    cipher = Cipher(key, item.aes.iv, item.window, item.member.size)
    span = cipher_span(cipher, 0, cipher.size)
    return decrypt_range(cipher, 0, cipher.size, raw[span.start : span.end])


def fixture(*names: str) -> list[bytes]:
    """The bytes of fixture files."""
    return [(DATA / name).read_bytes() for name in names]


def _sizes(volumes: list[bytes]) -> tuple[bytes, list[int]]:
    """The head and volume sizes a SevenZipScan starts from."""
    return volumes[0][:1024], [len(v) for v in volumes]


@pytest.mark.parametrize(
    ("name", "reads"), [("copy-plain.7z", 1), ("copy-lzma-header.7z", 1), ("tree.7z", 1)]
)
def test_copy_members_are_byte_exact(name, reads):
    """Copy members of plain and LZMA-coded headers read back byte-exact in one read."""
    volumes = fixture(name)
    scan, count = scanned(volumes)
    assert count == reads and not scan.headers_encrypted
    got = {m.member.path: member_bytes(volumes, m) for m in scan.members()}
    expected = {"movie.mkv": MOVIE, "notes.txt": NOTES}
    if name == "tree.7z":
        expected = {"Season/E01.mkv": MOVIE, "notes.txt": NOTES}
    assert got == expected


def test_split_volumes_make_one_archive():
    """The member of a 3-piece split set has pieces in all three volumes, byte-exact."""
    volumes = fixture(*SPLIT)
    scan, _ = scanned(volumes)
    (item,) = scan.members()
    assert [p.volume for p in item.member.pieces] == [0, 1, 2]
    assert member_bytes(volumes, item) == MOVIE


def test_packed_header_before_the_lookbehind_costs_a_second_read(monkeypatch):
    """Without the look-behind, an LZMA header needs the tail read and then its packed stream."""
    monkeypatch.setattr("altmount.archive.sevenzip_scan.LOOKBEHIND", 0)
    _, reads = scanned(fixture("copy-lzma-header.7z"))
    assert reads == 2


def test_first_read_is_the_tail_with_the_lookbehind():
    """The scan asks for the next header and the look-behind before it, nothing else."""
    volumes = fixture(*SPLIT)
    scan = SevenZipScan("s.7z", volumes[0][:1024], [len(v) for v in volumes], KeyRing(""))
    offset, size = scan.want()
    assert offset + size == sum(map(len, volumes))
    assert offset == max(0, scan.start.next_header_start - LOOKBEHIND)


def test_feed_takes_whole_articles_around_the_wanted_bytes():
    """Bytes starting before and running past the wanted range are fine; too few are an error."""
    archive = (DATA / "copy-lzma-header.7z").read_bytes()
    scan = SevenZipScan("a.7z", *_sizes([archive]), KeyRing(""))
    offset, size = scan.want()
    with pytest.raises(ArchiveError, match="were asked"):
        scan.feed(offset, archive[offset : offset + size - 1])
    scan.feed(0, archive + b"padding")
    assert scan.done and len(scan.members()) == 2


@pytest.mark.parametrize("name", ["encrypted-headers.7z", "encrypted-data.7z"])
def test_aes_members_decrypt_byte_exact(name):
    """AES-256 copy members decrypt to the original bytes with the password."""
    volumes = fixture(name)
    scan, _ = scanned(volumes, "secret")
    assert scan.headers_encrypted == (name == "encrypted-headers.7z")
    keys = KeyRing("secret")
    for item in scan.members():
        assert item.member.encrypted and item.member.stored
        key = keys.key(item.aes, name)
        expected = {"movie.mkv": MOVIE, "notes.txt": NOTES}[item.member.path]
        assert member_bytes(volumes, item, key) == expected


@pytest.mark.parametrize("password", ["", "wrong"])
def test_encrypted_headers_need_the_right_password(password):
    """-mhe without the right password fails as an encrypted archive."""
    with pytest.raises(ArchiveError, match=r"^set\.7z: encrypted archive, no/wrong password$"):
        scanned(fixture("encrypted-headers.7z"), password)


def test_solid_copy_folder_members_start_mid_folder():
    """Members of one solid copy folder are slices of it; directories and empty files are left out."""
    volumes = fixture("solid-copy.7z")
    scan, _ = scanned(volumes)
    assert len(scan.header.streams.folders) == 1
    got = {m.member.path: member_bytes(volumes, m) for m in scan.members()}
    assert got == {"Season/E01.mkv": MOVIE, "notes.txt": NOTES, "Season/E02.mkv": MOVIE[::-1]}


def test_solid_aes_folder_members_are_cipher_windows():
    """In one AES solid folder, later members start mid-block: their IV is the block before."""
    volumes = fixture("solid-aes.7z")
    scan, _ = scanned(volumes, "secret")
    key = KeyRing("secret").key(scan.members()[0].aes, "x")
    windows = {m.member.path: m.window for m in scan.members()}
    assert windows["Season/E01.mkv"] == 0 and windows["Season/E02.mkv"] >= 16
    got = {m.member.path: member_bytes(volumes, m, key) for m in scan.members()}
    assert got == {"Season/E01.mkv": MOVIE, "notes.txt": NOTES, "Season/E02.mkv": MOVIE[::-1]}


def test_compressed_members_name_their_method():
    """LZMA2 members are not stored and say so by 7-Zip's method name."""
    scan, _ = scanned(fixture("compressed.7z"))
    assert {(m.member.path, m.member.method, m.member.stored) for m in scan.members()} == {
        ("notes.txt", "LZMA2", False),
        ("movie.mkv", "LZMA2", False),
    }


def test_missing_last_volume_is_named():
    """A split set without its last piece is short of the size its header announces."""
    with pytest.raises(ArchiveError, match=r"^volume 3 of copy-split\.7z missing$"):
        SevenZipScan("copy-split.7z", *_sizes(fixture(*SPLIT[:2])), KeyRing(""))


def test_extra_volume_after_the_end_is_damage():
    """A set whose archive ends before its last volume is refused naming it."""
    volumes = fixture(*SPLIT) + [b"x" * 100]
    with pytest.raises(ArchiveError, match="before volume 4"):
        SevenZipScan("copy-split.7z", *_sizes(volumes), KeyRing(""))


@pytest.mark.parametrize(
    ("damage", "phrase"),
    [
        (lambda a: a[:20], "truncated 7z archive"),
        (lambda a: a[:8] + b"\0" + a[9:], "signature header CRC mismatch"),
        (lambda a: b"8" + a[1:], "not a 7z archive"),
        (lambda a: a[:-3] + b"xyz", "header CRC mismatch"),
    ],
)
def test_damage_is_named(damage, phrase):
    """Damaged archives raise ArchiveError naming the archive and the damage."""
    archive = damage((DATA / "copy-plain.7z").read_bytes())
    with pytest.raises(ArchiveError, match=rf"^dmg\.7z: .*{phrase}"):
        scanned([archive], name="dmg.7z")


def test_start_header_points_at_the_tail():
    """The signature header gives the next header's place, size and the archive size."""
    archive = (DATA / "copy-plain.7z").read_bytes()
    start = parse_start_header(archive, "a")
    assert start.archive_size == len(archive)
    parsed = parse_next_header(archive[start.next_header_start :], start, "a")
    assert isinstance(parsed, Header)
    lzma = (DATA / "copy-lzma-header.7z").read_bytes()
    start = parse_start_header(lzma, "b")
    assert isinstance(parse_next_header(lzma[start.next_header_start :], start, "b"), StreamsInfo)


def test_key_derivation_matches_the_round_by_round_definition():
    """The numpy-laid-out derivation equals hashing round by round, with and without salt."""
    reference = writer().key_of
    for cycles in (0, 3, 10):
        assert derive_key("pässwörd", AesParams(cycles, b"", bytes(16))) == reference(
            "pässwörd", cycles
        )
    salted = AesParams(4, b"salt", bytes(16))
    digest = hashlib.sha256()
    for counter in range(16):
        digest.update(b"salt" + "pw".encode("utf-16-le") + counter.to_bytes(8, "little"))
    assert derive_key("pw", salted) == digest.digest()
    assert derive_key("pw", AesParams(0x3F, b"ab", bytes(16))) == b"abp\0w\0".ljust(32, b"\0")


def test_key_derivation_is_fast_and_done_once():
    """2^19 rounds (7-Zip's default) take well under a second, and a KeyRing derives once."""
    keys = KeyRing("secret")
    params = AesParams(19, b"", bytes(16))
    started = time.perf_counter()
    key = keys.key(params, "x")
    elapsed = time.perf_counter() - started
    print(f"\n7z key derivation, 2^19 rounds: {elapsed * 1000:.1f} ms")
    assert key == writer().key_of("secret", 19)
    assert elapsed < 0.5
    assert keys.key(params, "x") is key  # the same object: derived once, not again


def test_key_ring_refuses_absurd_derivations():
    """More rounds than 7-Zip supports, and many different salts, are refused."""
    keys = KeyRing("pw")
    with pytest.raises(ArchiveError, match="2\\^30 rounds"):
        keys.key(AesParams(30, b"", bytes(16)), "x")
    for salt in range(4):
        keys.key(AesParams(1, bytes([salt]), bytes(16)), "x")
    with pytest.raises(ArchiveError, match="more than 4 different"):
        keys.key(AesParams(1, b"\xff", bytes(16)), "x")
    assert KeyRing("").key(AesParams(19, b"", bytes(16)), "x") is None


def test_volume_pieces_cross_volume_boundaries():
    """Archive ranges map onto the volumes that hold them."""
    assert volume_pieces(8, 10, [10, 5, 10]) == (Piece(0, 8, 2), Piece(1, 0, 5), Piece(2, 0, 3))
    assert volume_pieces(10, 5, [10, 5, 10]) == (Piece(1, 0, 5),)


def posted(*names: str, signed: tuple[str, ...] = ()) -> list[PostedFile]:
    """Posted files by name; those in `signed` (and every .001) start with the signature."""
    head = (DATA / "copy-plain.7z").read_bytes()[:32]
    return [
        PostedFile(i, n, head if n in signed or n.endswith(".001") else b"data")
        for i, n in enumerate(names)
    ]


def test_sets_group_by_stem_and_order_by_number():
    """Pieces of two split sets, posted shuffled, make two ordered sets; other files stay out."""
    files = posted("b.7z.002", "A.7z.002", "movie.mkv", "a.7z.001", "b.7z.001", "a.7z.003")
    sets = find_sets(files)
    assert [(s.name, s.volumes, s.problem) for s in sets] == [
        ("b.7z", (4, 0), None),
        ("a.7z", (3, 1, 5), None),
    ]


def test_single_archives_by_name_or_signature():
    """A `.7z` file, and an obfuscated file with the signature, are one-volume sets."""
    sets = find_sets(posted("x.7z", "3fa9c0e1", "notes.nfo", signed=("x.7z", "3fa9c0e1")))
    assert [(s.name, s.volumes, s.problem) for s in sets] == [
        ("x.7z", (0,), None),
        ("3fa9c0e1", (1,), None),
    ]


def test_gap_and_missing_first_volume_are_named():
    """A missing middle or first piece is named by its number."""
    (gap,) = find_sets(posted("s.7z.001", "s.7z.003"))
    assert gap.problem == "volume 2 of s.7z missing" and gap.posted == (0, 1)
    (first,) = find_sets(posted("s.7z.002", "s.7z.003"))
    assert first.problem == "volume 1 of s.7z missing"


def test_first_volume_without_signature_is_damage():
    """A `.7z.001` that does not start with the signature is refused."""
    files = [PostedFile(0, "s.7z.001", b"garbage"), PostedFile(1, "s.7z.002", b"x")]
    (archive,) = find_sets(files)
    assert archive.problem == "s.7z.001: damaged 7z archive: no 7z signature at its start"


def test_reposted_volume_is_read_once_and_hidden():
    """A volume posted twice: the first copy is read, both are hidden."""
    (archive,) = find_sets(posted("s.7z.001", "s.7z.002", "s.7z.002"))
    assert archive.volumes == (0, 1) and archive.posted == (0, 1, 2) and archive.problem is None
