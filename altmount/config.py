"""Configuration: YAML in, typed frozen sections out, every problem named by its key path.

The keys follow AltMount's config.sample.yaml where AltMount has them, so an
operator guide written for AltMount applies here. The schema is the dataclasses
below: each field's type, default, bounds and one-line doc live in one place,
and `load_config` walks them, so a new key needs no extra validation code.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import reprlib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from altmount.errors import ConfigError

__all__ = [
    "Config",
    "WebDAVConfig",
    "APIConfig",
    "DatabaseConfig",
    "MetadataConfig",
    "StreamingConfig",
    "SegmentCacheConfig",
    "ImportConfig",
    "NNTPConfig",
    "EngineConfig",
    "DemoConfig",
    "SABnzbdConfig",
    "CategoryConfig",
    "ProviderConfig",
    "LogConfig",
    "HealthConfig",
    "ArrsConfig",
    "ArrInstanceConfig",
    "load_config",
    "parse_config",
    "render_config",
    "config_as_dict",
    "iter_documented_keys",
]

log = logging.getLogger(__name__)

MiB = 1024 * 1024
SECRET_KEYS = frozenset({"password", "key_override", "dsn", "api_key"})
#: Shows a wrong value in an error message; YAML aliases can make a value of billions
#: of nodes from a few lines, so it is shown shortened, never in full.
_SHOW = reprlib.Repr()
_SHOW.maxlevel, _SHOW.maxlist, _SHOW.maxdict, _SHOW.maxstring, _SHOW.maxother = 2, 4, 4, 80, 80


def _opt(default: Any, doc: str, *, min: float | None = None, max: float | None = None,
         choices: tuple[str, ...] | None = None, path: bool = False) -> Any:
    """A config field: default, one-line doc, and the checks its value must pass."""
    meta = {"doc": doc, "min": min, "max": max, "choices": choices, "path": path}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        return field(default_factory=lambda: dataclasses.replace(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True, slots=True)
class WebDAVConfig:
    port: int = _opt(8080, "TCP port of the one HTTP server (WebDAV, API, SABnzbd API, UI)",
                     min=1, max=65535)
    bind_address: str = _opt("127.0.0.1", "address to listen on (0.0.0.0: every interface; "
                             "then webdav.user/password must not be the built-in ones)")
    user: str = _opt("usenet", "basic-auth user for WebDAV and /api")
    password: str = _opt("usenet", "basic-auth password for WebDAV and /api")
    debug: bool = _opt(False, "log every WebDAV request with its timing")
    body_timeout_seconds: float = _opt(30, "a request body must arrive whole within this many "
                                       "seconds (else 408 and the connection closed)",
                                       min=1, max=3600)
    max_connections: int = _opt(256, "HTTP connections open at once, from all clients (more "
                                "get 503)", min=1, max=1 << 20)
    max_connections_per_address: int = _opt(128, "HTTP connections open at once from one "
                                            "client address (more get 503)", min=1, max=1 << 20)


@dataclass(frozen=True, slots=True)
class APIConfig:
    key_override: str = _opt("", "fixed API key for the SABnzbd API (else generated and stored)")


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    type: str = _opt("sqlite", "where the queue, history, metadata index and connection leases "
                     "are shared: sqlite (one host) or postgres (several hosts)",
                     choices=("sqlite", "postgres"))
    path: str = _opt("./altmount.db", "SQLite file for the queue and history", path=True)
    dsn: str = _opt("", "PostgreSQL connection string (libpq URI or key=value) when type is "
                    "postgres")


@dataclass(frozen=True, slots=True)
class MetadataConfig:
    root_path: str = _opt("./metadata", "directory of the LMDB metadata store (required)",
                          path=True)
    map_size_mb: int = _opt(8192, "largest size the metadata store may grow to, in MiB",
                            min=16, max=1 << 22)


@dataclass(frozen=True, slots=True)
class StreamingConfig:
    max_range_size: int = _opt(32 * MiB, "most bytes buffered for one request, in bytes",
                               min=1 * MiB, max=4096 * MiB)
    streaming_chunk_size: int = _opt(8 * MiB, "read-ahead window per stream, in bytes",
                                     min=64 * 1024, max=1024 * MiB)
    max_download_workers: int = _opt(15, "segment downloads at once across all streams",
                                     min=1, max=1000)
    missing_article_policy: str = _opt(
        "zero_fill_media", "an article missing on every provider: zero_fill_media (serve "
        "zeros for that segment of mkv/mp4/m4v/webm/mov files, so they keep their length) or "
        "fail (end the read at the hole)",
        choices=("fail", "zero_fill_media"))
    memory_budget_mb: int = _opt(512, "most decoded bytes held by all streams' windows and the "
                                 "segment cache's RAM tier together, in MiB", min=16, max=1 << 20)
    paused_timeout_seconds: float = _opt(30, "a client paused this long gives its window back "
                                         "(fetched again, mostly from the segment cache, when "
                                         "it reads on), in seconds", min=1, max=86400)


@dataclass(frozen=True, slots=True)
class SegmentCacheConfig:
    enabled: bool = _opt(True, "keep decoded segments on disk (the RAM tier is always on)")
    cache_path: str = _opt("", "folder of the disk tier (empty: segment-cache inside "
                           "metadata.root_path)", path=True)
    max_size_gb: float = _opt(10, "largest size of the disk tier, in GB", min=0.01, max=1 << 20)
    expiry_hours: float = _opt(72, "segments older than this are dropped from the disk tier, "
                               "in hours", min=0.01, max=87600)
    min_free_gb: float = _opt(2, "the disk tier stops growing when the file system has less "
                              "free space than this, in GB", min=0, max=1 << 20)
    memory_mb: int = _opt(256, "most decoded bytes of the RAM tier (inside "
                          "streaming.memory_budget_mb), in MiB", min=0, max=1 << 20)


@dataclass(frozen=True, slots=True)
class ImportConfig:
    max_processor_workers: int = _opt(2, "NZBs imported at once", min=1, max=64)
    queue_processing_interval_seconds: float = _opt(5, "how often the queue is polled, in seconds",
                                                    min=0.1, max=3600)
    allowed_file_extensions: list[str] = _opt(
        [".mkv", ".mp4", ".avi", ".mov", ".wmv", ".m4v", ".webm", ".mpg", ".mpeg", ".m2ts",
         ".ts", ".vob", ".iso", ".mp3", ".flac", ".m4a", ".wav", ".ogg", ".opus"],
        "file extensions exposed after import (empty list: every file)")
    segment_sample_percentage: float = _opt(1, "share of segments STAT-checked at import, percent",
                                            min=0, max=100)
    acceptable_missing_segments_percentage: float = _opt(
        0, "missing segments tolerated before an import fails, percent", min=0, max=100)
    failed_item_retention_hours: float = _opt(24, "failed queue items kept this long (0: forever)",
                                              min=0)
    history_retention_days: float = _opt(30, "completed items kept in history this long (0: forever)",
                                         min=0)
    max_attempts: int = _opt(3, "tries of one item before it fails for good (transient errors)",
                             min=1, max=100)
    rename_to_nzb_name: bool = _opt(False, "name a release's single media file after the NZB")
    watch_dir: str = _opt("", "folder watched for .nzb files (empty: off); sub-folder = category",
                          path=True)
    watch_interval_seconds: float = _opt(2, "how often the watch folder is scanned, in seconds",
                                         min=0.1, max=3600)
    import_strategy: str = _opt(
        "none", "what Sonarr/Radarr import: NONE (the files on the mount), SYMLINK (symlinks "
        "in import_dir to the files under sabnzbd.mount_dir) or STRM (.strm files in "
        "import_dir holding a tokenised HTTP URL)", choices=("none", "symlink", "strm"))
    import_dir: str = _opt("", "local folder of the SYMLINK/STRM links: "
                           "<import_dir>/<category dir>/<release>/<file>", path=True)
    strm_base_url: str = _opt("", "URL players reach altmount at, written into .strm files "
                              "(empty: http://127.0.0.1:<webdav.port>)")


@dataclass(frozen=True, slots=True)
class NNTPConfig:
    connect_timeout_seconds: float = _opt(10, "TCP+TLS connect and login timeout, in seconds",
                                          min=0.1, max=300)
    request_timeout_seconds: float = _opt(30, "timeout of one BODY/STAT request, in seconds",
                                          min=0.1, max=600)
    idle_timeout_seconds: float = _opt(60, "idle connections are closed after this, in seconds",
                                       min=1, max=86400)
    max_retries: int = _opt(3, "retries of one article on other connections/providers",
                            min=0, max=20)
    stream_headroom: int = _opt(2, "connections per provider kept free for each active "
                                "stream: imports and health checks hold at most capacity - "
                                "min(headroom x streams, capacity - 1); 0: no reserve",
                                min=0, max=1000)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    pool: str = _opt("thread", "where stream decodes run: thread (GIL released), process, "
                     "or inline on the reactor thread", choices=("thread", "process", "inline"))
    decode_workers: int = _opt(0, "decode pool size (0: one per core)", min=0, max=256)
    processes: int = _opt(1, "serving processes sharing the WebDAV port (SO_REUSEPORT) "
                          "and each provider's max_connections", min=1, max=64)


@dataclass(frozen=True, slots=True)
class DemoConfig:
    enabled: bool = _opt(False, "run the embedded demo NNTP provider with a sample release")
    port: int = _opt(0, "port of the demo provider on 127.0.0.1 (0: any free port)",
                     min=0, max=65535)
    size_mb: int = _opt(8, "size of the generated sample WAV, in MiB", min=1, max=1024)


@dataclass(frozen=True, slots=True)
class CategoryConfig:
    name: str = _opt("Default", "category name as Sonarr/Radarr send it")
    order: int = _opt(0, "display order", min=0)
    priority: int = _opt(0, "default priority of items in this category", min=-100, max=2)
    dir: str = _opt("", "directory under complete_dir (default: the name)")


@dataclass(frozen=True, slots=True)
class SABnzbdConfig:
    enabled: bool = _opt(False, "serve the SABnzbd-compatible API at /sabnzbd/api")
    complete_dir: str = _opt("/complete", "virtual directory that holds imported releases")
    mount_dir: str = _opt("", "where clients mount the WebDAV root (history 'storage'); "
                          "empty: paths relative to the WebDAV root")
    addurl_allow_private: bool = _opt(False, "let addurl fetch from private/loopback addresses")
    addurl_max_mb: int = _opt(64, "largest NZB addurl downloads, in MB", min=1, max=1024)
    addurl_timeout_seconds: float = _opt(30, "addurl download time limit, in seconds",
                                         min=1, max=600)
    categories: list[CategoryConfig] = _opt(
        [CategoryConfig("Default", 0, 0, "complete"), CategoryConfig("movies", 1, 0, "movies"),
         CategoryConfig("tv", 2, 0, "tv")],
        "download categories")


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str = _opt("", "name used in logs and the API (default: host)")
    host: str = _opt("", "NNTP server host name (required)")
    port: int = _opt(563, "NNTP port: 563 for TLS, 119 plain", min=1, max=65535)
    username: str = _opt("", "login user (empty: no AUTHINFO)")
    password: str = _opt("", "login password")
    max_connections: int = _opt(10, "never more connections than this to the provider",
                                min=1, max=500)
    inflight_requests: int = _opt(4, "pipelined requests per connection", min=1, max=100)
    tls: bool = _opt(True, "connect with TLS")
    insecure_tls: bool = _opt(False, "skip TLS certificate verification (unsafe)")
    ca_file: str = _opt("", "PEM file of the CA certificate(s) to trust for this provider "
                        "instead of the system store", path=True)
    enabled: bool = _opt(True, "use this provider")
    is_backup_provider: bool = _opt(False, "ask only after every primary answered 430")


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = _opt("info", "debug, info, warn or error",
                      choices=("debug", "info", "warn", "warning", "error"))
    file: str = _opt("", "log file (empty: standard error only)", path=True)
    max_size: int = _opt(100, "rotate the log file at this size, in MB", min=1, max=100_000)
    max_backups: int = _opt(10, "rotated log files kept", min=0, max=1000)
    compress: bool = _opt(True, "gzip rotated log files")


@dataclass(frozen=True, slots=True)
class HealthConfig:
    enabled: bool = _opt(True, "re-check imported files in the background (STAT of a sample)")
    check_interval_seconds: float = _opt(300, "how often the health scheduler looks for files "
                                         "due a check, in seconds", min=1, max=86400)
    segment_sample_percentage: float = _opt(5, "share of a file's segments STAT-checked, percent "
                                            "(first and last always)", min=0, max=100)
    acceptable_missing_segments_percentage: float = _opt(
        0, "missing sampled segments tolerated (file degraded, not corrupted), percent",
        min=0, max=100)
    max_connections_for_health_checks: int = _opt(
        5, "provider connections health checks may keep busy", min=1, max=100)
    files_per_cycle: int = _opt(10, "files checked per scheduler round", min=1, max=10_000)
    min_recheck_interval_hours: float = _opt(6, "soonest re-check of a file (young files)",
                                             min=0.01, max=8760)
    max_recheck_interval_hours: float = _opt(168, "latest re-check of a file (old files)",
                                             min=0.01, max=87600)


@dataclass(frozen=True, slots=True)
class ArrInstanceConfig:
    name: str = _opt("", "name used in logs, the API and the UI (required, unique)")
    url: str = _opt("", "base URL of the instance, e.g. http://127.0.0.1:8989 (required)")
    api_key: str = _opt("", "the instance's API key (Settings > General) (required)")
    category: str = _opt("", "the SABnzbd category it sends (files of that category folder "
                         "are asked of it first)")
    enabled: bool = _opt(True, "ask this instance for repairs")


@dataclass(frozen=True, slots=True)
class ArrsConfig:
    enabled: bool = _opt(False, "ask Sonarr/Radarr to replace corrupted files (repair)")
    mount_path: str = _opt("", "where the instances see the WebDAV root (empty: "
                           "sabnzbd.mount_dir)")
    sonarr_instances: list[ArrInstanceConfig] = _opt([], "Sonarr instances (v3 API)")
    radarr_instances: list[ArrInstanceConfig] = _opt([], "Radarr instances (v3 API)")
    request_timeout_seconds: float = _opt(30, "one API request's deadline", min=1, max=600)
    max_attempts: int = _opt(3, "automatic repairs of one file before it waits for a manual "
                             "start", min=1, max=100)


@dataclass(frozen=True, slots=True)
class Config:
    webdav: WebDAVConfig = _opt(WebDAVConfig(), "HTTP server")
    api: APIConfig = _opt(APIConfig(), "REST and SABnzbd API")
    database: DatabaseConfig = _opt(DatabaseConfig(), "queue database")
    metadata: MetadataConfig = _opt(MetadataConfig(), "metadata store")
    streaming: StreamingConfig = _opt(StreamingConfig(), "streaming limits")
    segment_cache: SegmentCacheConfig = _opt(SegmentCacheConfig(), "segment cache (RAM and disk)")
    nntp: NNTPConfig = _opt(NNTPConfig(), "NNTP client timeouts")
    engine: EngineConfig = _opt(EngineConfig(), "decode engine")
    demo: DemoConfig = _opt(DemoConfig(), "embedded demo provider")
    sabnzbd: SABnzbdConfig = _opt(SABnzbdConfig(), "SABnzbd-compatible API")
    providers: list[ProviderConfig] = _opt([], "NNTP providers")
    log: LogConfig = _opt(LogConfig(), "logging")
    health: HealthConfig = _opt(HealthConfig(), "file health monitoring")
    arrs: ArrsConfig = _opt(ArrsConfig(), "Sonarr/Radarr repair of corrupted files")
    import_: ImportConfig = field(default_factory=ImportConfig,
                                  metadata={"doc": "import queue", "key": "import"})

    def category(self, name: str | None) -> CategoryConfig:
        """The category called `name` (case-insensitive), else the Default one."""
        wanted = (name or "").lower()
        for category in self.sabnzbd.categories:
            if category.name.lower() == wanted:
                return category
        for category in self.sabnzbd.categories:
            if category.name.lower() == "default":
                return category
        return CategoryConfig()


def _key(f: dataclasses.Field) -> str:
    return f.metadata.get("key", f.name)


class _Loader:
    """Walks the dataclass schema over parsed YAML, collecting every problem."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def section(self, cls: type, raw: Any, path: str) -> Any:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            self.errors.append(f"{path or 'config'}: expected a mapping, got {_kind(raw)}")
            return cls()
        fields = {_key(f): f for f in dataclasses.fields(cls)}
        for key in raw:
            if key not in fields:
                self.warnings.append(f"{_join(path, str(key))}: unknown key, ignored")
        values = {}
        hints = typing.get_type_hints(cls)
        for key, f in fields.items():
            if key in raw:
                values[f.name] = self.value(hints[f.name], f, raw[key], _join(path, key))
            elif _is_section(hints[f.name]):
                values[f.name] = self.section(hints[f.name], {}, _join(path, key))
            elif f.metadata.get("path") and isinstance(f.default, str) and f.default:
                values[f.name] = str((self.base_dir / f.default).resolve())
        try:
            return cls(**values)
        except TypeError as exc:  # pragma: no cover - schema bug, not user input
            raise ConfigError(f"{path}: {exc}") from exc

    def value(self, hint: Any, f: dataclasses.Field, raw: Any, path: str) -> Any:
        origin = typing.get_origin(hint)
        if _is_section(hint):
            return self.section(hint, raw, path)
        if origin is list:
            (item,) = typing.get_args(hint)
            if raw is None:
                return []
            if not isinstance(raw, list):
                self.errors.append(f"{path}: expected a list, got {_kind(raw)}")
                return []
            if _is_section(item):
                return [self.section(item, v, f"{path}[{i}]") for i, v in enumerate(raw)]
            return [self.scalar(item, f, v, f"{path}[{i}]") for i, v in enumerate(raw)]
        return self.scalar(hint, f, raw, path)

    def scalar(self, hint: Any, f: dataclasses.Field, raw: Any, path: str) -> Any:
        default = f.default if f.default is not dataclasses.MISSING else None
        if hint is bool:
            if not isinstance(raw, bool):
                self.errors.append(f"{path}: expected true or false, got {_SHOW.repr(raw)}")
                return default
            return raw
        if hint in (int, float):
            number_ok = isinstance(raw, int | float) and not isinstance(raw, bool)
            if not number_ok or (hint is int and isinstance(raw, float) and not raw.is_integer()):
                wanted = "a whole number" if hint is int else "a number"
                self.errors.append(f"{path}: expected {wanted}, got {_SHOW.repr(raw)}")
                return default
            if not math.isfinite(raw):  # NaN passes every bound check; infinity is no limit
                self.errors.append(f"{path}: expected a finite number, got {raw!r}")
                return default
            value = hint(raw)
            low, high = f.metadata.get("min"), f.metadata.get("max")
            if low is not None and value < low or high is not None and value > high:
                bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
                self.errors.append(f"{path}: must be {bounds}, got {raw!r}")
                return default
            return value
        if hint is str:
            if isinstance(raw, bool) or not isinstance(raw, str | int | float):
                self.errors.append(f"{path}: expected a string, got {_kind(raw)}")
                return default
            value = str(raw)
            choices = f.metadata.get("choices")
            if choices and value.lower() not in choices:
                self.errors.append(f"{path}: must be one of {', '.join(choices)}, got {value!r}")
                return default
            if f.metadata.get("path") and value and not Path(value).is_absolute():
                value = str((self.base_dir / value).resolve())
            return value.lower() if choices else value
        raise ConfigError(f"{path}: unsupported schema type {hint!r}")  # pragma: no cover


