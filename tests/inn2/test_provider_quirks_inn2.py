"""INN2's answers that disable a provider, through the pool: 480 to a request when no
credentials are configured, 481 at login until a reload brings the right password.

INN2 cannot be made to answer 400/502 or to forget a login in the middle of a session;
those quirks are tested against the fake server (tests/unit/test_nntp_pool_quirks.py).
"""

from __future__ import annotations

import logging

import pytest
from inn2lib import AUTH_PASSWORD, AUTH_PORT, AUTH_USER, INN2_HOST, skip_without_peers
from twisted.internet import defer, reactor
from twisted.trial import unittest

from altmount.config import NNTPConfig, ProviderConfig
from altmount.errors import ProviderAuthError
from altmount.nntp.pool import ProviderPool
from altmount.nntp.stats import ProviderStats

pytestmark = pytest.mark.inn2
skip_without_peers()

NNTP = NNTPConfig(connect_timeout_seconds=5, request_timeout_seconds=5)


def _pool(username: str = "", password: str = "") -> ProviderPool:
    provider = ProviderConfig(
        name="inn2-auth",
        host=INN2_HOST,
        port=AUTH_PORT,
        tls=False,
        max_connections=2,
        username=username,
        password=password,
    )
    return ProviderPool(reactor, provider, NNTP, ProviderStats("inn2-auth"))


class ProviderQuirksOnINN2(unittest.TestCase):
    """The pool against INN2's reader that needs AUTHINFO (port 1120)."""

    timeout = 30

    @defer.inlineCallbacks
    def test_480_without_credentials_disables_naming_the_fix(self):
        """INN2 answers 480 to STAT on a session that never logged in: the provider is
        disabled with one warning saying to set a username and password."""
        pool = _pool()
        self.addCleanup(pool.close)
        with self.assertLogs("altmount.nntp.pool", logging.WARNING) as logs:
            with self.assertRaises(ProviderAuthError) as raised:
                yield pool.stat("nothing@example.net")
        self.assertIn("480", str(raised.exception))
        self.assertIn("set username and password", str(raised.exception))
        self.assertFalse(pool.enabled)
        self.assertEqual(len([r for r in logs.records if "disabled" in r.getMessage()]), 1)

    @defer.inlineCallbacks
    def test_481_disables_until_reenabled_with_the_right_password(self):
        """A wrong password (INN2's 481) disables the provider; reenable() with the right
        one, as a config reload does, makes it answer again (430 for a missing article)."""
        pool = _pool(AUTH_USER, "wrong")
        self.addCleanup(pool.close)
        with self.assertRaises(ProviderAuthError) as raised:
            yield pool.stat("nothing@example.net")
        self.assertIn("481", str(raised.exception))
        self.assertFalse(pool.enabled)
        fixed = ProviderConfig(
            name="inn2-auth",
            host=INN2_HOST,
            port=AUTH_PORT,
            tls=False,
            max_connections=2,
            username=AUTH_USER,
            password=AUTH_PASSWORD,
        )
        self.assertTrue(pool.reenable(fixed))
        found = yield pool.stat("nothing@example.net")
        self.assertIs(found, False)
        self.assertTrue(pool.enabled)
        self.assertEqual(pool.circuit["state"], "closed")
