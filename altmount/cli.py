"""The `altmount` command line: serve, import, config check.

Each command loads the config, sets up logging and runs the reactor only as
long as it needs to. Errors reach the user as one line, never a traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from altmount.config import Config, load_config, render_config
from altmount.errors import AltmountError, ConfigError
from altmount.logsetup import setup_logging

__all__ = ["main"]

log = logging.getLogger("altmount")

EXIT_CONFIG = 2
EXIT_FAILED = 1

config_option = click.option(
    "--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="YAML config file (see config.example.yaml).")


def _load(config_path: Path) -> Config:
    """Load the config or exit 2 with one line per problem."""
    try:
        config, warnings = load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"config error: {problem}", err=True)
        sys.exit(EXIT_CONFIG)
    for warning in warnings:
        click.echo(f"config warning: {warning}", err=True)
    return config


def _check_core() -> None:
    """Fail at start, not at the first stream, when the compiled kernels are missing."""
    try:
        from altmount import _core  # noqa: F401
    except AltmountError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)


@click.group()
@click.version_option(package_name="altmount")
def cli() -> None:
    """altmount: stream Usenet releases over WebDAV."""


@cli.command()
@config_option
def serve(config_path: Path) -> None:
    """Run the WebDAV/API server until interrupted."""
    config = _load(config_path)
    setup_logging(config.log)
    _check_core()
    from twisted.internet import reactor

    from altmount.server import Server, route_twisted_logs

    route_twisted_logs()
    server = Server(reactor, config)
    failed: list[str] = []

    def on_error(failure):
        failed.append(failure.getErrorMessage())
        log.error("server could not start: %s", failure.getErrorMessage())
        reactor.stop()

    def startup():
        server.start().addErrback(on_error)

    reactor.callWhenRunning(startup)
    reactor.addSystemEventTrigger("before", "shutdown", server.stop)
    reactor.run()
    if failed:
        sys.exit(EXIT_FAILED)


@cli.command(name="import")
@click.argument("nzb", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@config_option
@click.option("--category", default=None, help="Category (decides the folder); default: Default.")
def import_(nzb: Path, config_path: Path, category: str | None) -> None:
    """Import an NZB: learn its files from the providers and write their metadata."""
    config = _load(config_path)
    setup_logging(config.log)
    _check_core()
    from twisted.internet import defer, task

    from altmount.engine import Engine
    from altmount.server import route_twisted_logs

    route_twisted_logs()
    outcome: dict[str, object] = {}

    @defer.inlineCallbacks
    def run(reactor):
        try:
            engine = Engine(reactor, config)
        except AltmountError as exc:
            outcome["error"] = str(exc)
            return
        try:
            outcome["result"] = yield engine.importer.import_nzb(
                nzb.read_bytes(), nzb.name, category=category)
        except AltmountError as exc:
            outcome["error"] = str(exc)
        finally:
            yield engine.close()

    try:
        task.react(lambda reactor: run(reactor))
    except SystemExit as done:
        if done.code not in (0, None):
            raise
    if "error" in outcome:
        click.echo(f"import failed: {outcome['error']}", err=True)
        sys.exit(EXIT_FAILED)
    result = outcome["result"]
    for record in result.files:
        click.echo(f"{record.path}\t{record.size}")
    click.echo(f"imported {len(result.files)} file(s) in {result.elapsed_ms:.0f} ms", err=True)


@cli.group()
def config() -> None:
    """Inspect the configuration."""


@config.command()
@config_option
def check(config_path: Path) -> None:
    """Validate the config and print the effective values, passwords masked."""
    loaded = _load(config_path)
    click.echo(render_config(loaded), nl=False)


def main() -> None:
    """Console-script entry point."""
    try:
        cli(standalone_mode=True)
    except AltmountError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
