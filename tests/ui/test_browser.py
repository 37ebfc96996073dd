"""The web UI end to end in headless Chromium (tests/ui/scenario.cjs)."""

from __future__ import annotations

from uilib import Altmount, FakeProvider, run_scenario

#: The issue's budget for everything the dashboard downloads (static files).
MAX_DASHBOARD_BYTES = 300 * 1024


def test_operator_flow(altmount: Altmount, fake_provider: FakeProvider) -> None:
    """Login, upload, completion, a live stream, a provider test, delete and logout all work
    in a real browser without a console error, and every page leaves a screenshot."""
    report = run_scenario(altmount, fake_provider)
    assert report["cookie"] == {"httpOnly": True, "sameSite": "Strict"}
    assert 0 < report["dashboard_transfer_bytes"] <= MAX_DASHBOARD_BYTES
    assert report["narrow_overflow_px"] <= 0
    assert [tier for tier, _ in report["cache_rows"]] == ["ram", "disk"]
    assert all(" of " in size for _, size in report["cache_rows"]), report["cache_rows"]
    assert report["first_tab"] == "Skip to content"
    assert "RTT" in report["provider_test"]
    assert report["status_after_logout"] == 401
    assert report["console_errors"] == []
    assert len(report["screenshots"]) >= 8
