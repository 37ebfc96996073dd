"""The SYMLINK and STRM import strategies end to end, driven the way Sonarr drives them.

A provider (altmount.testing.nntpserver) and `altmount serve` run in their own
processes. NZBs go in through the SABnzbd API exactly as Sonarr's SabnzbdProxy
sends them (multipart part `name="name"`, unquoted boundary, `priority=-100`,
query-string key), `history&start=0&limit=60&category=tv` is polled and its
`storage` followed. SYMLINK links are read through a real `rclone mount` of the
WebDAV root (altmount.testing.rclonemount); STRM URLs are fetched with curl.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
from livestack import (
    ALTMOUNT,
    PASSWORD,
    ROOT,
    USER,
    Stack,
    basic,
    release_data,
    request,
    wait_for,
    write_config,
)

from altmount.testing.rclonemount import RcloneMount, mount_problem

KEY = "5abc0123456789def0123456789abcde"
SIZE = 3 * 1024 * 1024 + 4321
#: Sonarr's boundary: 29 dashes and DateTime.Now.Ticks in hex, unquoted in the header.
BOUNDARY = "-" * 29 + "8dc5f2a1b3c4d5e"


def start_stack(root: Path, imports: dict, sabnzbd: dict) -> Stack:
    """Provider and server under `root` with the given import and sabnzbd sections."""
    stack = Stack(root, root / "altmount.yaml")
    try:
        stack.start_provider(SIZE, 0.0, "nntp-user", "nntp-Pa55word")
        stack.config, stack.web_port = write_config(
            root,
            stack.provider_port,
            api={"key_override": KEY},
            sabnzbd={"enabled": True, **sabnzbd},
            **{"import": {"queue_processing_interval_seconds": 0.2, **imports}},
        )
        stack.start_server()
    except BaseException:
        stack.close()
        raise
    return stack


def sab(port: int, query: str, body: bytes | None = None, content_type: str = "") -> dict:
    """One Sonarr call: `{base}/api?mode=...&apikey=K&output=json`; its JSON (always 200)."""
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    path = f"/api?mode={query}&apikey={KEY}&output=json"
    status, _, answer = request(port, "POST" if body is not None else "GET", path, headers, body)
    assert status == 200, (query, status, answer)
    return json.loads(answer)


def addfile(stack: Stack, title: str) -> str:
    """Sonarr's addfile of the provider's NZB as `<title>.nzb` in category tv; the nzo_id."""
    nzb = (stack.root / "provider" / "release.nzb").read_bytes()
    body = (
        (
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="name"; filename="{title}.nzb"\r\n'
            "Content-Type: application/x-nzb\r\n\r\n"
        ).encode()
        + nzb
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    answer = sab(
        stack.web_port,
        "addfile&cat=tv&priority=-100",
        body,
        f"multipart/form-data; boundary={BOUNDARY}",
    )
    assert answer["status"] is True, answer
    return answer["nzo_ids"][0]


def completed(stack: Stack, nzo_id: str) -> dict:
    """Poll Sonarr's history call until the job is Completed; its slot."""

    def slot():
        history = sab(stack.web_port, "history&start=0&limit=60&category=tv")["history"]
        found = [s for s in history["slots"] if s["nzo_id"] == nzo_id]
        assert not found or found[0]["status"] != "Failed", found
        return found[0] if found and found[0]["status"] == "Completed" else None

    return wait_for(slot, f"{nzo_id} completed", stack.server)


def curl(*args: str) -> subprocess.CompletedProcess:
    """curl without credentials (a player knows only the URL)."""
    return subprocess.run(["curl", "-s", *args], capture_output=True, timeout=60)


def status_of(url: str) -> int:
    return int(curl("-o", "/dev/null", "-w", "%{http_code}", url).stdout)


