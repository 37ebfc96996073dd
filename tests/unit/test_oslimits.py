"""The server raises its own open-files limit and says when the hard limit is too low.

Each case runs in a child process: lowering RLIMIT_NOFILE's hard limit cannot be undone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from altmount.config import Config, ProviderConfig
from altmount.oslimits import BASE_DESCRIPTORS, CLIENT_CONNECTIONS, descriptors_needed


def run_with_limits(soft: int, hard: int) -> tuple[dict, str]:
    child = textwrap.dedent(
        f"""
        import json, logging, resource
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))
        from altmount.config import Config
        from altmount.oslimits import raise_open_files_limit
        print(json.dumps(raise_open_files_limit(Config()).as_dict()))
        print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, check=True, timeout=60
    )
    report, actual = done.stdout.splitlines()
    figures = json.loads(report)
    assert figures["soft"] == int(actual)
    return figures, done.stderr


def test_soft_limit_is_raised_to_the_hard_limit():
    """A soft limit of 256 under a hard one of 4096 becomes 4096, logged at INFO."""
    figures, log = run_with_limits(256, 4096)
    assert figures == {
        "soft": 4096,
        "hard": 4096,
        "raised_from": 256,
        "needed": descriptors_needed(Config()),
        "sufficient": True,
    }
    assert "INFO open-files limit 4096 (raised from 256" in log


def test_a_low_hard_limit_is_reported():
    """A hard limit below the need leaves the server up with one warning naming LimitNOFILE."""
    figures, log = run_with_limits(200, 300)
    assert figures["soft"] == 300 and figures["sufficient"] is False
    assert "WARNING open-files limit 300 is below" in log and "LimitNOFILE" in log


def test_need_counts_enabled_providers_twice():
    """Each provider connection is a socket plus a slot lock; disabled providers count nothing."""
    providers = (
        ProviderConfig(name="a", host="a", max_connections=50),
        ProviderConfig(name="b", host="b", max_connections=30, enabled=False),
    )
    need = descriptors_needed(Config(providers=providers))
    assert need == BASE_DESCRIPTORS + 100 + CLIENT_CONNECTIONS
