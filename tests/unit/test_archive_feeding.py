"""The want/feed protocol the archive readers share (altmount.archive.feeding)."""

from __future__ import annotations

import pytest

from altmount.archive.feeding import Feeder
from altmount.archive.rar import RAR5_SIGNATURE
from altmount.archive.scan import VolumeScan
from altmount.errors import ArchiveError


class _Twice(Feeder):
    """Asks for bytes 10-30 of a 25-byte file, then for 0-4; records what it was given."""

    def __init__(self) -> None:
        super().__init__("file.bin", 25)
        self.taken: list[tuple[int, bytes]] = []
        self._want = (10, 20)

    def _take(self, start: int, data: bytes) -> None:
        self.taken.append((start, data))
        self._want = (0, 4) if len(self.taken) == 1 else None


def test_a_read_past_the_end_may_come_back_short_and_all_given_bytes_are_handed_on():
    feeder = _Twice()
    assert feeder.want() == (10, 20) and not feeder.done
    feeder.feed(8, bytes(17))  # bytes 8-25: the file ends at 25
    assert feeder.taken == [(8, bytes(17))]
    assert feeder.want() == (0, 4)
    feeder.feed(0, b"abcdef")
    assert feeder.done and feeder.want() is None
    feeder.feed(0, b"ignored once done")
    assert len(feeder.taken) == 2


@pytest.mark.parametrize(
    ("start", "data", "given"),
    [(11, bytes(14), "11-25"), (0, bytes(24), "0-24")],
)
def test_bytes_that_do_not_cover_the_request_name_the_file(start, data, given):
    with pytest.raises(ArchiveError, match=f"^file.bin: bytes 10-30 were asked, {given} given$"):
        _Twice().feed(start, data)


def test_volume_scan_refuses_a_short_read_inside_the_volume():
    scan = VolumeScan(5, 1000, "Show.part1.rar")
    assert scan.want() == (len(RAR5_SIGNATURE), 7)
    with pytest.raises(ArchiveError, match="^Show.part1.rar: bytes 8-15 were asked, 8-10 given$"):
        scan.feed(8, b"ab")
