"""tune_malloc: glibc's thresholds for article-sized buffers, unless the user set their own."""

from __future__ import annotations

import os

import pytest

from altmount.malloc import tune_malloc

GLIBC = os.confstr("CS_GNU_LIBC_VERSION") or ""


@pytest.mark.skipif(not GLIBC.startswith("glibc"), reason="glibc only")
def test_thresholds_are_set_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    """On glibc with no malloc settings of the user's, both mallopt calls succeed."""
    for name in ("GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    assert tune_malloc() is True


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=131072"),
        ("MALLOC_MMAP_THRESHOLD_", "131072"),
        ("MALLOC_TRIM_THRESHOLD_", "131072"),
    ],
)
def test_the_users_own_settings_win(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """Malloc settings in the environment are left as the user made them."""
    monkeypatch.setenv(name, value)
    assert tune_malloc() is False


def test_other_tunables_do_not_stop_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """GLIBC_TUNABLES that set no malloc parameter leave the thresholds to us."""
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.cpu.hwcaps=-AVX512F")
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    assert tune_malloc() is GLIBC.startswith("glibc")
