"""Logging: one line per event to stderr and, when `log.file` is set, a rotated file.

Rotation is the standard library's RotatingFileHandler; `log.compress` gzips the
rotated files through the handler's documented `rotator`/`namer` hooks.
"""

from __future__ import annotations

import gzip
import logging
import logging.handlers
import os
import shutil
import sys
from pathlib import Path

from altmount.config import LogConfig

__all__ = ["setup_logging"]

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
           "warning": logging.WARNING, "error": logging.ERROR}


def _gzip_rotator(source: str, dest: str) -> None:
    with open(source, "rb") as src, gzip.open(dest, "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.remove(source)


def setup_logging(config: LogConfig, *, stream=None) -> None:
    """Configure the root logger from `config` (replacing handlers set before)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(_LEVELS[config.level])
    formatter = logging.Formatter(FORMAT)
    console = logging.StreamHandler(stream or sys.stderr)
    console.setFormatter(formatter)
    root.addHandler(console)
    if config.file:
        Path(config.file).parent.mkdir(parents=True, exist_ok=True)
        rotating = logging.handlers.RotatingFileHandler(
            config.file, maxBytes=config.max_size * 1024 * 1024,
            backupCount=config.max_backups, encoding="utf-8")
        if config.compress:
            rotating.rotator = _gzip_rotator
            rotating.namer = lambda name: name + ".gz"
        rotating.setFormatter(formatter)
        root.addHandler(rotating)
    # Twisted's own log is routed into stdlib logging by the server (see server.py).
