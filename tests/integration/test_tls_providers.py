"""TLS providers through `altmount serve`: certificates verified, refusals a person can act on.

One provider process serves the same release over TLS on four ports (the fake NNTP
server behind TLS, certificates from altmount.testing.certs): a certificate signed by
the CA given as `ca_file`, one signed by a CA nobody trusts, one for another host name,
and an expired one. One server has a provider for each, plus one with `insecure_tls`
against the untrusted CA. Each refused provider must be named once in the log with
host:port and cause, and be unhealthy with that cause in /api/providers and /api/health,
while the server stays up and streams from the trusted one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from livestack import Stack, api, basic, free_port, request, wait_for

# Serves one release over TLS on four ports; writes the NZB, the trusted CA and the ports.
_TLS_PROVIDER = """
import json
import random
import sys
from pathlib import Path
from twisted.internet import reactor
from altmount.testing import nntpserver
from altmount.testing.articles import post_release
from altmount.testing.certs import TestCA, server_options
out = Path(sys.argv[1])
data = random.Random(7).randbytes(2_000_000)
release = post_release({"movie.mkv": data},
                       article_size=256 * 1024, meta={"name": "Tls.Movie"}, salt="tls")
trusted, stranger = TestCA.make("altmount test CA"), TestCA.make("stranger CA")
certificates = {
    "trusted": trusted.issue(),
    "unknown_ca": stranger.issue(),
    "mismatch": trusted.issue(["news.example.com"]),
    "expired": trusted.issue(expired=True),
}
ports = {}
for name, pair in certificates.items():
    port, _ = nntpserver.listen(reactor, release.articles, tls=server_options(*pair))
    ports[name] = port.getHost().port
out.mkdir(parents=True, exist_ok=True)
(out / "release.nzb").write_bytes(release.nzb)
(out / "ca.pem").write_bytes(trusted.pem)
(out / "data").write_bytes(data)
(out / "ports.json").write_text(json.dumps(ports))
reactor.run()
"""

# provider name -> (port of, expected cause in its warning and health reason)
REFUSED = {
    "unknown-ca": ("unknown_ca", "unknown CA: the certificate is signed by 'stranger CA'"),
    "wrong-name": ("mismatch", "host name mismatch: the certificate is for news.example.com"),
    "expired": ("expired", "expired certificate: the server's certificate expired on"),
}


def _config(root: Path, ports: dict[str, int], ca_file: Path) -> tuple[Path, int]:
    web_port = free_port()

    def entry(name: str, port: str, **options: object) -> dict[str, object]:
        return {"name": name, "host": "localhost", "port": ports[port], "tls": True,
                "max_connections": 2, "ca_file": str(ca_file), **options}

    providers = [entry("trusted", "trusted")]
    providers += [entry(name, port) for name, (port, _) in REFUSED.items()]
    providers.append(
        {"name": "lax", "host": "localhost", "port": ports["unknown_ca"], "tls": True,
         "insecure_tls": True, "max_connections": 2, "is_backup_provider": True}
    )
    document = {
        "webdav": {"port": web_port, "bind_address": "127.0.0.1", "user": "operator",
                   "password": "webdav-Pa55word"},
        "metadata": {"root_path": "./metadata", "map_size_mb": 64},
        "nntp": {"connect_timeout_seconds": 5, "request_timeout_seconds": 5},
        "import": {"queue_processing_interval_seconds": 0.2},
        "health": {"enabled": False},
        "log": {"level": "info"},
        "providers": providers,
    }
    path = root / "altmount.yaml"
    path.write_text(yaml.safe_dump(document))
    return path, web_port


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory: pytest.TempPathFactory):
    """The four TLS servers, `altmount serve` with five providers, the release imported."""
    root = tmp_path_factory.mktemp("tls")
    stack = Stack(root, root / "altmount.yaml")
    try:
        out = root / "provider"
        stack.provider = stack.spawn(
            [sys.executable, "-c", _TLS_PROVIDER, str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        ports_file = out / "ports.json"
        text = wait_for(lambda: ports_file.exists() and ports_file.read_text(), "provider",
                        stack.provider)
        stack.config, stack.web_port = _config(root, json.loads(text), out / "ca.pem")
        stack.start_server()
        stack.import_release()
        yield stack
    finally:
        stack.close()


def _log(stack: Stack) -> str:
    assert stack.server_log is not None
    return stack.server_log.read_text(errors="replace")


def _provider(stack: Stack, name: str) -> dict:
    return next(p for p in api(stack.web_port, "/api/providers")["providers"] if p["name"] == name)


def _health(stack: Stack, name: str) -> dict:
    component = api(stack.web_port, "/api/health")["components"]["providers"]
    return next(p for p in component["providers"] if p["name"] == name)


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_certificate_is_one_warning_and_unhealthy(tls_stack: Stack, name: str) -> None:
    """Unknown CA, host name mismatch and expiry: one warning with provider, host:port and
    cause, and the provider unhealthy with that cause in /api/providers and /api/health."""
    ports = json.loads((tls_stack.root / "provider" / "ports.json").read_text())
    port_key, cause = REFUSED[name]
    where = f"provider {name} (localhost:{ports[port_key]}): TLS certificate refused: {cause}"
    warnings = [line for line in _log(tls_stack).splitlines() if where in line]
    assert len(warnings) == 1, _log(tls_stack)
    assert "WARNING" in warnings[0]
    entry = _provider(tls_stack, name)
    assert entry["enabled"] is False and entry["status"] == "unhealthy"
    assert cause in entry["disabled_reason"] and cause in entry["reason"]
    health = _health(tls_stack, name)
    assert health["status"] == "unhealthy" and cause in health["reason"]


def test_trusted_provider_streams_while_others_are_refused(tls_stack: Stack) -> None:
    """The provider whose certificate verifies against ca_file serves the file, byte for byte."""
    status, _, body = request(tls_stack.web_port, "GET", tls_stack.file_path, basic())
    assert status == 200
    assert body == (tls_stack.root / "provider" / "data").read_bytes()
    assert _provider(tls_stack, "trusted")["status"] == "healthy"
    assert tls_stack.server is not None and tls_stack.server.poll() is None


def test_insecure_tls_warns_once_at_start_and_connects(tls_stack: Stack) -> None:
    """insecure_tls skips verification (the untrusted CA is accepted) and says so once."""
    lines = [line for line in _log(tls_stack).splitlines() if "insecure_tls is set" in line]
    assert len(lines) == 1 and "provider lax (localhost:" in lines[0], _log(tls_stack)
    entry = _provider(tls_stack, "lax")
    assert entry["enabled"] is True and entry["status"] == "healthy"
    assert "reachable" in _log(tls_stack).split("provider lax (localhost:", 2)[-1].split("\n")[0]
