"""`altmount bench`: load tests of decode, streaming and the HTTP API.

`bench decode` needs nothing but the package; `bench stream` and `bench api` start
the fake NNTP server and `altmount serve` on 127.0.0.1 (or measure a running
altmount with `--server URL`). Every command prints a table, or JSON with `--json`,
and shows a progress bar on stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from altmount.bench.presets import PRESETS

__all__ = ["bench"]


@contextmanager
def _progress(steps: int, quiet: bool) -> Iterator[Callable[[str], None]]:
    """A stderr progress bar advanced once per step, labelled with the step's name."""
    if quiet:
        yield lambda message: None
        return
    with click.progressbar(
        length=steps, label="bench", file=sys.stderr, show_eta=False, show_pos=True
    ) as bar:

        def step(message: str) -> None:
            bar.label = message
            bar.update(1)

        yield step


def _write(result: dict[str, Any], out: Path | None) -> None:
    if out is not None:
        out.write_text(json.dumps(result, indent=2) + "\n")


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON, not a table.")
out_option = click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the JSON result to this file.",
)
quiet_option = click.option("--quiet", is_flag=True, help="No progress bar.")


@click.group()
def bench() -> None:
    """Load tests: yEnc decode, streaming against a fake provider, the HTTP API."""


@bench.command()
@click.option("--seconds", type=float, default=1.0, show_default=True, help="Time per cell.")
@click.option(
    "--size",
    "sizes",
    type=int,
    multiple=True,
    help="Article size in bytes (repeatable; default 384000 and 716800).",
)
@json_option
@out_option
@quiet_option
def decode(
    seconds: float, sizes: tuple[int, ...], as_json: bool, out: Path | None, quiet: bool
) -> None:
    """Decode throughput: _core vs sabyenc3 vs memcpy, 1 and all cores, threads and processes."""
    from altmount.bench.common import emit
    from altmount.bench.decode import ARTICLE_SIZES, decode_table, run_decode_bench

    sizes = sizes or ARTICLE_SIZES
    with _progress(len(sizes) * 8, quiet or as_json) as step:
        result = run_decode_bench(sizes, seconds, progress=step)
    _write(result, out)
    if as_json:
        emit(result, True)
    else:
        click.echo("\n".join(decode_table(result)))


def _users(value: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise click.BadParameter("a comma-separated list of positive counts, e.g. 1,5,10")
    return counts


@bench.command()
@click.option("--size-mb", type=float, default=300, show_default=True, help="Size of the file.")
@click.option("--article-size", type=int, default=716_800, show_default=True)
@click.option(
    "--latency-ms",
    type=float,
    default=0.0,
    show_default=True,
    help="Fake server's delay before each answer.",
)
@click.option(
    "--bandwidth-mbps",
    type=float,
    default=0.0,
    show_default=True,
    help="Fake server's cap per connection, MB/s (0: none).",
)
@click.option("--connections", type=int, default=20, show_default=True)
@click.option(
    "--depth", type=int, default=4, show_default=True, help="Pipelined requests per connection."
)
@click.option("--window-mb", type=int, default=16, show_default=True, help="Read-ahead per stream.")
@click.option(
    "--pool",
    type=click.Choice(["thread", "process", "inline"]),
    default="thread",
    show_default=True,
)
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Serving processes of the server under test (engine.processes).",
)
@click.option(
    "--users",
    default="10",
    show_default=True,
    help="Concurrent users of scenario (b); a list (1,5,10) sweeps.",
)
@click.option(
    "--range-mb", type=float, default=100, show_default=True, help="Bytes each user reads."
)
@click.option("--seeks", type=int, default=50, show_default=True)
@click.option("--seek-mb", type=float, default=4, show_default=True)
@click.option("--clicks", type=int, default=3, show_default=True, help="click→first byte trials.")
@click.option("--click-size-mb", type=float, default=20, show_default=True)
@click.option("--missing-rate", type=float, default=0.0)
@click.option("--corrupt-rate", type=float, default=0.0)
@click.option("--disconnect-rate", type=float, default=0.0)
@click.option("--verify", is_flag=True, help="md5 the bytes of the full read.")
@click.option(
    "--tls", is_flag=True, help="The fake server behind TLS (a test CA, verified by altmount)."
)
@click.option("--seed", type=int, default=1)
@click.option(
    "--preset",
    type=click.Choice(list(PRESETS)),
    help="Streaming settings of the operator guide's preset (instead of --window-mb and "
    "--connections); the report adds the guide's memory estimate.",
)
@click.option("--server", help="Measure a running altmount, e.g. http://user:pass@host:8080.")
@click.option("--path", help="With --server: the WebDAV path of the file to read.")
@click.option("--pid", type=int, help="With --server: its process id, for CPU and memory.")
@click.option(
    "--plot-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write PNG plots here (needs matplotlib).",
)
@json_option
@out_option
@quiet_option
def stream(
    as_json: bool, out: Path | None, quiet: bool, plot_dir: Path | None, users: str, **options: Any
) -> None:
    """Streaming: full read, concurrent users, seeks, click→first byte, raw ceiling."""
    from altmount.bench.common import emit
    from altmount.bench.stream import StreamOptions, run_stream_bench

    opts = StreamOptions(users=_users(users), **options)
    steps = 5 + len(opts.users) + (opts.server is None)
    with _progress(steps, quiet or as_json) as step:
        result = run_stream_bench(opts, progress=step)
    if plot_dir is not None:
        from altmount.bench.plot import available, plot_stream

        if available():
            stem = out.stem if out is not None else "stream"
            result["plots"] = [str(p) for p in plot_stream(result, plot_dir, stem)]
        else:
            click.echo("matplotlib is not installed: no plots", err=True)
    _write(result, out)
    emit(result, as_json)


