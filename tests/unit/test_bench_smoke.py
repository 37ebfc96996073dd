"""Smoke tests of `altmount bench`: each scenario runs at tiny size and reports every field.

They start real processes on 127.0.0.1 (the fake NNTP server, `altmount serve`) and
never assert a timing: only that each command completes and fills in its report.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import altmount
from altmount.bench import bench
from altmount.bench.common import percentile, windowed_rates
from altmount.bench.presets import PRESETS, guide_estimate_mib
from altmount.bench.stream import StreamOptions, local_altmount

STREAM_FIELDS = {
    "sequential": {
        "bytes",
        "seconds",
        "mb_s",
        "p05_mb_s",
        "ttfb_ms",
        "cpu_s_per_gib",
        "peak_rss_mib",
    },
    "concurrent": {
        "users",
        "bytes",
        "mb_s",
        "p05_mb_s",
        "ttfb_p50_ms",
        "ttfb_p99_ms",
        "cpu_s_per_gib",
        "peak_rss_mib",
    },
    "seeks": {
        "count",
        "ttfb_p50_ms",
        "ttfb_p95_ms",
        "ttfb_p99_ms",
        "seek_p50_ms",
        "seek_p99_ms",
        "cpu_s_per_gib",
        "peak_rss_mib",
    },
    "click": {"count", "p50_ms", "min_ms", "max_ms"},
    "raw": {"mb_s", "ratio", "cpu_s_per_gib"},
    "streaming": {"preset", "max_range_size", "streaming_chunk_size", "max_download_workers"},
    "process": {"cpu_s_per_gib", "peak_rss_mib", "peak_rss_tree_mib", "rss_samples"},
}
#: Scenario (b) and (c) options of a tiny stream run: 1 MB per user, three 0.5 MB seeks.
TINY_READS = ("--range-mb", "1", "--seeks", "3", "--seek-mb", "0.5")
API_FIELDS = {
    "requests",
    "concurrency",
    "requests_per_s",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "statuses",
}


def run(*args: str) -> dict:
    """Invoke `altmount bench ARGS --json --quiet` and parse its output."""
    result = CliRunner().invoke(bench, [*args, "--json", "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_stream_reports_every_field():
    """A 4 MiB stream run completes every scenario and fills in every field."""
    report = run(
        "stream",
        "--size-mb",
        "4",
        "--click-size-mb",
        "1",
        "--users",
        "1,2",
        *TINY_READS,
        "--clicks",
        "1",
        "--connections",
        "4",
        "--pool",
        "process",
        "--preset",
        "constrained",
    )
    for section, fields in STREAM_FIELDS.items():
        assert fields <= set(report[section]), section
        assert all(report[section][name] is not None for name in fields), section
    assert [row["users"] for row in report["concurrent_sweep"]] == [1, 2]
    max_range_mib, chunk_mib, workers = PRESETS["constrained"]
    assert report["streaming"] == {
        "preset": "constrained",
        "max_range_size": max_range_mib << 20,
        "streaming_chunk_size": chunk_mib << 20,
        "max_download_workers": workers,
        "guide_estimate_mib": max_range_mib * 2 + workers * 25,
    }
    peaks = [report[s]["peak_rss_mib"] for s in ("sequential", "concurrent", "seeks")]
    assert report["process"]["peak_rss_mib"] >= max(peaks) > 0


def test_stream_over_tls():
    """`--tls` streams from the fake server behind TLS, verified, raw client included."""
    report = run(
        "stream",
        "--tls",
        "--size-mb",
        "4",
        "--click-size-mb",
        "1",
        "--users",
        "1",
        *TINY_READS,
        "--clicks",
        "0",
        "--connections",
        "2",
    )
    assert report["options"]["tls"] is True
    assert report["sequential"]["mb_s"] > 0 and report["raw"]["cpu_s_per_gib"] > 0


def test_api_reports_every_field():
    """The API load test answers both endpoints and reports rate, latencies, statuses."""
    report = run("api", "--requests", "40", "--concurrency", "5")
    for endpoint in ("health", "propfind"):
        assert API_FIELDS <= set(report[endpoint])
        assert report[endpoint]["requests"] == 40
        assert all(report[endpoint][name] is not None for name in API_FIELDS)


def test_decode_reports_every_cell():
    """The decode benchmark measures every method on 1 and all cores, threads and processes."""
    report = run("decode", "--seconds", "0.05", "--size", "50000")
    cells = {(row["method"], row["pool"], row["workers"]) for row in report["rows"]}
    counts = {1, report["cores"]}
    assert cells == {(m, "thread", n) for m in ("memcpy", "sabyenc3", "core") for n in counts} | {
        ("core", "process", n) for n in counts
    }
    assert all(row["mb_s"] > 0 for row in report["rows"])


def test_guide_estimate():
    """The operator guide's formula: range size × active ranges + 25 MB per worker."""
    assert guide_estimate_mib(64, 25, 10) == 64 * 10 + 25 * 25
    assert guide_estimate_mib(16, 12, 1) == 16 + 300


