"""The per-host connection budget: slot files locked with flock, shared by processes.

Two `SlotBudget`s in one process open their own descriptors, and flock locks belong
to open file descriptions, so they contend exactly as two processes would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from altmount.errors import ConfigError
from altmount.nntp.budget import (
    HOLDING_POLL_SECONDS,
    WAITING_POLL_SECONDS,
    SlotBudget,
    UnlimitedBudget,
    budget_dir,
    provider_key,
)


class Clock:
    """A hand-moved clock: scans of the other processes are cached per instant."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def tick(self) -> None:
        self.now += 1.0


@pytest.fixture
def clock():
    return Clock()


def budget(path, clock, limit=4, pid=None):
    return SlotBudget(path, "news-563-abc", limit, clock=clock, pid=pid)


def test_slots_are_shared_between_budgets(tmp_path, clock):
    """What one budget holds the other cannot take; a released slot is free at once."""
    a, b = budget(tmp_path, clock, 3, pid=1), budget(tmp_path, clock, 3, pid=2)
    leases = [a.try_acquire() for _ in range(3)]
    assert all(leases) and a.held == 3
    assert b.try_acquire() is None
    leases[1].release()
    leases[1].release()  # idempotent
    assert a.held == 2
    assert b.try_acquire() is not None
    assert a.try_acquire() is None


def test_a_waiting_process_gets_a_fair_share(tmp_path, clock):
    """A holder of every slot gives back what exceeds its share once another process waits."""
    a, b = budget(tmp_path, clock, 4, pid=1), budget(tmp_path, clock, 4, pid=2)
    held = [a.try_acquire() for _ in range(4)]
    assert a.excess() == 0 and a.poll_delay() == HOLDING_POLL_SECONDS
    assert b.try_acquire() is None
    b.set_waiting(True)
    assert b.poll_delay() == WAITING_POLL_SECONDS
    clock.tick()
    assert a.excess() == 2  # two processes: ceil(4 / 2) each
    held.pop().release()
    assert a.try_acquire() is None  # at its share of 2 + 1 while b waits: refused
    held.pop().release()
    assert b.try_acquire() is not None and b.try_acquire() is not None
    b.set_waiting(False)
    clock.tick()
    assert a.excess() == 0


def test_close_frees_slots_and_files(tmp_path, clock):
    """close() releases every slot and withdraws the membership and want files."""
    a, b = budget(tmp_path, clock, 2, pid=1), budget(tmp_path, clock, 2, pid=2)
    a.try_acquire()
    a.set_waiting(True)
    a.close()
    assert a.held == 0 and a.poll_delay() is None
    assert sorted(p.name for p in a.path.iterdir() if not p.name.startswith("slot-")) == []
    assert b.try_acquire() is not None and b.try_acquire() is not None


def test_killed_process_frees_its_slots_and_counts_no_more(tmp_path, clock):
    """kill -9 of a holder frees its slots (the kernel drops the locks) and its files are
    recognised as stale: the survivor's share is the whole limit again."""
    child = textwrap.dedent(
        f"""
        import sys, time
        from altmount.nntp.budget import SlotBudget
        b = SlotBudget({str(tmp_path)!r}, "news-563-abc", 4, clock=time.monotonic)
        leases = [b.try_acquire() for _ in range(3)]
        b.set_waiting(True)
        print(sum(1 for lease in leases if lease), flush=True)
        time.sleep(60)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "3"
        mine = budget(tmp_path, clock)
        assert mine.try_acquire() is not None
        assert mine.try_acquire() is None
        assert mine.excess() == 0  # the waiter holds 3 > its share: nothing for us to shed
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    clock.tick()
    assert [mine.try_acquire() is not None for _ in range(4)] == [True, True, True, False]
    mine.set_waiting(True)
    clock.tick()
    assert mine.excess() == 0
    names = {p.name for p in mine.path.iterdir()}
    assert f"member-{process.pid}" not in names and f"want-{process.pid}" not in names


def test_unwritable_lease_folder_is_a_config_error(tmp_path, clock):
    """A lease folder that cannot be made names database.path."""
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="database.path"):
        budget(tmp_path / "file", clock)


def test_unlimited_budget_counts_up_to_its_limit():
    """The in-process budget hands out `limit` leases and takes them back."""
    unlimited = UnlimitedBudget(2)
    first, second = unlimited.try_acquire(), unlimited.try_acquire()
    assert first and second and unlimited.try_acquire() is None
    first.release()
    assert unlimited.held == 1 and unlimited.poll_delay() is None


def test_keys_and_folder_names():
    """One folder beside the database; one key per host, port and account, file-name safe."""
    assert budget_dir("/var/lib/altmount/altmount.db").name == "altmount.db.leases"
    key = provider_key("news.example.com", 563, "alice")
    assert key.startswith("news.example.com-563-") and "/" not in key
    assert key != provider_key("news.example.com", 563, "bob")
    assert "/" not in provider_key("../../etc", 119, "")
