"""contrib/altmount.service passes systemd's own checker and fits the server's limits."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from altmount.config import load_config
from altmount.oslimits import descriptors_needed
from altmount.supervisor import STOP_GRACE_SECONDS

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "contrib" / "altmount.service"


def service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(UNIT.read_text())
    return parser["Service"]


def test_unit_verifies(tmp_path):
    """systemd-analyze verify accepts the unit (ExecStart pointed at this venv's altmount)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing (Debian's systemd package)")
    altmount = Path(sys.executable).with_name("altmount")
    unit = tmp_path / "altmount.service"
    unit.write_text(UNIT.read_text().replace("/opt/altmount/.venv/bin/altmount", str(altmount)))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_unit_limits_fit_the_server():
    """Stop timeout outlasts the supervisor's grace; LimitNOFILE covers the example config."""
    section = service()
    assert int(section["TimeoutStopSec"]) > STOP_GRACE_SECONDS
    config, _ = load_config(ROOT / "config.example.yaml")
    assert int(section["LimitNOFILE"]) >= descriptors_needed(config)
    assert section["ExecStart"].split()[1:3] == ["serve", "--config"]
