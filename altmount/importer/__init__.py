"""Turning NZBs into metadata: planning (pure) and the provider-facing importer."""

from altmount.importer.direct import DirectImporter, ImportResult, part_header

__all__ = ["DirectImporter", "ImportResult", "part_header"]