def test_percentile_interpolates():
    """Percentiles interpolate between ranks and are None for no data."""
    assert percentile([], 50) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0


def test_windowed_rates_leave_out_the_partial_window():
    """One-second windows count bytes per full window; the last partial one is dropped."""
    samples = [(0.5, 1_000_000), (1.2, 2_000_000), (2.1, 500_000)]
    assert windowed_rates(samples, 0.0) == [1.0, 2.0]
    assert windowed_rates([(0.4, 10)], 0.0) == []


def test_stream_against_a_running_server():
    """`--server URL --path P --pid N` measures an altmount already running: every scenario
    but the click (no fake server to post to) and the raw ceiling (no NNTP port known)."""
    with local_altmount(StreamOptions(size_mb=4, click_size_mb=1), lambda _: None) as env:
        target = env["target"]
        url = f"http://{target.user}:{target.password}@{target.host}:{target.port}"
        report = run(
            "stream",
            "--server",
            url,
            "--path",
            env["path"],
            "--pid",
            str(env["pid"]),
            "--users",
            "2",
            *TINY_READS,
        )
    for section in ("sequential", "concurrent", "seeks"):
        fields = STREAM_FIELDS[section]
        assert all(report[section][name] is not None for name in fields), section
    assert report["sequential"]["bytes"] == env["size"]
    assert report["click"]["count"] == 0 and report["raw"] == {
        "mb_s": None,
        "ratio": None,
        "cpu_s_per_gib": None,
    }
    assert report["process"]["cpu_s_per_gib"] is not None


def test_stream_from_a_source_checkout(tmp_path):
    """`altmount bench stream` started in a folder holding an uncompiled `altmount/` source
    tree runs its helpers (fake server, import, serve, decode processes) with the installed
    package, not that tree."""
    checkout = tmp_path / "checkout"
    shutil.copytree(
        Path(altmount.__file__).parent,
        checkout / "altmount",
        ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__"),
    )
    command = Path(sys.executable).with_name("altmount")
    result = subprocess.run(
        [str(command), "bench", "stream", "--size-mb", "2", "--click-size-mb", "1"]
        + ["--users", "1", *TINY_READS, "--clicks", "1", "--pool", "process", "--json", "--quiet"],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["sequential"]["bytes"] == 2 << 20
    assert report["click"]["count"] == 1


def test_contend_measures_seeks_idle_and_under_import_and_health_load():
    """A small contend run reports idle and loaded seek figures, their ratios, and import
    and health work done meanwhile without errors."""
    report = run(
        "contend",
        "--size-mb",
        "4",
        "--files",
        "3",
        "--file-mb",
        "1",
        "--latency-ms",
        "0",
        "--connections",
        "4",
        "--seeks",
        "4",
        "--seek-mb",
        "1",
        "--rounds",
        "2",
    )
    for phase in ("idle", "loaded"):
        assert set(report[phase]) == {"ttfb_p50_ms", "ttfb_p95_ms", "seek_p50_ms", "seek_p99_ms"}
        assert all(value > 0 for value in report[phase].values())
    assert report["ratio"]["seek_p50_ms"] > 0 and report["ratio"]["ttfb_p50_ms"] > 0
    load = report["load"]
    assert load["errors"] == [] and load["imports_added"] >= 1 and load["health_checks"] >= 1


def test_scan_second_pass_costs_no_body():
    """`bench scan` over two small files: the first pass fetches, the second costs 0 BODY
    (counted by the fake server), and a first ffprobe after import is reported."""
    report = run("scan", "--files", "2", "--file-mb", "2", "--latency-ms", "5")
    assert report["pass1"]["body"] > 0
    assert report["pass2"]["body"] == 0
    assert set(report["pass2"]) >= {"head_ms", "tail_ms", "seek25_ms", "seek50_ms", "seek75_ms"}
    if shutil.which("ffprobe"):
        assert set(report["ffprobe"]) == {
            "first_after_import_body",
            "first_seconds",
            "second_body",
            "second_seconds",
        }


def test_cached_reads_cost_no_body_and_use_sendfile_on_disk():
    """`bench cached` on a small file: cached reads of both tiers cost 0 BODY, and the disk
    tier's go out with sendfile."""
    report = run("cached", "--size-mb", "8", "--reads", "1")
    for tier in ("ram", "disk"):
        assert report[tier]["body_during_cached_reads"] == 0
    assert report["ram"]["sendfile_segments"] == 0
    assert report["disk"]["sendfile_segments"] > 0
