"""The `altmount` command line as a user runs it: subprocesses, exit codes, one-line errors.

`config check` on good and bad files; `altmount import --wait` against fake NNTP servers
run by `benchmarks/fakeserver.py` in their own processes (imported in the CLI process when
no server runs); `altmount serve` over the same metadata store and queue database while
a second `import --wait` is enqueued and picked up by the server; startup with an unreachable provider and
with an unusable metadata directory. Every child process is killed at teardown.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ALTMOUNT = [sys.executable, "-m", "altmount"]
FAKESERVER = [sys.executable, str(ROOT / "benchmarks" / "fakeserver.py")]
AUTH = {"Authorization": "Basic " + base64.b64encode(b"usenet:usenet").decode()}
FILE_SIZE = 4 * 1024 * 1024
DEADLINE = 15.0


def altmount(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run one altmount command to completion."""
    return subprocess.run(
        [*ALTMOUNT, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def free_port() -> int:
    """A port nothing listens on now (bound and closed again)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(check, what: str, child: subprocess.Popen | None = None, deadline=DEADLINE):
    """Poll `check()` until it returns a true value; fail if the deadline passes or `child` dies."""
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        value = check()
        if value:
            return value
        if child is not None and child.poll() is not None:
            pytest.fail(f"process exited with {child.returncode} while waiting for {what}")
        time.sleep(0.05)
    pytest.fail(f"no {what} within {deadline} s")


def fake_nntp(spawn, out: Path, *, seed: int, name: str) -> tuple[int, Path, str]:
    """Start benchmarks/fakeserver.py; return its port, its NZB and the file's md5."""
    child = spawn(
        [
            *FAKESERVER,
            "--out",
            str(out),
            "--size-mb",
            "4",
            "--article-size",
            "262144",
            "--seed",
            str(seed),
            "--name",
            name,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port_file = out / "port"
    port = wait_for(lambda: port_file.exists() and port_file.read_text(), "fake server", child)
    return int(port), out / "release.nzb", (out / "release.md5").read_text().strip()


def write_config(path: Path, providers: list[dict], **sections) -> Path:
    """A config file with a free WebDAV port on 127.0.0.1 and metadata under `path`'s folder."""
    document = {
        "webdav": {"port": free_port(), "bind_address": "127.0.0.1"},
        "metadata": {"root_path": "./metadata", "map_size_mb": 64},
        "nntp": {"connect_timeout_seconds": 2, "request_timeout_seconds": 5},
        "providers": providers,
        **sections,
    }
    path.write_text(yaml.safe_dump(document))
    return path


def provider(name: str, port: int) -> dict:
    return {"name": name, "host": "127.0.0.1", "port": port, "tls": False}


def request(port: int, method: str, path: str, headers: dict | None = None):
    """One request; returns (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def live(port: int) -> bool:
    try:
        return request(port, "GET", "/live")[0] == 200
    except OSError:
        return False


def stop(child: subprocess.Popen) -> None:
    """Stop a server the way an init system does, and wait for it."""
    child.send_signal(signal.SIGTERM)
    child.wait(timeout=DEADLINE)


# -- config check -------------------------------------------------------------------


def test_config_check_good_file_masks_passwords(tmp_path):
    """A valid file exits 0 and prints the effective YAML with every password masked."""
    config = write_config(
        tmp_path / "good.yaml",
        [{**provider("news", 563), "username": "me", "password": "hunter2"}],
        webdav={"port": 8081, "password": "topsecret"},
    )
    done = altmount("config", "check", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "hunter2" not in done.stdout and "topsecret" not in done.stdout
    effective = yaml.safe_load(done.stdout)
    assert effective["webdav"]["password"] == "********"
    assert effective["providers"][0]["password"] == "********"
    assert effective["providers"][0]["username"] == "me"
    assert effective["metadata"]["root_path"] == str(tmp_path / "metadata")
    assert effective["nntp"]["max_retries"] == 3  # defaults filled in


def test_config_check_reports_every_error(tmp_path):
    """Each bad value gets one `config error:` line naming its key path; exit 2."""
    config = tmp_path / "bad.yaml"
    config.write_text(
        'webdav:\n  port: "abc"\n'
        "providers:\n"
        "  - {name: a, host: news.example.com, max_connections: -1}\n"
        "  - {name: b, port: 119}\n"
    )
    done = altmount("config", "check", "--config", str(config))
    assert done.returncode == 2
    assert done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if line.startswith("config error: ")]
    assert len(errors) == 3, done.stderr
    assert any("webdav.port" in line and "'abc'" in line for line in errors)
    assert any("providers[0].max_connections" in line and "-1" in line for line in errors)
    assert any("providers[1].host" in line and "required" in line for line in errors)
    assert "Traceback" not in done.stderr


def test_config_check_warns_about_unknown_keys(tmp_path):
    """An unknown key is a `config warning:` naming it, and the check still passes."""
    config = tmp_path / "extra.yaml"
    config.write_text("webdav:\n  port: 8080\n  colour: blue\nbogus_section: 1\n")
    done = altmount("config", "check", "--config", str(config))
    assert done.returncode == 0
    warnings = [line for line in done.stderr.splitlines() if line.startswith("config warning: ")]
    assert len(warnings) == 2, done.stderr
    assert any("webdav.colour" in line for line in warnings)
    assert any("bogus_section" in line for line in warnings)


def test_config_check_missing_file(tmp_path):
    """A config file that does not exist is one clear line and exit 2."""
    missing = tmp_path / "nope.yaml"
    done = altmount("config", "check", "--config", str(missing))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"config error: config file {missing} does not exist"]


# -- import and serve -----------------------------------------------------------------


def test_import_then_serve_while_another_import_runs(tmp_path, spawn):
    """Imported files are served byte-exact, and a later import shows up without a restart."""
    first_port, first_nzb, first_md5 = fake_nntp(spawn, tmp_path / "one", seed=1, name="bench.mkv")
    second_port, second_nzb, _ = fake_nntp(spawn, tmp_path / "two", seed=2, name="other.mkv")
    config = write_config(
        tmp_path / "altmount.yaml",
        [provider("one", first_port), provider("two", second_port)],
        # The second import is enqueued while serve runs; serve finds it at its next poll.
        **{"import": {"queue_processing_interval_seconds": 0.5}},
    )
    done = altmount("import", str(first_nzb), "--config", str(config), "--wait")
    assert done.returncode == 0, done.stderr
    path = "/complete/complete/bench/bench.mkv"
    assert done.stdout == f"{path}\t{FILE_SIZE}\n"

    web_port = yaml.safe_load(config.read_text())["webdav"]["port"]
    server = spawn(
        [*ALTMOUNT, "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: live(web_port), "/live", server)
    importing = spawn(
        [
            *ALTMOUNT,
            "import",
            str(second_nzb),
            "--config",
            str(config),
            "--category",
            "tv",
            "--wait",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    status, headers, body = request(web_port, "GET", path, AUTH)
    assert status == 200
    assert len(body) == FILE_SIZE
    assert hashlib.md5(body).hexdigest() == first_md5
    reads = 0
    while importing.poll() is None:  # reads go on while the other process writes
        start = (reads * 300_007) % (FILE_SIZE - 1000)
        headers = {**AUTH, "Range": f"bytes={start}-{start + 999}"}
        assert request(web_port, "GET", path, headers)[::2] == (206, body[start : start + 1000])
        reads += 1
    out, err = importing.communicate(timeout=DEADLINE)
    assert importing.returncode == 0, err
    assert out == f"/complete/tv/bench/other.mkv\t{FILE_SIZE}\n"

    status, _, listing = request(
        web_port, "PROPFIND", "/complete/tv/bench/", {**AUTH, "Depth": "1"}
    )
    assert status == 207
    hrefs = [element.text for element in ET.fromstring(listing).iter("{DAV:}href")]
    assert "/complete/tv/bench/other.mkv" in hrefs, hrefs
    stop(server)
    assert server.returncode == 0


def test_serve_with_unreachable_provider(tmp_path, spawn):
    """A provider on a closed port gives one warning naming it; the server still serves."""
    dead = free_port()
    config = write_config(tmp_path / "altmount.yaml", [provider("deadnews", dead)])
    web_port = yaml.safe_load(config.read_text())["webdav"]["port"]
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        server = spawn(
            [*ALTMOUNT, "serve", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=sink
        )
    wait_for(lambda: live(web_port), "/live", server)
    wait_for(lambda: "WARNING" in log.read_text(), "warning", server)
    assert request(web_port, "GET", "/live")[2] == b"OK"
    stop(server)
    warnings = [line for line in log.read_text().splitlines() if " WARNING " in line]
    assert len(warnings) == 1, warnings
    assert "deadnews" in warnings[0] and f"127.0.0.1:{dead}" in warnings[0]
    assert "Traceback" not in log.read_text()


def test_import_malformed_nzb(tmp_path):
    """A malformed NZB fails the import with exit 1 and one line naming line and column."""
    nzb = tmp_path / "broken.nzb"
    nzb.write_text(
        '<?xml version="1.0"?>\n<nzb xmlns="http://www.newzbin.com/DTD/2003/nzb">\n'
        '<file subject="x">\n<segments><segment bytes="1" number="1">a@b</segment>\n'
        "</file></nzb>\n"
    )
    config = write_config(tmp_path / "altmount.yaml", [provider("news", free_port())])
    done = altmount("import", str(nzb), "--config", str(config), "--wait")
    assert done.returncode == 1
    assert done.stdout == ""
    failures = [line for line in done.stderr.splitlines() if line.startswith("import failed: ")]
    assert len(failures) == 1, done.stderr
    assert "broken.nzb" in failures[0] and "line 5, column 3" in failures[0]
    assert "Traceback" not in done.stderr


def test_serve_with_unusable_metadata_dir(tmp_path):
    """A metadata path under a regular file stops serve with one clear error, no traceback."""
    (tmp_path / "afile").write_text("not a directory")
    config = write_config(
        tmp_path / "altmount.yaml", [], metadata={"root_path": "./afile/metadata"}
    )
    done = altmount("serve", "--config", str(config), timeout=DEADLINE)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, done.stderr
    assert str(tmp_path / "afile" / "metadata") in errors[0]
    assert "metadata.root_path" in errors[0]
    assert "Traceback" not in done.stderr
