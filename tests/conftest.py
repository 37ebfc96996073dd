"""Shared pytest configuration.

How tests that need Twisted run (pytest-twisted is not installed):

- Unit tests never touch a socket or the global reactor. Drive protocols with
  `twisted.internet.testing.StringTransport` and time with `task.Clock` /
  `MemoryReactorClock`. For anything that talks NNTP, build the code under test on
  `altmount.testing.nntpserver.MemoryNetReactor`: its connectTCP/connectSSL reach
  in-memory fake servers (`reactor.servers[host] = NNTPServerFactory(...)`),
  `reactor.flush()` moves bytes until quiet and `reactor.advance(s)` moves time.
- Integration tests that need a real reactor (127.0.0.1, ephemeral ports) are
  `twisted.trial.unittest.TestCase` classes whose test methods return Deferreds
  (`@defer.inlineCallbacks`). pytest runs them as unittest cases; trial spins the
  global reactor until the Deferred fires, applies the class's `timeout`, and fails
  the test if it leaves connections, listening ports or timers behind. So close
  pools, `yield server.when_idle()` and `addCleanup(port.stopListening)`.
  See tests/integration/test_nntp_integration.py.
"""
