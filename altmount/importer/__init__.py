"""Turning NZBs into metadata: a pipeline of stages, pure planning, and the importer."""

from altmount.importer.direct import DirectImporter, default_stages
from altmount.importer.pipeline import ImportJob, ImportResult, Stage, run_stages
from altmount.importer.probe import part_header

__all__ = [
    "DirectImporter",
    "ImportJob",
    "ImportResult",
    "Stage",
    "default_stages",
    "part_header",
    "run_stages",
]
