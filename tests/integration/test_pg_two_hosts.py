"""Two instances as two hosts on one PostgreSQL database (`database.type: postgres`),
each with its own local folders (LMDB replica, segment cache): what one imports the other
serves byte-exact, they share the queue, history and API key, and the provider's
max_connections holds across both, counted at the provider."""

from __future__ import annotations

import random
import subprocess
import threading

from livestack import ALTMOUNT, DEADLINE, Stack, api, basic, request, wait_for, write_config

SIZE = 6 * 1024 * 1024
DATA = random.Random(5).randbytes(SIZE)  # what the livestack provider posts
LIMIT = 4


def host(root, provider_port: int, dsn: str) -> Stack:
    root.mkdir()
    stack = Stack(root, root / "altmount.yaml")
    stack.config, stack.web_port = write_config(
        root, provider_port, database={"type": "postgres", "dsn": dsn}
    )
    return stack


def test_an_import_on_one_host_is_served_by_the_other(tmp_path, postgres_dsn):
    """Host A imports; host B lists and serves the file at once; 10 readers over both stay
    within the provider's limit; both see one completed item and the same API key."""
    a = Stack(tmp_path, tmp_path / "unused.yaml")
    a.start_provider(SIZE, 0.005, "nntp-user", "nntp-Pa55word")
    b = host(tmp_path / "b", a.provider_port, postgres_dsn)
    first = host(tmp_path / "a", a.provider_port, postgres_dsn)
    a.config, a.web_port = first.config, first.web_port
    a.root = first.root
    try:
        a.start_server()
        b.server = a.spawn(
            [*ALTMOUNT, "serve", "--config", str(b.config)],
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "b" / "serve.stderr").open("w"),
        )
        wait_for(b.live, "host B", b.server)
        done = subprocess.run(
            [*ALTMOUNT, "import", str(tmp_path / "provider" / "release.nzb"), "--config",
             str(a.config)],
            capture_output=True, text=True, timeout=DEADLINE,
        )
        assert done.returncode == 0, done.stderr

        def completed(stack: Stack):
            items = api(stack.web_port, "/api/queue")["items"]
            return items and items[0]["state"] == "completed" and items
        items = wait_for(lambda: completed(b), "the import, seen from host B", b.server)
        assert len(items) == 1 and completed(a) == items  # one queue, imported once
        path = f"{items[0]['target_path']}/movie.mkv"
        assert not (tmp_path / "b" / "metadata").samefile(tmp_path / "a" / "metadata")

        status, _, body = request(b.web_port, "GET", path, basic())
        assert status == 200 and body == DATA
        status, _, body = request(b.web_port, "GET", path, {**basic(), "Range": "bytes=1000-"})
        assert status == 206 and body == DATA[1000:]

        bodies: list[bytes] = [b""] * 10

        def read(index: int) -> None:
            port = (a, b)[index % 2].web_port
            bodies[index] = request(port, "GET", path, basic())[2]

        threads = [threading.Thread(target=read, args=(i,)) for i in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE * 2)
        assert bodies == [DATA] * 10
        assert int((tmp_path / "provider" / "peak").read_text()) <= LIMIT

        keys = {
            subprocess.run([*ALTMOUNT, "apikey", "--config", str(s.config)], capture_output=True,
                           text=True, timeout=DEADLINE, check=True).stdout.strip()
            for s in (a, b)
        }
        assert len(keys) == 1
        assert api(b.web_port, "/api/config")["database"]["dsn"] == "********"
    finally:
        a.close()