def _is_section(hint: Any) -> typing.TypeGuard[type]:
    """True for a dataclass type (a config section), as opposed to a scalar or list type."""
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(raw: Any) -> str:
    return "nothing" if raw is None else type(raw).__name__


def _ca_file_problem(path: str) -> str | None:
    """Why `path` cannot serve as a CA file (unreadable, no PEM certificate), or None."""
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    if b"-----BEGIN CERTIFICATE-----" not in text:
        return f"{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    return None


def _check_arrs(config: Config, errors: list[str]) -> None:
    """Each arr instance: a unique name, an http(s) URL, an API key; a mount path to map to."""
    names: set[str] = set()
    for kind in ("sonarr_instances", "radarr_instances"):
        for index, arr in enumerate(getattr(config.arrs, kind)):
            where = f"arrs.{kind}[{index}]"
            if not arr.name:
                errors.append(f"{where}.name: required")
            elif arr.name in names:
                errors.append(f"{where}.name: duplicate instance name {arr.name!r}")
            names.add(arr.name)
            scheme, _, rest = arr.url.partition("://")
            if scheme.lower() not in ("http", "https") or not rest.strip("/"):
                errors.append(f"{where}.url: must be an http:// or https:// URL, got {arr.url!r}")
            if not arr.api_key:
                errors.append(f"{where}.api_key: required (the instance's Settings > General)")
    mount = config.arrs.mount_path or config.sabnzbd.mount_dir
    if config.arrs.enabled and not mount.startswith("/"):
        errors.append("arrs.mount_path: required (an absolute path, or set sabnzbd.mount_dir) "
                      "when arrs.enabled is true: it maps altmount's paths to the arrs' paths")


