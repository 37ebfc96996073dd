"""PROPFIND body parsing (safe, bounded) and multistatus generation."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from altmount.errors import RequestError
from altmount.web.davxml import (
    MAX_BODY_BYTES,
    DavResource,
    PropfindRequest,
    finite_depth_error,
    multistatus,
    parse_propfind,
)

D = "{DAV:}"
PROP_BODY = (
    b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:Z="urn:z">'
    b"<D:prop><D:getcontentlength/><D:resourcetype/><Z:color/><bare xmlns=''/></D:prop>"
    b"</D:propfind>"
)
FILE = DavResource(
    "/a%20b.mkv", "a b.mkv", False, 0.0, size=10, content_type="video/x-matroska", etag='"a-0"'
)
DIR = DavResource("/dir/", "dir", True, 86400.0)


def test_empty_body_is_allprop():
    """An empty PROPFIND body means allprop (RFC 4918 9.1)."""
    assert parse_propfind(b"") == PropfindRequest("allprop")
    assert parse_propfind(b"  \r\n") == PropfindRequest("allprop")


@pytest.mark.parametrize("kind", ["allprop", "propname"])
def test_allprop_and_propname(kind):
    """allprop and propname bodies are recognised, with or without an XML declaration."""
    body = f'<propfind xmlns="DAV:"><{kind}/></propfind>'.encode()
    assert parse_propfind(body) == PropfindRequest(kind)


def test_prop_names_keep_namespaces():
    """Requested properties come back as (namespace, name) pairs, in order."""
    assert parse_propfind(PROP_BODY) == PropfindRequest(
        "prop",
        (("DAV:", "getcontentlength"), ("DAV:", "resourcetype"), ("urn:z", "color"), ("", "bare")),
    )


@pytest.mark.parametrize(
    "body",
    [
        b"<notxml",
        b'<D:propfind xmlns:D="DAV:"></D:propfind>',
        b'<D:propfind xmlns:D="DAV:"><D:allprop/><D:propname/></D:propfind>',
        b"<propfind><allprop/></propfind>",
        b'<D:other xmlns:D="DAV:"><D:allprop/></D:other>',
        b'<!DOCTYPE x [<!ENTITY a "aaaa">]><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>',
        b'<!DOCTYPE x SYSTEM "http://127.0.0.1:1/x.dtd"><propfind xmlns="DAV:"><allprop/></propfind>',
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
        b'<propfind xmlns="DAV:"><prop><x>&lol2;</x></prop></propfind>',
    ],
)
def test_bad_bodies_are_400(body):
    """Malformed, wrong-root, ambiguous and DOCTYPE/ENTITY bodies are refused with 400."""
    with pytest.raises(RequestError) as info:
        parse_propfind(body)
    assert info.value.http_status == 400


def test_oversized_body_is_413():
    """Bodies over 64 KiB are refused before parsing."""
    body = b'<propfind xmlns="DAV:"><allprop/></propfind>' + b" " * MAX_BODY_BYTES
    with pytest.raises(RequestError) as info:
        parse_propfind(body)
    assert info.value.http_status == 413


def props(response: ET.Element, status: str) -> dict[str, ET.Element]:
    for propstat in response.findall(f"{D}propstat"):
        if propstat.findtext(f"{D}status") == f"HTTP/1.1 {status}":
            return {child.tag: child for child in propstat.find(f"{D}prop")}
    return {}


def test_allprop_multistatus_for_file_and_dir():
    """allprop lists every live property of a file, and the collection marker for a dir."""
    root = ET.fromstring(multistatus([FILE, DIR], PropfindRequest("allprop")))
    file_response, dir_response = root.findall(f"{D}response")
    assert file_response.findtext(f"{D}href") == "/a%20b.mkv"
    found = props(file_response, "200 OK")
    assert found[f"{D}getcontentlength"].text == "10"
    assert found[f"{D}getcontenttype"].text == "video/x-matroska"
    assert found[f"{D}getetag"].text == '"a-0"'
    assert found[f"{D}getlastmodified"].text == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert found[f"{D}creationdate"].text == "1970-01-01T00:00:00Z"
    assert found[f"{D}displayname"].text == "a b.mkv"
    assert list(found[f"{D}resourcetype"]) == []
    dir_found = props(dir_response, "200 OK")
    assert dir_found[f"{D}resourcetype"].find(f"{D}collection") is not None
    assert f"{D}getcontentlength" not in dir_found
    assert dir_found[f"{D}getlastmodified"].text == "Fri, 02 Jan 1970 00:00:00 GMT"


def test_prop_request_splits_found_and_missing():
    """Known properties come in a 200 propstat, unknown ones (any namespace) in a 404 one."""
    root = ET.fromstring(multistatus([DIR], parse_propfind(PROP_BODY)))
    (response,) = root.findall(f"{D}response")
    assert set(props(response, "200 OK")) == {f"{D}resourcetype"}
    assert set(props(response, "404 Not Found")) == {
        f"{D}getcontentlength",
        "{urn:z}color",
        "bare",
    }


def test_propname_lists_names_without_values():
    """propname answers every property name with empty elements."""
    root = ET.fromstring(multistatus([FILE], PropfindRequest("propname")))
    found = props(root.find(f"{D}response"), "200 OK")
    assert len(found) == 7
    assert all(element.text is None and len(element) == 0 for element in found.values())


def test_names_are_escaped():
    """Display names with markup characters stay text."""
    item = DavResource("/%3C", "<&>", False, 0.0, size=1, content_type="a/b", etag='"1-0"')
    root = ET.fromstring(multistatus([item], PropfindRequest("allprop")))
    assert props(root.find(f"{D}response"), "200 OK")[f"{D}displayname"].text == "<&>"


def test_finite_depth_error_body():
    """The 403 body names the propfind-finite-depth precondition."""
    root = ET.fromstring(finite_depth_error())
    assert root.tag == f"{D}error"
    assert root.find(f"{D}propfind-finite-depth") is not None
