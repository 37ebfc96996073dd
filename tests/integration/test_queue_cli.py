"""The queue from the command line and a running server: enqueue, the watch folder, apikey,
db optimize, and a failed import's reason — real processes against fake NNTP servers."""

from __future__ import annotations

import subprocess
import time

import yaml
from test_cli import (
    ALTMOUNT,
    AUTH,
    FILE_SIZE,
    altmount,
    fake_nntp,
    free_port,
    live,
    provider,
    request,
    stop,
    wait_for,
    write_config,
)

from altmount.queue import QueueStore, State
from altmount.queue.watch import PROCESSED_DIR

FAST = {"import": {"queue_processing_interval_seconds": 0.2, "watch_interval_seconds": 0.2}}


def serve(spawn, config):
    """Start `altmount serve` and wait until it answers /live; returns (process, port)."""
    port = yaml.safe_load(config.read_text())["webdav"]["port"]
    server = spawn(
        [*ALTMOUNT, "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: live(port), "/live", server)
    return server, port


def test_import_enqueues_and_serve_imports_it(tmp_path, spawn):
    """Without --wait, import prints the nzo_id at once; a server started later imports it."""
    nntp_port, nzb, _ = fake_nntp(spawn, tmp_path / "nntp", seed=3, name="queued.mkv")
    config = write_config(tmp_path / "altmount.yaml", [provider("one", nntp_port)], **FAST)
    done = altmount(
        "import", str(nzb), "--config", str(config), "--category", "movies", "--priority", "high"
    )
    assert done.returncode == 0, done.stderr
    nzo_id = done.stdout.strip()
    assert nzo_id.startswith("SABnzbd_nzo_") and "queued release.nzb" in done.stderr
    store = QueueStore(tmp_path / "altmount.db")
    item = store.get_by_nzo(nzo_id)
    assert (item.state, item.category, item.priority, item.source) == (
        State.PENDING,
        "movies",
        1,
        "cli",
    )

    server, web_port = serve(spawn, config)
    wait_for(lambda: store.get_by_nzo(nzo_id).state == State.COMPLETED, "import by serve")
    status, _, body = request(web_port, "GET", "/complete/movies/bench/queued.mkv", AUTH)
    assert (status, len(body)) == (200, FILE_SIZE)
    assert store.get_by_nzo(nzo_id).target_path == "/complete/movies/bench"
    store.close()
    stop(server)
    assert server.returncode == 0


def test_watch_folder_feeds_the_server(tmp_path, spawn):
    """An NZB dropped in watch_dir/tv/ is imported into the tv category and moved aside."""
    nntp_port, nzb, _ = fake_nntp(spawn, tmp_path / "nntp", seed=4, name="watched.mkv")
    watch = tmp_path / "watch"
    sections = {"import": {**FAST["import"], "watch_dir": "./watch"}}
    config = write_config(tmp_path / "altmount.yaml", [provider("one", nntp_port)], **sections)
    server, web_port = serve(spawn, config)
    (watch / "tv").mkdir(parents=True)
    (watch / "tv" / "Watched.Show.nzb").write_bytes(nzb.read_bytes())
    path = "/complete/tv/bench/watched.mkv"
    wait_for(lambda: request(web_port, "HEAD", path, AUTH)[0] == 200, "watched import")
    assert (watch / PROCESSED_DIR / "tv" / "Watched.Show.nzb").exists()
    assert not (watch / "tv" / "Watched.Show.nzb").exists()
    stop(server)


def test_wait_prints_the_failure_reason(tmp_path, spawn):
    """import --wait of an NZB whose articles no provider has exits 1 naming them."""
    nntp_port, nzb, _ = fake_nntp(spawn, tmp_path / "nntp", seed=5, name="gone.mkv")
    ghost = tmp_path / "ghost.nzb"
    ghost.write_bytes(nzb.read_bytes().replace(b"@", b".gone@"))
    config = write_config(tmp_path / "altmount.yaml", [provider("one", nntp_port)], **FAST)
    started = time.monotonic()
    done = altmount("import", str(ghost), "--config", str(config), "--wait")
    assert done.returncode == 1 and done.stdout == ""
    failures = [line for line in done.stderr.splitlines() if line.startswith("import failed: ")]
    assert len(failures) == 1 and ".gone@" in failures[0], done.stderr
    assert time.monotonic() - started < 10
    store = QueueStore(tmp_path / "altmount.db")
    (item,) = store.list()
    assert item.state == State.FAILED and item.error in failures[0]
    store.close()


def test_apikey_and_db_optimize(tmp_path):
    """apikey prints one stable generated key (or the override); db optimize succeeds."""
    config = write_config(tmp_path / "altmount.yaml", [provider("one", free_port())])
    first = altmount("apikey", "--config", str(config))
    second = altmount("apikey", "--config", str(config))
    assert first.returncode == 0 and first.stdout == second.stdout
    assert len(first.stdout.strip()) == 32
    override = write_config(tmp_path / "override.yaml", [], api={"key_override": "sekrit"})
    assert altmount("apikey", "--config", str(override)).stdout == "sekrit\n"
    optimized = altmount("db", "optimize", "--config", str(config))
    assert optimized.returncode == 0 and "optimized" in optimized.stderr
