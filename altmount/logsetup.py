"""Logging: one line per event, with its request/stream/queue ids, secrets redacted.

Line format (the same on standard error and in `log.file`)::

    2025-05-01T12:00:00.123Z INFO    altmount.web.site: [request_id=3fa9c2d1] GET /x -> 206, ...

Time is UTC; the bracket holds the context ids a log call passed as `extra`
(`request_id`, `stream_id`, `nzo_id`, in that order) and is left out when there
are none. Newlines inside a message or a traceback are written as `\\n`, so one
event is always one line.

Secrets: every password and API key of the config is replaced by `***` in each
line, and so are the values of credential-bearing URL parameters (`apikey`,
`ma_password`, ...) and Basic credentials, whoever logs them.

`log.file` is rotated by the standard library's RotatingFileHandler at
`log.max_size` MB keeping `log.max_backups` files, gzip'd when `log.compress`
(through the handler's documented `rotator`/`namer` hooks). The file handler runs
behind a QueueHandler/QueueListener pair, so neither disk writes nor gzip of a
rotated file ever run on the reactor thread.
"""

from __future__ import annotations

import base64
import gzip
import logging
import logging.handlers
import os
import queue
import re
import secrets
import shutil
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from altmount.config import SECRET_KEYS, Config, LogConfig, config_as_dict

__all__ = [
    "CONTEXT_FIELDS",
    "StructuredFormatter",
    "config_secrets",
    "new_request_id",
    "redact_url",
    "reset_logging",
    "setup_logging",
]

#: The context ids a log call may pass as `extra`, in the order they are written.
CONTEXT_FIELDS = ("request_id", "stream_id", "nzo_id")
#: Secrets shorter than this are not searched for in log lines: replacing every "ab"
#: would wreck the log. Such a secret is still never logged by our own calls.
MIN_SECRET_LENGTH = 4
_MASK = "***"
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# URL and form parameters that carry credentials (SABnzbd's apikey and ma_password,
# indexers' apikey/passkey/token in addurl links).
_SECRET_PARAM = re.compile(
    r"(?i)\b(apikey|api_key|nzbkey|ma_password|password|passwd|pass|passkey|token|key)"
    r"=([^&\s\"'<>]+)"
)
# The token of a STRM URL (/strm/<token>/<name>) is its only credential.
_STRM_TOKEN = re.compile(r"(/strm/)([^/\s?#\"'<>]+)")
_BASIC = re.compile(r"(?i)\bbasic\s+([A-Za-z0-9+/]{4,}={0,2})")
#: A release password in an NZB name (`Name{{password}}.nzb`, as posters and SABnzbd's
#: `password=` pass one): every line naming the item would show it otherwise.
_RELEASE_PASSWORD = re.compile(r"\{\{.+?\}\}")
_API_KEY_HEADER = re.compile(r"(?i)(x-api-key['\"]?\s*[:=,]\s*\[?\s*b?['\"]?)([^\s'\",\]]+)")


def new_request_id() -> str:
    """A short random id for one HTTP request (8 hex digits)."""
    return secrets.token_hex(4)


def redact_url(url: str) -> str:
    """`url` (or any text) with the values of credential parameters and STRM tokens
    replaced by ***."""
    url = _STRM_TOKEN.sub(lambda m: f"{m.group(1)}{_MASK}", url)
    return _SECRET_PARAM.sub(lambda m: f"{m.group(1)}={_MASK}", url)


def config_secrets(config: Config) -> list[str]:
    """Every secret value of `config` (passwords, API key override) that is not empty."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in SECRET_KEYS and isinstance(value, str) and value:
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(config_as_dict(config, mask_secrets=False))
    return found


class StructuredFormatter(logging.Formatter):
    """Formats a record as one line (see the module docstring), secrets redacted."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted(
            {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        """UTC, ISO 8601, milliseconds."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        """One line: time, level, logger, [context ids], message, escaped traceback."""
        text = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text = f"{text}\n{record.exc_text}"
        if record.stack_info:
            text = f"{text}\n{self.formatStack(record.stack_info)}"
        context = " ".join(
            f"{name}={getattr(record, name)}"
            for name in CONTEXT_FIELDS
            if getattr(record, name, None) not in (None, "")
        )
        head = f"{self.formatTime(record)} {record.levelname:<7} {record.name}: "
        body = f"[{context}] {text}" if context else text
        return head + self.redact(body).replace("\r", "\\r").replace("\n", "\\n")

    def redact(self, text: str) -> str:
        """`text` with the known secrets, credential parameters, Basic credentials and
        release passwords masked."""
        for secret in self._secrets:
            text = text.replace(secret, _MASK)
        text = redact_url(text)
        text = _API_KEY_HEADER.sub(lambda m: m.group(1) + _MASK, text)
        text = _RELEASE_PASSWORD.sub("{{" + _MASK + "}}", text)
        return _BASIC.sub(_mask_basic, text)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time, so a progress display that
    redirects standard error (rich's Live) keeps log lines above its bar."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        """StreamHandler.__init__ assigns a stream; the live sys.stderr is used instead."""


class _BackgroundFileHandler(logging.handlers.QueueHandler):
    """Formats on the caller's thread; a listener thread writes and rotates the file."""

    def __init__(self, target: logging.Handler) -> None:
        events: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        super().__init__(events)
        self._target = target
        listener = logging.handlers.QueueListener(events, target)
        listener.start()
        self._listener: logging.handlers.QueueListener | None = listener

    def close(self) -> None:
        """Write every queued line, stop the thread, close the file (logging.shutdown calls this)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
            self._target.close()
        super().close()


def _mask_basic(match: re.Match[str]) -> str:
    """Mask `Basic <token>` when the token decodes to user:password (not the word "basic")."""
    try:
        decoded = base64.b64decode(match.group(1), validate=True)
    except ValueError:
        return match.group(0)
    return f"Basic {_MASK}" if b":" in decoded else match.group(0)


def _gzip_rotator(source: str, dest: str) -> None:
    with open(source, "rb") as src, gzip.open(dest, "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.remove(source)


def _file_handler(config: LogConfig, formatter: logging.Formatter) -> logging.Handler:
    Path(config.file).parent.mkdir(parents=True, exist_ok=True)
    rotating = logging.handlers.RotatingFileHandler(
        config.file,
        maxBytes=config.max_size * 1024 * 1024,
        backupCount=config.max_backups,
        encoding="utf-8",
    )
    if config.compress:
        rotating.rotator = _gzip_rotator
        rotating.namer = lambda name: name + ".gz"
    # The queue handler has formatted the line already; the file gets it as it is.
    rotating.setFormatter(logging.Formatter("%(message)s"))
    background = _BackgroundFileHandler(rotating)
    background.setFormatter(formatter)
    return background


def reset_logging() -> None:
    """Remove and close every handler of the root logger (the file's queued lines are written)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()


def setup_logging(
    config: LogConfig, *, stream: TextIO | None = None, secrets: Iterable[str] = ()
) -> None:
    """Configure the root logger from `config`, replacing the handlers set before.

    `stream` replaces standard error (tests); `secrets` are masked in every line
    (pass `config_secrets(config)`).
    """
    reset_logging()
    root = logging.getLogger()
    root.setLevel(_LEVELS[config.level])
    formatter = StructuredFormatter(secrets)
    console = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    console.setFormatter(formatter)
    root.addHandler(console)
    if config.file:
        root.addHandler(_file_handler(config, formatter))
    # Twisted's own log is routed into stdlib logging by the server (see server.py).
