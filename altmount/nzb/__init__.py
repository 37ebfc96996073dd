"""NZB parsing: the `NZB` model, the streaming parser and subject-line names (no I/O)."""

from altmount.nzb.model import NZB, NZBFile, NZBSegment
from altmount.nzb.parser import MAX_NZB_BYTES, NZBParser, parse_nzb
from altmount.nzb.subject import filename_from_subject

__all__ = [
    "NZB",
    "NZBFile",
    "NZBSegment",
    "NZBParser",
    "parse_nzb",
    "filename_from_subject",
    "MAX_NZB_BYTES",
]
