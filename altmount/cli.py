"""The `altmount` command line: serve, import (enqueue, --wait), status, db optimize, apikey,
config check, links (regenerate, revoke, tokens).

Each command loads the config, sets up logging and runs the reactor only as
long as it needs to. Errors reach the user as one line, never a traceback.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click

from altmount.bench import bench
from altmount.config import Config, load_config, render_config
from altmount.errors import AltmountError, ConfigError
from altmount.logsetup import config_secrets, setup_logging
from altmount.malloc import tune_malloc

__all__ = ["main"]

log = logging.getLogger("altmount")

EXIT_CONFIG = 2
EXIT_FAILED = 1

config_option = click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML config file (see config.example.yaml).",
)


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
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    default=None,
    help="Serving processes sharing the port and each provider's connections "
    "(default: engine.processes).",
)
@click.option("--worker", default=None, hidden=True, help="index/count/port/demo_port (internal)")
def serve(config_path: Path, processes: int | None, worker: str | None) -> None:
    """Run the WebDAV/API server until interrupted."""
    config = _load(config_path)
    from altmount.web.auth import exposure_problem

    problem = exposure_problem(config.webdav)
    if problem:
        click.echo(f"error: {config_path}: {problem}", err=True)
        sys.exit(EXIT_CONFIG)
    setup_logging(config.log, secrets=config_secrets(config))
    _check_core()
    tune_malloc()
    from twisted.internet import reactor

    from altmount.server import Server, route_twisted_logs

    route_twisted_logs()
    count = processes or config.engine.processes
    if worker is None and count > 1:
        _supervise(reactor, config, config_path, count)
        return
    role = _worker_role(worker) if worker is not None else None
    server = Server(reactor, config, config_path=str(config_path), role=role)
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


def _worker_role(text: str):
    from altmount.workers import WorkerRole

    try:
        index, count, port, demo_port = (int(part) for part in text.split("/"))
    except ValueError:
        click.echo(f"error: --worker wants index/count/port/demo_port, not {text!r}", err=True)
        sys.exit(EXIT_CONFIG)
    return WorkerRole(index, count, port, demo_port)


def _supervise(reactor, config: Config, config_path: Path, count: int) -> None:
    """Run `count` serving processes under a supervisor until interrupted."""
    from altmount.supervisor import Supervisor

    supervisor = Supervisor(reactor, config, str(config_path), count)
    try:
        supervisor.start()
    except OSError as exc:
        webdav = config.webdav
        click.echo(
            f"error: cannot bind {webdav.bind_address}:{webdav.port} (webdav.port): "
            f"{exc.strerror}",
            err=True,
        )
        sys.exit(EXIT_FAILED)
    reactor.addSystemEventTrigger("before", "shutdown", supervisor.stop)
    reactor.run()


#: How often `import --wait` reads the item's state for its progress line.
PROGRESS_POLL_SECONDS = 0.25

PRIORITIES = {"force": 2, "high": 1, "normal": 0, "low": -1, "paused": -2}


@cli.command(name="import")
@click.argument("nzb", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@config_option
@click.option("--category", default=None, help="Category (decides the folder); default: Default.")
@click.option(
    "--priority",
    type=click.Choice(list(PRIORITIES)),
    default=None,
    help="Queue priority; default: the category's. 'paused' adds it held.",
)
@click.option(
    "--wait",
    is_flag=True,
    help="Wait for the import and print its files (imports here if no server does).",
)
def import_(
    nzb: Path, config_path: Path, category: str | None, priority: str | None, wait: bool
) -> None:
    """Add an NZB to the import queue (a running `altmount serve` picks it up)."""
    config = _load(config_path)
    setup_logging(config.log, secrets=config_secrets(config))
    from altmount.backends import open_queue
    from altmount.nzb import parse_nzb
    from altmount.queue.model import gunzip_nzb, resolve_priority

    try:
        data = gunzip_nzb(nzb.read_bytes())
        parse_nzb(data)
    except (OSError, AltmountError) as exc:
        click.echo(f"import failed: {nzb.name}: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    nzb_name = nzb.name[: -len(".gz")] if nzb.name.lower().endswith(".gz") else nzb.name
    resolved = config.category(category)
    level, paused = resolve_priority(
        None if priority is None else PRIORITIES[priority], resolved.priority
    )
    store = open_queue(config)
    item = store.enqueue(data, nzb_name, resolved.name, level, "cli", paused=paused)
    if not wait:
        store.close()
        click.echo(item.nzo_id)
        click.echo(
            f"queued {nzb_name} as item {item.id} ({item.state}, category {item.category})",
            err=True,
        )
        return
    _check_core()
    _wait_for_import(config, store, item.id, nzb_name)


def _wait_for_import(config: Config, store, item_id: int, nzb_name: str) -> None:
    """Run the reactor until the item settles, importing here if no server does;
    a progress line on the terminal shows the item's state and the time elapsed."""
    from twisted.internet import defer, task

    from altmount.cliview import ImportProgress
    from altmount.engine import Engine
    from altmount.links.service import link_service
    from altmount.queue import QueueService, State
    from altmount.queue.service import default_worker_name
    from altmount.server import route_twisted_logs

    route_twisted_logs()
    interval = config.import_.queue_processing_interval_seconds
    # A server beats every poll interval; two missed beats (plus scheduling slack) mean none.
    servers = store.live_workers(time.time(), 2 * interval + 1)
    outcome: dict[str, object] = {}

    @defer.inlineCallbacks
    def run(reactor):
        try:
            engine = Engine(reactor, config)
        except AltmountError as exc:
            store.close()
            outcome["error"] = str(exc)
            return
        links = link_service(reactor, config, engine.store)
        queue = QueueService(
            reactor,
            store,
            engine.importer,
            config,
            worker=default_worker_name() + ":cli",
            on_imported=links.write_import if links is not None else None,
        )

        def unclaimed(item):
            if item.state == State.PENDING:
                log.info(
                    "no server took queue item %d within %.1f s; importing here",
                    item_id,
                    2 * interval,
                )
                queue.start()

        if servers:
            log.info("waiting for %s to import queue item %d", ", ".join(servers), item_id)
            fallback = task.deferLater(reactor, 2 * interval, queue.get, item_id)
            fallback.addCallback(unclaimed)
            fallback.addErrback(lambda failure: failure.trap(defer.CancelledError))
        else:
            fallback = None
            queue.start()

        def show(item):
            progress.update(item.state.value, item.attempts)

        def poll():
            # A deleted item fails wait_for too, which reports it; the poll stays quiet.
            return queue.get(item_id).addCallbacks(show, lambda failure: None)

        poller = task.LoopingCall(poll)
        poller.clock = reactor
        poller.start(PROGRESS_POLL_SECONDS)
        try:
            item = yield queue.wait_for(item_id)
            show(item)
            if item.state == State.COMPLETED:
                outcome["item"] = item
                outcome["files"] = list(engine.store.walk_files(item.target_path))
            else:
                outcome["error"] = item.error or f"the queue item was {item.state}"
        except AltmountError as exc:
            outcome["error"] = str(exc)
        finally:
            if poller.running:
                poller.stop()
            if fallback is not None:
                fallback.cancel()
            yield queue.stop()
            if links is not None:
                yield links.stop()
            yield engine.close()

    try:
        with ImportProgress(nzb_name) as progress:
            task.react(lambda reactor: run(reactor))
    except SystemExit as done:
        if done.code not in (0, None):
            raise
    if "error" in outcome:
        click.echo(f"import failed: {outcome['error']}", err=True)
        sys.exit(EXIT_FAILED)
    item = outcome["item"]
    files = outcome["files"]
    for record in files:
        click.echo(f"{record.path}\t{record.size}")
    click.echo(
        f"imported {len(files)} file(s) in {item.completed_at - item.created_at:.3f} s "
        f"(queue item {item.id})",
        err=True,
    )


