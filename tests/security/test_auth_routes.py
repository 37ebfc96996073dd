"""Every route of the real server refuses a caller without credentials.

The routes are not listed by hand: the test starts the real `Server`, takes the
resource tree of its site, asks the root for each reserved name and walks the
objects behind each mount for route tables (anything with a `pattern` and
`methods`, as `opsapi.Route`) and SABnzbd mode tables. A route added later is
therefore checked without editing this file. Also: random paths under every
mount, the WebDAV tree with every method, and SABnzbd's own refusals.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
import tempfile
from typing import Any

import yaml
from twisted.internet import defer, reactor
from twisted.internet.protocol import Protocol
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.test.requesthelper import DummyRequest

from altmount.config import parse_config
from altmount.server import Server
from altmount.web.site import RESERVED

KEY = "f00dfeedf00dfeedf00dfeedf00dfeed"
#: SABnzbd answers these two without a key, as SABnzbd itself does (no data in either).
SAB_OPEN_MODES = {"version", "auth"}
#: The UI's static files and its session routes load before any login (they hold no data).
UI_PUBLIC = re.compile(r"^/ui(/|/static/.*|/index\.html|/api/(session|login))?$")


class _Body(Protocol):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.done: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Any) -> None:
        self.done.callback(b"".join(self.chunks))


def _objects_behind(resource: Any, limit: int = 4) -> list[Any]:
    """Every altmount object reachable from `resource` through attributes, `limit` deep."""
    seen: dict[int, Any] = {}
    frontier = [resource]
    for _ in range(limit):
        following = []
        for obj in frontier:
            if id(obj) in seen or not type(obj).__module__.startswith("altmount"):
                continue
            seen[id(obj)] = obj
            names = list(getattr(obj, "__dict__", {})) + list(getattr(type(obj), "__slots__", ()))
            for name in names:
                value = getattr(obj, name, None)
                items = value if isinstance(value, list | tuple) else [value]
                following.extend(items)
        frontier = following
    return list(seen.values())


def route_table(site: Any) -> tuple[list[tuple[bytes, str, bool]], set[str]]:
    """(method, concrete path, public) of every table route, and the SABnzbd modes."""
    routes: list[tuple[bytes, str, bool]] = []
    modes: set[str] = set()
    for name in RESERVED:
        mount = site.resource.getChild(name, DummyRequest([name]))
        for obj in _objects_behind(mount):
            if isinstance(getattr(obj, "pattern", None), str) and isinstance(
                getattr(obj, "methods", None), tuple
            ):
                path = re.sub(r"\{\w+:int\}", "1", obj.pattern)
                path = re.sub(r"\{\w+:path\}", "some/file.mkv", path)
                path = re.sub(r"\{\w+\}", "someone", path)
                routes += [(method, path, bool(obj.public)) for method in obj.methods]
            table = getattr(obj, "_modes", None)
            if isinstance(table, dict):
                modes |= set(table)
    return sorted(set(routes)), modes


class EveryRouteNeedsCredentials(unittest.TestCase):
    """The real server on 127.0.0.1, auth on, no providers."""

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        folder = tempfile.mkdtemp(prefix="altmount-authroutes-")
        self.addCleanup(shutil.rmtree, folder, True)
        text = yaml.safe_dump(
            {
                "webdav": {"port": 8080, "bind_address": "127.0.0.1", "password": "s3cret-pw"},
                "metadata": {"root_path": os.path.join(folder, "metadata"), "map_size_mb": 16},
                "database": {"path": os.path.join(folder, "altmount.db")},
                "api": {"key_override": KEY},
                "sabnzbd": {"enabled": True},
            }
        )
        config, _ = parse_config(text, base_dir=folder)
        config = dataclasses.replace(config, webdav=dataclasses.replace(config.webdav, port=0))
        self.server = Server(reactor, config)
        port = yield self.server.start()
        self.site = port.factory
        self.base = f"http://127.0.0.1:{port.getHost().port}"
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, pool=self.pool)

    @defer.inlineCallbacks
    def tearDown(self):
        yield self.pool.closeCachedConnections()
        yield self.server.stop()

    @defer.inlineCallbacks
    def call(self, method: bytes, path: str, headers: dict[bytes, list[bytes]] | None = None):
        response = yield self.agent.request(
            method, (self.base + path).encode(), Headers(headers or {})
        )
        body = _Body()
        response.deliverBody(body)
        data = yield body.done
        return response.code, data

    @defer.inlineCallbacks
    def test_table_routes_refuse_without_credentials(self):
        """Each route found in the site's tables answers 401 (public ones: bare status only)."""
        routes, _ = route_table(self.site)
        self.assertTrue(any(path == "/api/health" for _, path, _ in routes), routes)
        for method, path, public in routes:
            code, body = yield self.call(method, path)
            if public:
                self.assertEqual(set(json.loads(body)), {"status"}, path)
            else:
                self.assertEqual(code, 401, f"{method.decode()} {path}: {body[:200]!r}")
                self.assertNotIn(b"s3cret-pw", body)

    @defer.inlineCallbacks
    def test_sabnzbd_modes_refuse_without_key(self):
        """Every SABnzbd mode but version/auth says "API Key Required" and nothing else."""
        _, modes = route_table(self.site)
        self.assertIn("queue", modes)
        for mode in sorted(modes - SAB_OPEN_MODES) + ["no_such_mode"]:
            for prefix in ("/sabnzbd/api", "/api"):
                code, body = yield self.call(b"GET", f"{prefix}?mode={mode}&output=json")
                self.assertEqual(json.loads(body), {"status": False, "error": "API Key Required"})
        code, body = yield self.call(b"GET", "/sabnzbd/api?mode=queue&apikey=nope")
        self.assertEqual(json.loads(body), {"status": False, "error": "API Key Incorrect"})

    @defer.inlineCallbacks
    def test_webdav_every_method_refuses(self):
        """Every method on the WebDAV tree (both prefixes) answers 401 with a Basic challenge."""
        methods = [
            b"GET",
            b"HEAD",
            b"PROPFIND",
            b"OPTIONS",
            b"DELETE",
            b"MOVE",
            b"PUT",
            b"MKCOL",
            b"LOCK",
            b"POST",
            b"PROPPATCH",
            b"TRACE",
        ]
        for method in methods:
            for path in ("/", "/complete/", "/webdav/", "/webdav/complete/x.mkv", "/LIVE"):
                code, _ = yield self.call(method, path, {b"Depth": [b"1"]})
                self.assertEqual(code, 401, f"{method.decode()} {path}")

    @defer.inlineCallbacks
    def test_random_paths_under_every_mount_give_nothing(self):
        """Random paths and methods under every top-level name never answer 2xx without
        credentials, except /live, the bare /api/health and the UI's login assets."""
        rng = random.Random(7)
        words = [
            "queue",
            "health",
            "1",
            "files",
            "config",
            "api",
            "providers",
            "x",
            "..",
            "reload",
            "test",
            "metrics",
            "stats",
            "streaming",
            "upload",
            "%2e",
            "retry",
        ]
        for _ in range(150):
            top = rng.choice([name.decode() for name in RESERVED] + ["webdav", "complete"])
            rest = "/".join(rng.choice(words) for _ in range(rng.randint(0, 3)))
            path = f"/{top}/{rest}" if rest else f"/{top}"
            method = rng.choice([b"GET", b"POST", b"DELETE", b"PUT", b"HEAD"])
            code, body = yield self.call(method, path)
            if path in ("/api/health", "/api/health/") and method in (b"GET", b"HEAD"):
                continue
            if UI_PUBLIC.match(path):
                continue
            self.assertFalse(
                200 <= code < 300, f"{method.decode()} {path} -> {code} {body[:120]!r}"
            )
