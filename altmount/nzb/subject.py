"""Extract a file name from a Usenet subject line (no I/O).

Posters put the name in many places: `"name.mkv" yEnc (1/64)` (nyuu, ngPost,
most tools), `[01/10] - "name.part01.rar" yEnc (1/100)`, bare `name.mkv (1/64)`,
`Re: name.mkv yEnc`, or in brackets with an empty quoted part
(`[PRiVATE]-[WtFnZb]-[name.mkv]-[1/5] - "" yEnc 1 (1/1)`). The strategy follows
SABnzbd's `name_extractor`: a quoted name wins, then a bracketed name that has
an extension, then the last filename-looking run of the subject. The result is
always reduced to a safe base name, because it becomes a path component in the
virtual tree.
"""

from __future__ import annotations

import re

__all__ = ["filename_from_subject", "safe_basename", "MAX_NAME_BYTES"]

#: Longest name most file systems (and rclone/Plex on them) accept, in bytes.
MAX_NAME_BYTES = 255

_QUOTED = re.compile(r'"([^"]*)"')
# A bracketed token that ends in an extension, e.g. WtFnZb's `[name.mkv]`.
_BRACKETED = re.compile(r"\[([^\[\]]*\.[A-Za-z0-9]{1,6})\]")
# Part counters and the yEnc marker carry no name: `(1/64)`, `[01/10]`, `yEnc 1`.
_COUNTER = re.compile(r"[\[(]\s*\d+\s*/\s*\d+\s*[\])]")
_YENC = re.compile(r"\byEnc\b.*$", re.IGNORECASE)
_REPLY = re.compile(r"^\s*(?:re|fwd?)\s*:\s*", re.IGNORECASE)
# Runs of characters a file name may hold (spaces too: "My Movie 2020.mkv"),
# and an extension that ends a name (then a space or the end of the run).
# Two linear scans instead of one lazy regex, which is quadratic on long subjects.
_NAME_RUN = re.compile(r"[\w\-+()'&!,.\[\] ]+")
_EXTENSION_END = re.compile(r"\.[A-Za-z0-9]{1,6}(?= |$)")
# Control characters, and lone surrogates that UTF-8 cannot encode.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def filename_from_subject(subject: str) -> str:
    """Return the file name announced in `subject`, or "" if none is plausible.

    The result is a safe base name (see `safe_basename`).
    """
    for quoted in reversed(_QUOTED.findall(subject)):
        name = safe_basename(quoted)
        if name:
            return name
    for bracketed in reversed(_BRACKETED.findall(subject)):
        name = safe_basename(bracketed)
        if name:
            return name
    rest = _COUNTER.sub(" ", _YENC.sub("", _REPLY.sub("", subject)))
    for run in reversed(_NAME_RUN.findall(rest)):
        ends = [match.end() for match in _EXTENSION_END.finditer(run)]
        name = safe_basename(run[: ends[-1]].strip(" -")) if ends else ""
        if name:
            return name
    return ""


def safe_basename(name: str) -> str:
    """Reduce `name` to one harmless path component, or "" if nothing is left.

    Directories (`/` and `\\`) are dropped, control characters and NUL removed,
    `.` and `..` refused, lone surrogates dropped, surrounding spaces stripped, and the result capped at
    `MAX_NAME_BYTES` of UTF-8 keeping the extension when it is short.
    """
    name = _UNSAFE.sub("", name)
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if name in ("", ".", ".."):
        return ""
    return _cap_utf8(name, MAX_NAME_BYTES)


def _cap_utf8(name: str, limit: int) -> str:
    """Shorten `name` to at most `limit` UTF-8 bytes on a character boundary."""
    encoded = name.encode("utf-8")
    if len(encoded) <= limit:
        return name
    stem, dot, ext = name.rpartition(".")
    suffix = (dot + ext).encode("utf-8") if stem and len(ext) <= 16 else b""
    head = encoded[: limit - len(suffix)].decode("utf-8", "ignore")
    return head + suffix.decode("utf-8")