@cli.group()
def db() -> None:
    """Maintain the queue database."""


@db.command()
@config_option
def optimize(config_path: Path) -> None:
    """VACUUM and ANALYZE the queue database (run it while nothing imports)."""
    config = _load(config_path)
    from altmount.backends import open_queue, shared_database

    store = open_queue(config)
    try:
        if shared_database(config):
            store.optimize()
            click.echo(f"optimized the queue tables of {store.path}", err=True)
            return
        before = store.path.stat().st_size
        store.optimize()
        after = store.path.stat().st_size
    finally:
        store.close()
    click.echo(f"optimized {store.path}: {before} → {after} bytes", err=True)


@cli.command()
@config_option
def apikey(config_path: Path) -> None:
    """Print the SABnzbd API key (api.key_override, else the one stored in the database)."""
    config = _load(config_path)
    from altmount.backends import open_queue

    store = open_queue(config)
    try:
        click.echo(store.api_key(config.api.key_override))
    finally:
        store.close()


@cli.command()
@config_option
@click.option(
    "--url",
    default=None,
    help="Server base URL; default: from webdav.bind_address and webdav.port.",
)
def status(config_path: Path, url: str | None) -> None:
    """Show a running server's health, queue statistics and streaming workers."""
    config = _load(config_path)
    from rich.console import Console

    from altmount.cliview import fetch_status, render_status, server_url

    try:
        answers = fetch_status(
            url or server_url(config), config.webdav.user, config.webdav.password
        )
    except AltmountError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    render_status(answers, Console())


