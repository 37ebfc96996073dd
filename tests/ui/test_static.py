"""The static files of the web UI: content types, cache headers, gzip, 304, and size."""

from __future__ import annotations

import gzip
import re

from test_session import call, site

from altmount.web.ui import load_static

#: The issue's budget for what the dashboard downloads.
MAX_TRANSFER = 300 * 1024


def test_index_at_ui_root():
    """/ui/ is index.html as UTF-8 HTML, revalidated (no-cache) with an ETag and a CSP."""
    answer = call(site(), b"GET", b"/ui/")
    assert answer.status == 200
    assert answer.header(b"content-type") == b"text/html; charset=utf-8"
    assert answer.header(b"cache-control") == b"no-cache"
    assert answer.header(b"etag").startswith(b'"')
    assert b"default-src 'self'" in answer.header(b"content-security-policy")
    assert answer.header(b"x-content-type-options") == b"nosniff"
    assert b'<script type="module" src="js/app.js">' in answer.body


def test_ui_without_slash_redirects():
    """/ui answers a redirect to /ui/ (relative asset URLs need the slash)."""
    answer = call(site(), b"GET", b"/ui")
    assert answer.status == 302 and answer.header(b"location") == b"/ui/"


def test_content_types():
    """JS modules, CSS and SVG have their proper types (module scripts need text/javascript)."""
    the_site = site()
    for path, kind in [
        (b"/ui/js/app.js", b"text/javascript; charset=utf-8"),
        (b"/ui/app.css", b"text/css; charset=utf-8"),
        (b"/ui/favicon.svg", b"image/svg+xml"),
    ]:
        answer = call(the_site, b"GET", path)
        assert (answer.status, answer.header(b"content-type")) == (200, kind), path


def test_gzip_when_accepted():
    """With Accept-Encoding gzip the body is gzip of the file, with Vary: Accept-Encoding."""
    the_site = site()
    plain = call(the_site, b"GET", b"/ui/js/app.js")
    packed = call(the_site, b"GET", b"/ui/js/app.js", {b"Accept-Encoding": b"gzip, br"})
    assert packed.header(b"content-encoding") == b"gzip"
    assert packed.header(b"vary") == b"Accept-Encoding"
    assert gzip.decompress(packed.body) == plain.body
    refused = call(the_site, b"GET", b"/ui/js/app.js", {b"Accept-Encoding": b"gzip;q=0"})
    assert refused.header(b"content-encoding") is None


def test_not_modified():
    """A request with the current ETag in If-None-Match gets 304 and no body."""
    the_site = site()
    etag = call(the_site, b"GET", b"/ui/app.css").header(b"etag")
    again = call(the_site, b"GET", b"/ui/app.css", {b"If-None-Match": etag})
    assert again.status == 304 and again.body == b""


def test_head_and_other_methods():
    """HEAD has the headers and no body; POST is 405 with Allow."""
    the_site = site()
    head = call(the_site, b"HEAD", b"/ui/app.css")
    assert head.status == 200 and head.body == b"" and int(head.header(b"content-length")) > 0
    post = call(the_site, b"POST", b"/ui/app.css")
    assert post.status == 405 and post.header(b"allow") == b"GET, HEAD"


def test_unknown_and_escaping_paths_are_404():
    """Unknown files and ../ tricks find nothing (only files loaded at start are served)."""
    the_site = site()
    for path in (
        b"/ui/nope.js",
        b"/ui/../altmount/web/session.py",
        b"/ui/js/../../x.py",
        b"/ui/js/%2e%2e/app.css",
    ):
        assert call(the_site, b"GET", path).status == 404, path


def test_static_files_need_no_login():
    """The UI's files are public (they hold no data); /api stays closed."""
    the_site = site()
    assert call(the_site, b"GET", b"/ui/js/api.js").status == 200
    assert call(the_site, b"GET", b"/api/ping").status == 401


def test_every_module_import_is_shipped():
    """Every relative import in the JS modules names a shipped file."""
    files = load_static()
    for name, item in files.items():
        if not name.endswith(".js"):
            continue
        folder = name.rsplit("/", 1)[0]
        for target in re.findall(rb'from "(\.{1,2}/[^"]+)"', item.body):
            parts = folder.split("/") + target.decode().split("/")
            resolved: list[str] = []
            for part in parts:
                if part == "..":
                    resolved.pop()
                elif part != ".":
                    resolved.append(part)
            assert "/".join(resolved) in files, (name, target)


def test_total_transfer_within_budget():
    """Every UI file together, as sent (gzip where smaller), stays under 300 KB."""
    total = sum(len(f.gzipped or f.body) for f in load_static().values())
    assert total <= MAX_TRANSFER