def _check_semantics(config: Config, errors: list[str]) -> Config:
    """Cross-field rules the per-key schema cannot express."""
    if not config.metadata.root_path:
        errors.append("metadata.root_path: required, give the metadata directory")
    names: set[str] = set()
    providers = []
    for index, provider in enumerate(config.providers):
        where = f"providers[{index}]"
        if not provider.host:
            errors.append(f"{where}.host: required, give the NNTP server host name")
        name = provider.name or provider.host
        if name in names:
            errors.append(f"{where}.name: duplicate provider name {name!r}")
        names.add(name)
        if provider.password and not provider.username:
            errors.append(f"{where}.username: required when a password is set")
        if provider.ca_file:
            problem = _ca_file_problem(provider.ca_file)
            if problem:
                errors.append(f"{where}.ca_file: {problem}")
        providers.append(dataclasses.replace(provider, name=name))
    if not config.sabnzbd.complete_dir.startswith("/"):
        errors.append("sabnzbd.complete_dir: must be an absolute virtual path such as /complete")
    _check_arrs(config, errors)
    if config.health.min_recheck_interval_hours > config.health.max_recheck_interval_hours:
        errors.append("health.min_recheck_interval_hours: must not exceed "
                      "health.max_recheck_interval_hours")
    if config.streaming.streaming_chunk_size > config.streaming.max_range_size:
        errors.append("streaming.streaming_chunk_size: must not exceed streaming.max_range_size")
    if config.segment_cache.memory_mb > config.streaming.memory_budget_mb:
        errors.append("segment_cache.memory_mb: must not exceed streaming.memory_budget_mb")
    for index, category in enumerate(config.sabnzbd.categories):
        parts = (category.dir or category.name).replace("\\", "/").split("/")
        if category.dir.startswith("/") or any(p in (".", "..") for p in parts):
            errors.append(f"sabnzbd.categories[{index}].dir: must be a relative folder under "
                          f"complete_dir (no leading /, no . or ..), got {category.dir!r}")
    _check_import_strategy(config, errors)
    if config.database.type == "postgres" and not config.database.dsn:
        errors.append("database.dsn: required when database.type is postgres "
                      "(for example postgresql://altmount:secret@db.example:5432/altmount)")
    categories = [dataclasses.replace(c, dir=c.dir or c.name) for c in config.sabnzbd.categories]
    return dataclasses.replace(
        config, providers=providers,
        sabnzbd=dataclasses.replace(config.sabnzbd, categories=categories))


