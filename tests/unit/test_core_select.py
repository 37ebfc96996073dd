"""Choosing the `_core` implementation: Cython by default, the twins on request."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter from the source tree with extra env vars."""
    environ = {k: v for k, v in os.environ.items() if k != "ALTMOUNT_PURE"}
    environ.update(env)
    environ["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_pure_env_selects_twins() -> None:
    """ALTMOUNT_PURE=1 makes `_core` use the pure-Python twins."""
    code = "import altmount._core as c; print(c.IMPLEMENTATION, c.decode_article.__module__)"
    result = run_python(code, ALTMOUNT_PURE="1")
    assert result.stdout.split() == ["python", "altmount._core.yenc_py"], result.stderr


def test_default_is_cython() -> None:
    """Without ALTMOUNT_PURE the compiled kernels are used."""
    pytest.importorskip("altmount._core._yenc")
    pytest.importorskip("altmount._core._ranges")
    code = "import altmount._core as c; print(c.IMPLEMENTATION, c.plan_range.__module__)"
    result = run_python(code)
    assert result.stdout.split() == ["cython", "altmount._core._ranges"], result.stderr


def test_missing_extension_is_an_error() -> None:
    """A missing extension raises AltmountError telling the user to run pip install."""
    code = (
        "import sys; sys.modules['altmount._core._yenc'] = None\n"
        "from altmount.errors import AltmountError\n"
        "try:\n"
        "    import altmount._core\n"
        "except AltmountError as exc:\n"
        "    print('refused:', exc)\n"
    )
    result = run_python(code)
    assert result.stdout.startswith("refused:"), result.stderr
    assert "pip install ." in result.stdout


def test_public_api() -> None:
    """`_core` exports exactly the documented names."""
    import altmount._core as core

    assert sorted(core.__all__) == sorted(
        [
            "IMPLEMENTATION",
            "DecodedArticle",
            "RangePlan",
            "decode_article",
            "find_body_end",
            "plan_range",
            "assemble_range",
        ]
    )
    assert core.IMPLEMENTATION in ("cython", "python")
