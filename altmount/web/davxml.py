"""WebDAV XML (RFC 4918): parse PROPFIND bodies, build 207 multistatus answers. No I/O.

Request bodies are parsed with expat directly and refused if they carry a
DOCTYPE (and so any ENTITY declaration): no entity expansion, no external
fetches, the "billion laughs" cannot start (the defusedxml rules). Bodies are
capped at `MAX_BODY_BYTES` before parsing.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterable
from dataclasses import dataclass
from xml.parsers import expat
from xml.sax.saxutils import escape, quoteattr

from altmount.errors import RequestError

__all__ = [
    "DAV",
    "MAX_BODY_BYTES",
    "LIVE_PROPERTIES",
    "PropfindRequest",
    "DavResource",
    "parse_propfind",
    "multistatus",
    "finite_depth_error",
]

DAV = "DAV:"
#: A PROPFIND body names a handful of properties; 64 KiB is far beyond any real one.
MAX_BODY_BYTES = 64 * 1024
#: The live properties we answer, in the order they are written.
LIVE_PROPERTIES = (
    "resourcetype",
    "displayname",
    "getcontentlength",
    "getlastmodified",
    "getcontenttype",
    "getetag",
    "creationdate",
)
_SEP = " "  # expat namespace separator: cannot occur in a namespace URI or a name
_XML_HEAD = '<?xml version="1.0" encoding="utf-8"?>\n'


@dataclass(frozen=True, slots=True)
class PropfindRequest:
    """What a PROPFIND asks for: `kind` is allprop, propname or prop (with `names`)."""

    kind: str
    names: tuple[tuple[str, str], ...] = ()  #: (namespace, local name) for kind "prop"


@dataclass(frozen=True, slots=True)
class DavResource:
    """One entry of a multistatus answer; file-only fields are None for collections."""

    href: str
    display_name: str
    is_dir: bool
    mtime: float
    size: int | None = None
    content_type: str | None = None
    etag: str | None = None


def _refuse_dtd(*_args: object) -> None:
    raise RequestError("XML bodies with a DOCTYPE or entities are refused")


def _split(name: str) -> tuple[str, str]:
    namespace, _, local = name.rpartition(_SEP)
    return namespace, local


def parse_propfind(body: bytes) -> PropfindRequest:
    """Parse a PROPFIND body (RFC 4918 14.20); an empty body means allprop.

    Raises RequestError (400, or 413 when over MAX_BODY_BYTES).
    """
    if len(body) > MAX_BODY_BYTES:
        raise RequestError(f"PROPFIND body over {MAX_BODY_BYTES} bytes", 413)
    if not body.strip():
        return PropfindRequest("allprop")
    parser = expat.ParserCreate(namespace_separator=_SEP)
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    stack: list[tuple[str, str]] = []
    kinds: list[str] = []
    names: list[tuple[str, str]] = []

    def start(name: str, _attrs: object) -> None:
        element = _split(name)
        if not stack and element != (DAV, "propfind"):
            raise RequestError("PROPFIND body must be a DAV: propfind element")
        if len(stack) == 1 and element[0] == DAV:
            if element[1] in ("allprop", "propname", "prop"):
                kinds.append(element[1])
        if len(stack) == 2 and stack[1] == (DAV, "prop"):
            names.append(element)
        stack.append(element)

    def end(_name: str) -> None:
        stack.pop()

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(body, True)
    except expat.ExpatError as exc:
        raise RequestError(f"PROPFIND body is not well-formed XML: {exc}") from None
    except (LookupError, ValueError) as exc:
        # pyexpat lets an unknown or multi-byte declared encoding escape as these.
        raise RequestError(f"PROPFIND body cannot be decoded: {exc}") from None
    if len(kinds) != 1:
        raise RequestError("PROPFIND needs exactly one of allprop, propname or prop")
    return PropfindRequest(kinds[0], tuple(names) if kinds[0] == "prop" else ())


def _http_date(mtime: float) -> str:
    return email.utils.formatdate(mtime, usegmt=True)


def _iso_date(mtime: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime))


def _live_values(resource: DavResource) -> dict[str, str]:
    """The XML content of each live property this resource has."""
    values = {
        "resourcetype": "<D:collection/>" if resource.is_dir else "",
        "displayname": escape(resource.display_name),
        "getlastmodified": _http_date(resource.mtime),
        "creationdate": _iso_date(resource.mtime),
    }
    if resource.size is not None:
        values["getcontentlength"] = str(resource.size)
    if resource.content_type is not None:
        values["getcontenttype"] = escape(resource.content_type)
    if resource.etag is not None:
        values["getetag"] = escape(resource.etag)
    return {name: values[name] for name in LIVE_PROPERTIES if name in values}


def _element(namespace: str, local: str, content: str = "") -> str:
    if namespace == DAV:
        tag, declaration = f"D:{local}", ""
    else:
        tag, declaration = f"X:{local}", f" xmlns:X={quoteattr(namespace)}"
        if not namespace:
            tag, declaration = local, ' xmlns=""'
    if not content:
        return f"<{tag}{declaration}/>"
    return f"<{tag}{declaration}>{content}</{tag}>"


def _propstat(props: list[str], status: str) -> str:
    return (
        f"<D:propstat><D:prop>{''.join(props)}</D:prop>"
        f"<D:status>HTTP/1.1 {status}</D:status></D:propstat>"
    )


def _response(resource: DavResource, request: PropfindRequest) -> str:
    values = _live_values(resource)
    found: list[str] = []
    missing: list[str] = []
    if request.kind == "allprop":
        found = [_element(DAV, name, value) for name, value in values.items()]
    elif request.kind == "propname":
        found = [_element(DAV, name) for name in values]
    else:
        for namespace, local in request.names:
            if namespace == DAV and local in values:
                found.append(_element(DAV, local, values[local]))
            else:
                missing.append(_element(namespace, local))
    parts = [f"<D:response><D:href>{escape(resource.href)}</D:href>"]
    if found:
        parts.append(_propstat(found, "200 OK"))
    if missing:
        parts.append(_propstat(missing, "404 Not Found"))
    parts.append("</D:response>")
    return "".join(parts)


def multistatus(resources: Iterable[DavResource], request: PropfindRequest) -> bytes:
    """The 207 body answering `request` for each resource (RFC 4918 13, 14.16)."""
    body = [_XML_HEAD, '<D:multistatus xmlns:D="DAV:">']
    body.extend(_response(resource, request) for resource in resources)
    body.append("</D:multistatus>\n")
    return "".join(body).encode("utf-8")


def finite_depth_error() -> bytes:
    """The 403 body refusing `Depth: infinity` (RFC 4918 9.1, precondition propfind-finite-depth)."""
    return (_XML_HEAD + '<D:error xmlns:D="DAV:"><D:propfind-finite-depth/></D:error>\n').encode(
        "utf-8"
    )