@cli.group()
def config() -> None:
    """Inspect the configuration."""


@config.command()
@config_option
def check(config_path: Path) -> None:
    """Validate the config and print the effective values, passwords masked."""
    loaded = _load(config_path)
    click.echo(render_config(loaded), nl=False)
    from altmount.web.auth import exposure_problem

    problem = exposure_problem(loaded.webdav)
    if problem:  # `serve` refuses this config: say so here too
        click.echo(f"error: {config_path}: {problem}", err=True)
        sys.exit(EXIT_CONFIG)


@cli.group()
def links() -> None:
    """The SYMLINK/STRM import strategy's links (import.import_dir) and STRM tokens."""


@links.command()
@config_option
def regenerate(config_path: Path) -> None:
    """Rewrite the links of every completed item from the tree; remove stale links."""
    config = _load(config_path)
    from altmount.links.commands import regenerate as run

    report = run(config)
    for folder in report.written:
        click.echo(f"written\t{folder}")
    for path in report.orphans:
        click.echo(f"removed\t{path}")
    for problem in report.errors:
        click.echo(f"error: {problem}", err=True)
    click.echo(
        f"{len(report.written)} release folder(s) written, {report.unchanged} unchanged, "
        f"{len(report.orphans)} stale link(s) removed, {report.tokens_dropped} token(s) "
        "of vanished files dropped",
        err=True,
    )
    if report.errors:
        sys.exit(EXIT_FAILED)


@links.command()
@config_option
@click.argument("token_or_path")
def revoke(config_path: Path, token_or_path: str) -> None:
    """Revoke a STRM token, or every token of a virtual path (a file or a folder)."""
    config = _load(config_path)
    from altmount.links.commands import revoke as run

    gone = run(config, token_or_path)
    for token in gone:
        click.echo(f"revoked\t{token.token}\t{token.path}")
    if not gone:
        click.echo(f"no STRM token matches {token_or_path}", err=True)
        sys.exit(EXIT_FAILED)


@links.command(name="tokens")
@config_option
def list_tokens(config_path: Path) -> None:
    """List the STRM tokens: token, virtual path."""
    config = _load(config_path)
    from altmount.links.commands import tokens

    for token in tokens(config):
        click.echo(f"{token.token}\t{token.path}")


cli.add_command(bench)


def main() -> None:
    """Console-script entry point."""
    try:
        cli(standalone_mode=True)
    except AltmountError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
