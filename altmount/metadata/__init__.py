"""Metadata of the virtual tree: file records, their segment tables, the LMDB store."""

from altmount.metadata.records import (
    RECORD_VERSION,
    Cipher,
    FileRecord,
    SegmentTable,
    decode_record,
    encode_record,
)
from altmount.metadata.store import DirEntry, MetadataStore

__all__ = [
    "RECORD_VERSION",
    "Cipher",
    "FileRecord",
    "SegmentTable",
    "decode_record",
    "encode_record",
    "DirEntry",
    "MetadataStore",
]
