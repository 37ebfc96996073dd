"""The one exception hierarchy of altmount.

Every error a user can meet is an `AltmountError` whose message names the thing
that went wrong and, where there is one, the fix. Both `_core` implementations,
the parsers and the Twisted shells raise only these classes.
"""

from __future__ import annotations

__all__ = [
    "AltmountError",
    "ArrError",
    "ArrRequestError",
    "ArrFileNotFound",
    "ConfigError",
    "YencError",
    "DecodePoolError",
    "CrcMismatch",
    "NNTPError",
    "NNTPProtocolError",
    "NNTPTimeout",
    "NNTPConnectionLost",
    "NNTPServiceUnavailable",
    "NNTPAuthExpired",
    "ArticleNotFound",
    "ProviderAuthError",
    "ProviderTLSError",
    "ProviderUnavailable",
    "NoProvidersAvailable",
    "NZBParseError",
    "MetadataError",
    "PathError",
    "RangeNotSatisfiable",
    "ImportFailed",
    "StreamError",
    "RequestError",
    "QueueError",
    "QueueItemNotFound",
    "Par2Error",
    "ArchiveError",
    "CacheEntryDamaged",
    "DatabaseUnavailable",
    "LinkError",
]


class AltmountError(Exception):
    """Base of every error altmount raises on purpose."""

    #: HTTP status the web layer answers with when this error reaches a request.
    http_status: int = 500


class ConfigError(AltmountError):
    """The configuration file is missing, unreadable or invalid.

    `problems` holds one line per problem, each naming the key path.
    """

    def __init__(self, problems: list[str] | str) -> None:
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class YencError(AltmountError):
    """An article body is not valid yEnc (missing =ybegin, bad header, truncated)."""

    http_status = 502


class CrcMismatch(YencError):
    """The decoded bytes do not match the CRC32 announced in =yend.

    `decoded` carries the salvageable bytes (SABnzbd's BadData idea).
    """

    def __init__(self, message: str, decoded: bytes = b"") -> None:
        super().__init__(message)
        self.decoded = decoded


class NNTPError(AltmountError):
    """Something went wrong talking to an NNTP provider."""

    http_status = 502


class NNTPProtocolError(NNTPError):
    """The server sent something that is not RFC 3977 (garbage status line, overlong line)."""


class NNTPTimeout(NNTPError):
    """A request got no answer within the request timeout."""

    http_status = 504


class NNTPConnectionLost(NNTPError):
    """The connection closed while a request was in flight."""


class NNTPServiceUnavailable(NNTPConnectionLost):
    """The server answered 400 or 502 during a session (overloaded, too many
    connections, access refused for now); the connection is dropped and the pool
    reconnects with backoff."""


class NNTPAuthExpired(NNTPConnectionLost):
    """The server asked for AUTHINFO again (480) during a logged-in session; the
    connection is dropped and the request retried once on a fresh, logged-in one."""


class ArticleNotFound(NNTPError):
    """Every provider answered 430 (no such article) for this message-id."""

    http_status = 502

    def __init__(self, message_id: str, message: str | None = None) -> None:
        self.message_id = message_id
        super().__init__(message or f"article <{message_id}> not found on any provider")


class ProviderAuthError(NNTPError):
    """A provider refused our credentials or permissions (481/482/502 at login)."""


class ProviderTLSError(ProviderAuthError):
    """The provider's TLS certificate failed verification (unknown CA, wrong host name,
    expired): the server did not authenticate itself, and retrying will not change that."""


class ProviderUnavailable(NNTPError):
    """A provider cannot be reached or has been disabled."""


class NoProvidersAvailable(NNTPError):
    """No enabled provider is left to ask."""

    http_status = 503


class NZBParseError(AltmountError):
    """An NZB file is malformed, hostile or empty; the message names line/column."""

    http_status = 400


class MetadataError(AltmountError):
    """The metadata store cannot be opened, read or written, or a record is corrupt."""


class PathError(AltmountError):
    """A request path is malformed or would escape the virtual tree."""

    http_status = 400


class RangeNotSatisfiable(AltmountError):
    """An HTTP Range header asks for bytes outside the file."""

    http_status = 416


class ImportFailed(AltmountError):
    """An NZB could not be imported; the message is shown to the user as-is."""


class DecodePoolError(AltmountError):
    """The process decode pool could not decode an article: its worker exited or the
    pool was stopped. The segment can be fetched again; a worker that keeps exiting
    points at a broken `_core` build (set `engine.pool: thread` meanwhile)."""

    http_status = 503


class StreamError(AltmountError):
    """A stream had to stop (missing article, CRC mismatch after retry)."""

    http_status = 502


class RequestError(AltmountError):
    """An HTTP request cannot be served as sent (bad XML body, bad header, failed precondition).

    `http_status` is the 4xx answer that says why (400, 403, 409, 412, 413, ...).
    """

    def __init__(self, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.http_status = http_status


class QueueError(AltmountError):
    """An invalid queue operation: an illegal state change or a bad request about an item."""

    http_status = 409


class QueueItemNotFound(QueueError):
    """No queue item has that id."""

    http_status = 404


class Par2Error(AltmountError):
    """A PAR2 file is malformed (bad magic, packet length or checksum)."""


class ArchiveError(AltmountError):
    """A RAR/7z archive inside a release is malformed, truncated, encrypted or compressed.

    The message names the archive (volume) and the problem; the importer turns it
    into the import's failure reason or a warning about the members it leaves out.
    """


class CacheEntryDamaged(AltmountError):
    """A segment cache file fails its check (header, size, message-id or CRC32): it is
    dropped and the segment fetched again, never served."""


class DatabaseUnavailable(AltmountError):
    """The shared database (`database.type: postgres`) cannot be reached, or failed a
    statement; the message names `database.dsn` (without its password) and the cause."""

    http_status = 503


class LinkError(AltmountError):
    """An import strategy's links (SYMLINK symlinks, STRM files or tokens) could not be
    written, removed or read; the message names the path and the OS error."""


class ArrError(AltmountError):
    """A repair through a Sonarr/Radarr instance failed; the message names the instance."""

    http_status = 502


class ArrRequestError(ArrError):
    """An arr's v3 API call failed: unreachable, timed out, a non-2xx status (the status
    and the call are named) or an answer not shaped as its OpenAPI document says."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        #: Worth asking again (connection refused, timeout, 5xx, 429).
        self.transient = transient


class ArrFileNotFound(ArrError):
    """No series/movie of the instance owns the file's path (maybe another instance does,
    or the arr's path mapping differs: check arrs.mount_path)."""

    http_status = 404
