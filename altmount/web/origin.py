"""Whether a request was sent by another site's page: its Origin or Referer against its Host.

Used by altmount.web.auth against CSRF. No I/O.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from twisted.web.server import Request

__all__ = ["cross_site"]


def _host_of(value: bytes) -> tuple[str, str] | None:
    """(scheme, host[:port] with the default port dropped) of a URL, or None."""
    try:
        parts = urlsplit(value.decode("ascii").strip())
        port = parts.port
    except (UnicodeDecodeError, ValueError):
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = 443 if parts.scheme == "https" else 80
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    return parts.scheme, host if port in (None, default) else f"{host}:{port}"


def _authority(value: bytes | None, secure: bool) -> str | None:
    """A Host header normalised as `_host_of` does (default port dropped)."""
    if not value:
        return None
    found = _host_of((b"https://" if secure else b"http://") + value.split(b",")[0].strip())
    return found[1] if found else None


def cross_site(request: Request) -> str:
    """Why `request` comes from another site's page (its Origin or Referer), or "" if not."""
    origin = request.getHeader(b"origin")
    named = origin if origin is not None else request.getHeader(b"referer")
    if named is None:
        return ""  # not a browser, or one that sends neither (then from our own page)
    header = "Origin" if origin is not None else "Referer"
    site = _host_of(named)
    found = (
        _authority(request.getHeader(name), request.isSecure())
        for name in (b"host", b"x-forwarded-host")
    )
    own = {authority for authority in found if authority is not None}
    if site is not None and site[1] in own:
        return ""
    shown = named.decode("latin-1")[:100]
    return f"{header} {shown} is not this server ({', '.join(sorted(own)) or 'no Host'})"