def _check_import_strategy(config: Config, errors: list[str]) -> None:
    strategy = config.import_.import_strategy
    if strategy != "none" and not config.import_.import_dir.startswith("/"):
        errors.append(f"import.import_dir: required when import.import_strategy is "
                      f"{strategy.upper()} (the local folder the links are written to)")
    if strategy == "symlink" and not config.sabnzbd.mount_dir.startswith("/"):
        errors.append("sabnzbd.mount_dir: required (an absolute path) when "
                      "import.import_strategy is SYMLINK: the links point into the mount")
    url = config.import_.strm_base_url
    if url and not url.lower().startswith(("http://", "https://")):
        errors.append(f"import.strm_base_url: must start with http:// or https://, got {url!r}")


def parse_config(text: str, *, base_dir: Path | str = ".",
                 source: str = "config") -> tuple[Config, list[str]]:
    """Parse YAML text into a Config; return it with the warnings (unknown keys).

    Raises ConfigError listing every problem, each naming its key path.
    """
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}:{where}: not valid YAML ({problem})") from exc
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ConfigError(f"{source}: not valid YAML (nested too deeply)") from None
    except ValueError as exc:  # PyYAML's int() of a number over Python's digit limit
        raise ConfigError(f"{source}: not valid YAML ({exc})") from None
    loader = _Loader(Path(base_dir).resolve())
    config = loader.section(Config, raw, "")
    config = _check_semantics(config, loader.errors)
    if loader.errors:
        raise ConfigError(loader.errors)
    return config, loader.warnings