def altmount(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    """`altmount <args> --config <the stack's config>`."""
    return subprocess.run(
        [*ALTMOUNT, *args, "--config", str(stack.config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def mount_ok():
    """Skip (fail under CI) where rclone mount cannot run."""
    problem = mount_problem()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)


def test_symlink_strategy_through_rclone_mount(tmp_path: Path, mount_ok) -> None:
    """SYMLINK as Sonarr uses it: complete_dir and the category folder exist before any
    import; history `storage` is the link folder; its symlink points at the file under
    mount_dir and reads byte-exact through rclone mount; moving it into a library is a
    rename; Sonarr's history delete removes the link folder, not the library's link."""
    mountpoint, links = tmp_path / "mnt", tmp_path / "links"
    stack = start_stack(
        tmp_path,
        {"import_strategy": "SYMLINK", "import_dir": str(links)},
        {"mount_dir": str(mountpoint)},
    )
    mount = RcloneMount(f"http://127.0.0.1:{stack.web_port}", USER, PASSWORD, mountpoint, tmp_path)
    try:
        mount.start()
        misc = sab(stack.web_port, "get_config")["config"]["misc"]
        assert misc["complete_dir"] == str(links) and (links / "tv").is_dir()
        title = "Show.S01E01.1080p.WEB.h264-GRP"
        nzo_id = addfile(stack, title)
        slot = completed(stack, nzo_id)
        storage = Path(slot["storage"])
        assert storage == links / "tv" / title
        link = storage / "movie.mkv"
        assert os.readlink(link) == f"{mountpoint}/complete/tv/{title}/movie.mkv"
        # rclone caches the listing of complete/tv for up to --dir-cache-time (1 s).
        wait_for(link.exists, "the link's target on the mount")
        data = release_data(SIZE)
        assert hashlib.md5(link.read_bytes()).hexdigest() == hashlib.md5(data).hexdigest()

        library = tmp_path / "library" / "Show" / "Season 01"
        library.mkdir(parents=True)
        moved = library / "Show - S01E01.mkv"
        os.rename(link, moved)  # Sonarr's move on one file system: the link, not the data
        assert moved.is_symlink() and moved.open("rb").read(65536) == data[:65536]

        answer = sab(stack.web_port, f"history&name=delete&del_files=1&value={nzo_id}&archive=1")
        assert answer["status"] is True
        wait_for(lambda: not storage.exists(), "the link folder removed", stack.server)
        assert (links / "tv").is_dir() and moved.stat().st_size == SIZE
    finally:
        mount.stop()
        stack.close()


def test_strm_strategy_plays_by_token_and_follows_deletes(tmp_path: Path) -> None:
    """STRM: each job's folder holds `movie.strm` with a token URL (not the WebDAV
    password) that curl reads byte-exact with ranges and without credentials, across a
    restart; a revoked token answers 404; `links regenerate` writes a new one and removes
    a stale .strm; the REST delete of a job removes its folder (a library copy keeps
    playing); a WebDAV DELETE of a release removes its folder and kills its URL."""
    links = tmp_path / "links"
    stack = start_stack(tmp_path, {"import_strategy": "STRM", "import_dir": str(links)}, {})
    try:
        port, data = stack.web_port, release_data(SIZE)
        first, second = "Show.S01E02.720p.HDTV-GRP", "Show.S01E03.720p.HDTV-GRP"
        ids = [addfile(stack, first), addfile(stack, second)]
        storages = [Path(completed(stack, nzo_id)["storage"]) for nzo_id in ids]
        assert storages == [links / "tv" / first, links / "tv" / second]
        url = (storages[0] / "movie.strm").read_text().strip()
        token = url.split("/strm/")[1].split("/")[0]
        assert url == f"http://127.0.0.1:{port}/strm/{token}/movie.mkv"
        assert PASSWORD not in url and USER not in url
        assert curl("-f", "-r", "1000-200999", url).stdout == data[1000:201000]
        assert curl("-f", "-r", f"{SIZE - 100}-", url).stdout == data[-100:]
        assert curl("-f", url).stdout == data
        head = curl("-sI", url).stdout.decode().lower()
        assert "accept-ranges: bytes" in head and f"content-length: {SIZE}" in head

        stack.stop_server()
        stack.start_server()
        assert curl("-f", "-r", "0-9999", url).stdout == data[:10000]  # the token survived

        library = tmp_path / "library"
        library.mkdir()
        shutil.copy(storages[0] / "movie.strm", library / "Show - S01E02.strm")
        revoked = altmount(stack, "links", "revoke", token)
        assert revoked.returncode == 0 and token in revoked.stdout, revoked.stderr
        assert status_of(url) == 404

        stale = links / "tv" / "Gone.Release"
        stale.mkdir()
        (stale / "movie.strm").write_text(f"http://127.0.0.1:{port}/strm/{'Q' * 32}/movie.mkv\n")
        regenerated = altmount(stack, "links", "regenerate")
        assert regenerated.returncode == 0, regenerated.stderr
        assert f"removed\t{stale / 'movie.strm'}" in regenerated.stdout
        assert not stale.exists()
        new_url = (storages[0] / "movie.strm").read_text().strip()
        assert new_url != url and curl("-f", "-r", "5-104", new_url).stdout == data[5:105]
        (library / "Show - S01E02.strm").write_text(new_url + "\n")  # Sonarr re-imports it

        items = json.loads(request(port, "GET", "/api/queue?limit=10", basic())[2])["items"]
        first_id = next(item["id"] for item in items if item["nzo_id"] == ids[0])
        status, _, body = request(port, "DELETE", f"/api/queue/{first_id}", basic())
        assert status == 200, body
        wait_for(lambda: not storages[0].exists(), "the first job's folder removed", stack.server)
        assert status_of(new_url) == 200  # the library's .strm still plays

        second_url = (storages[1] / "movie.strm").read_text().strip()
        assert status_of(second_url) == 200
        release = quote(f"/complete/tv/{second}")
        status, _, body = request(port, "DELETE", release, basic())
        assert status == 204, body
        wait_for(lambda: not storages[1].exists(), "the second job's folder removed", stack.server)
        assert status_of(second_url) == 404
        assert (links / "tv").is_dir()
    finally:
        stack.close()