@bench.command()
@click.option("--requests", type=int, default=1000, show_default=True)
@click.option("--concurrency", type=int, default=50, show_default=True)
@click.option("--server", help="Measure a running altmount, e.g. http://user:pass@host:8080.")
@click.option("--path", help="With --server: a WebDAV file whose folder is PROPFINDed.")
@json_option
@out_option
@quiet_option
def api(
    requests: int,
    concurrency: int,
    server: str | None,
    path: str | None,
    as_json: bool,
    out: Path | None,
    quiet: bool,
) -> None:
    """HTTP API: requests/s and latency of /api/health and PROPFIND."""
    from altmount.bench.api import run_api_bench
    from altmount.bench.common import emit

    with _progress(5, quiet or as_json) as step:
        result = run_api_bench(requests, concurrency, server, path, progress=step)
    _write(result, out)
    emit(result, as_json)


@bench.command()
@click.option("--size-mb", type=float, default=100, show_default=True, help="The streamed file.")
@click.option("--files", type=int, default=40, show_default=True, help="Files of the import.")
@click.option("--file-mb", type=float, default=4, show_default=True, help="Size of each.")
@click.option("--article-size", type=int, default=716_800, show_default=True)
@click.option("--latency-ms", type=float, default=10.0, show_default=True)
@click.option("--connections", type=int, default=8, show_default=True)
@click.option("--depth", type=int, default=2, show_default=True)
@click.option("--headroom", type=int, default=2, show_default=True, help="nntp.stream_headroom")
@click.option("--rounds", type=int, default=3, show_default=True, help="Idle/loaded pairs.")
@click.option("--seeks", type=int, default=50, show_default=True)
@click.option("--seek-mb", type=float, default=4, show_default=True)
@click.option("--seed", type=int, default=1)
@json_option
@out_option
@quiet_option
def contend(as_json: bool, out: Path | None, quiet: bool, **options: Any) -> None:
    """A stream's seeks idle and while a 40-file import and a health sweep run."""
    from altmount.bench.common import emit
    from altmount.bench.contend import ContendOptions, contend_table, run_contend_bench

    with _progress(4, quiet or as_json) as step:
        result = run_contend_bench(ContendOptions(**options), progress=step)
    _write(result, out)
    if as_json:
        emit(result, True)
    else:
        click.echo("\n".join(contend_table(result)))


@bench.command()
@click.option("--size-mb", type=float, default=384, show_default=True, help="Size of the file.")
@click.option("--reads", type=int, default=3, show_default=True, help="Cached reads per tier.")
@json_option
@out_option
@quiet_option
def cached(size_mb: float, reads: int, as_json: bool, out: Path | None, quiet: bool) -> None:
    """Reads served by the RAM tier and by the disk tier (sendfile), vs the loopback ceiling."""
    from altmount.bench.cache import run_cached_bench
    from altmount.bench.common import emit

    if size_mb <= 0 or reads < 1:
        raise click.BadParameter("--size-mb must be positive and --reads at least 1")
    with _progress(4 + 2 * reads, quiet or as_json) as step:
        result = run_cached_bench(size_mb, reads, progress=step)
    _write(result, out)
    emit(result, as_json)


@bench.command()
@click.option("--files", type=int, default=8, show_default=True, help="Files in the library.")
@click.option("--file-mb", type=float, default=40, show_default=True, help="Size of each file.")
@click.option("--latency-ms", type=float, default=30, show_default=True, help="Provider latency.")
@json_option
@out_option
@quiet_option
def scan(
    files: int, file_mb: float, latency_ms: float, as_json: bool, out: Path | None, quiet: bool
) -> None:
    """A media server's library scan (head, tail, 3 seeks per file) twice, plus a first
    ffprobe after import: provider BODY requests and latency per pass."""
    from altmount.bench.cache import run_scan_bench
    from altmount.bench.common import emit

    if files < 1 or file_mb <= 0 or latency_ms < 0:
        raise click.BadParameter("--files >= 1, --file-mb > 0 and --latency-ms >= 0")
    with _progress(7, quiet or as_json) as step:
        result = run_scan_bench(files, file_mb, latency_ms, progress=step)
    _write(result, out)
    emit(result, as_json)