def load_config(path: str | Path) -> tuple[Config, list[str]]:
    """Read and validate a YAML config file; relative paths in it are relative to its folder."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {file} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {file} cannot be read: {exc}") from exc
    return parse_config(text, base_dir=file.resolve().parent, source=str(file))


def _as_plain(value: Any, *, mask: bool, key: str = "") -> Any:
    if dataclasses.is_dataclass(value):
        return {_key(f): _as_plain(getattr(value, f.name), mask=mask, key=_key(f))
                for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [_as_plain(v, mask=mask) for v in value]
    if mask and key in SECRET_KEYS and value:
        return "********"
    return value


def render_config(config: Config, *, mask_secrets: bool = True) -> str:
    """The effective config as YAML, secrets masked unless asked otherwise."""
    return yaml.safe_dump(_as_plain(config, mask=mask_secrets), sort_keys=False)


def config_as_dict(config: Config, *, mask_secrets: bool = True) -> dict[str, Any]:
    """The effective config as plain data (for the API), secrets masked by default."""
    return _as_plain(config, mask=mask_secrets)


def iter_documented_keys(cls: type = Config, prefix: str = "") -> typing.Iterator[tuple[str, str]]:
    """Yield (key path, doc) for every key of the schema; used to check config.example.yaml."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = _join(prefix, _key(f))
        hint = hints[f.name]
        item = typing.get_args(hint)[0] if typing.get_origin(hint) is list else hint
        yield key, f.metadata.get("doc", "")
        if _is_section(item):
            sub = f"{key}[]" if typing.get_origin(hint) is list else key
            yield from iter_documented_keys(item, sub)

