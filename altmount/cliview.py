"""What the command line shows: `altmount status` (the numbers of a running server's
/api/health, /api/queue/stats and /api/health/streaming as tables) and the progress
line of `altmount import --wait`. Terminal output is rich's.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from altmount.config import Config
from altmount.errors import AltmountError

__all__ = [
    "ImportProgress",
    "ServerStatus",
    "StatusUnavailable",
    "fetch_status",
    "render_status",
    "server_url",
]

#: Seconds `altmount status` waits for each answer.
STATUS_TIMEOUT_SECONDS = 5.0
_HUMAN_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


class StatusUnavailable(AltmountError):
    """`altmount status` got no usable answer from the server; the message says why."""


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """The three answers `altmount status` shows, as the server sent them."""

    url: str
    health: dict[str, Any]
    queue_stats: dict[str, Any]
    streaming: dict[str, Any]


def server_url(config: Config) -> str:
    """The base URL of the server `config` describes, as reachable from this host."""
    host = config.webdav.bind_address or "127.0.0.1"
    if host == "0.0.0.0":
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.webdav.port}"


def _get(url: str, headers: dict[str, str], timeout: float, *, ok: Iterable[int]) -> Any:
    """GET `url`, JSON-decoded; an answer with a status in `ok` counts even if not 2xx."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
        if status == 401:
            raise StatusUnavailable(
                f"{url}: 401 unauthorized: check webdav.user and webdav.password in the config"
            ) from None
        if status not in ok:
            raise StatusUnavailable(f"{url}: HTTP {status}: {_error_text(body)}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ConnectionRefusedError):
            reason = "connection refused; is `altmount serve` running?"
        raise StatusUnavailable(f"no altmount server answers at {url}: {reason}") from None
    except TimeoutError:
        raise StatusUnavailable(f"no answer from {url} within {timeout:g} s") from None
    except OSError as exc:
        raise StatusUnavailable(f"no altmount server answers at {url}: {exc}") from None
    try:
        return json.loads(body)
    except ValueError:
        raise StatusUnavailable(
            f"{url}: answered HTTP {status} but not with JSON; is this altmount?"
        ) from None


def _error_text(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace").strip() or "(empty answer)"


def fetch_status(
    url: str, user: str, password: str, *, timeout: float = STATUS_TIMEOUT_SECONDS
) -> ServerStatus:
    """Fetch /api/health, /api/queue/stats and /api/health/streaming from `url`.

    Basic auth with `user`/`password` when either is set. Raises StatusUnavailable
    with a one-line reason when the server does not answer or refuses.
    """
    base = url.rstrip("/")
    headers = {"Accept": "application/json"}
    if user or password:
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
    # An unhealthy server answers /api/health with 503 and the same JSON.
    health = _get(f"{base}/api/health", headers, timeout, ok=(503,))
    stats = _get(f"{base}/api/queue/stats", headers, timeout, ok=())
    streaming = _get(f"{base}/api/health/streaming", headers, timeout, ok=())
    return ServerStatus(base, health, stats, streaming)


def _num(value: Any) -> str:
    """A number as the API gave it: ints exact, floats without noise digits."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.3f}".rstrip("0").rstrip(".")
    return str(value)


def _human_bytes(value: float) -> str:
    index = 0
    while value >= 1024 and index < len(_HUMAN_UNITS) - 1:
        value /= 1024
        index += 1
    return f"{value:.0f} {_HUMAN_UNITS[0]}" if index == 0 else f"{value:.1f} {_HUMAN_UNITS[index]}"


def _table(title: str) -> Table:
    table = Table(title=title, title_justify="left", show_header=True)
    table.add_column("field", style="cyan", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("", style="dim")
    return table


def _health_table(health: dict[str, Any]) -> Table:
    table = _table("GET /api/health")
    table.add_row("status", str(health.get("status", "?")), "")
    for name, component in (health.get("components") or {}).items():
        table.add_row(
            f"components.{name}", component.get("status", "?"), component.get("reason", "")
        )
        for provider in component.get("providers", []) if name == "providers" else []:
            table.add_row(
                f"  provider {provider.get('name', '?')}",
                provider.get("status", "?"),
                provider.get("reason", ""),
            )
    return table


def _stats_table(stats: dict[str, Any]) -> Table:
    table = _table("GET /api/queue/stats")
    for state, count in (stats.get("counts") or {}).items():
        table.add_row(f"counts.{state}", _num(count), "")
    performance = stats.get("performance") or {}
    windows = performance.get("window_seconds") or {}
    for key in ("avg_speed", "current_speed"):
        if key in performance:
            note = performance.get(f"{key}_human", "")
            if key in windows:
                note = f"{note}, {windows[key]} s average"
            table.add_row(f"performance.{key}", _num(performance[key]), note)
    if "bytes_served_total" in performance:
        total = performance["bytes_served_total"]
        table.add_row("performance.bytes_served_total", _num(total), _human_bytes(total))
    for key in ("avg_import_ms", "imports_counted"):
        if key in performance:
            table.add_row(f"performance.{key}", _num(performance[key]), "")
    workers = stats.get("workers") or {}
    if "utilization" in workers:
        table.add_row("workers.utilization", _num(workers["utilization"]), "download workers")
    processor = workers.get("processor") or {}
    if processor:
        paused = " (paused)" if processor.get("paused") else ""
        table.add_row(
            "workers.processor",
            f"{_num(processor.get('busy'))}/{_num(processor.get('max'))}",
            f"import workers busy/max{paused}",
        )
    return table


def _streaming_table(streaming: dict[str, Any]) -> Table:
    table = _table("GET /api/health/streaming")
    for key, value in (streaming.get("workers") or {}).items():
        table.add_row(f"workers.{key}", _num(value), "")
    table.add_row("active_streams", _num(streaming.get("active_streams", 0)), "")
    totals = streaming.get("totals") or {}
    for key, value in totals.items():
        if isinstance(value, dict):
            for sub, count in value.items():
                table.add_row(f"totals.{key}.{sub}", _num(count), "")
        else:
            note = _human_bytes(value) if key.startswith("bytes_") else ""
            table.add_row(f"totals.{key}", _num(value), note)
    return table


def _streams_table(streams: list[dict[str, Any]]) -> Table:
    table = Table(title="active streams", title_justify="left")
    for name in ("id", "path", "client", "range", "served", "speed", "ttfb ms"):
        table.add_column(name, no_wrap=name != "path")
    for stream in streams:
        span = stream.get("range") or {}
        ttfb = stream.get("time_to_first_byte_ms")
        table.add_row(
            _num(stream.get("id")),
            str(stream.get("path", "")),
            str(stream.get("client", "")),
            f"{_num(span.get('start'))}-{_num(span.get('end'))}",
            f"{_num(stream.get('bytes_served'))} ({stream.get('progress', 0) * 100:.0f}%)",
            _human_bytes(stream.get("current_speed", 0.0)) + "/s",
            "" if ttfb is None else f"{ttfb:.0f}",
        )
    return table


def render_status(status: ServerStatus, console: Console) -> None:
    """Print `status` as tables: health, queue statistics, streaming, open streams."""
    console.print(f"altmount at {status.url}: [bold]{status.health.get('status', '?')}[/bold]")
    console.print(_health_table(status.health))
    console.print(_stats_table(status.queue_stats))
    console.print(_streaming_table(status.streaming))
    streams = status.streaming.get("streams") or []
    if streams:
        console.print(_streams_table(streams))


class ImportProgress:
    """The live line of `import --wait`: the NZB, its queue state and the time elapsed.

    Drawn on standard error while it is a terminal; otherwise silent (logs and the
    final summary say what happened).
    """

    def __init__(self, name: str, console: Console | None = None) -> None:
        # soft_wrap: log lines printed above the bar stay one line each, however long.
        self._console = console if console is not None else Console(stderr=True, soft_wrap=True)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[state]}"),
            TimeElapsedColumn(),
            console=self._console,
            disable=not self._console.is_terminal,
        )
        self._task = self._progress.add_task(name, total=None, state="queued")
        self.state = "queued"

    def __enter__(self) -> ImportProgress:
        self._progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._progress.stop()

    def update(self, state: str, attempt: int = 0) -> None:
        """Show queue state `state` (and the attempt once it is past the first)."""
        text = f"{state} (attempt {attempt})" if attempt > 1 else state
        if text == self.state:
            return
        self.state = text
        settled = state in ("completed", "failed", "cancelled")
        self._progress.update(
            self._task,
            state=text,
            total=1 if settled else None,
            completed=1 if settled else 0,
        )
