"""The select stage: which candidates the release exposes, and under which names (no I/O).

Extensions outside `import.allowed_file_extensions` are left out, as are sample
clips; a single media file may take the release's name
(`import.rename_to_nzb_name`); colliding names are numbered deterministically.
Every other file stays: a season pack keeps every episode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from altmount.errors import ImportFailed
from altmount.importer.layout import MAX_NAME_BYTES, dedupe_names, is_allowed, safe_name
from altmount.importer.pipeline import Candidate, ImportJob

__all__ = ["SelectStage", "is_sample", "SAMPLE_MAX_BYTES", "SAMPLE_MAX_SHARE"]

#: A clip called "sample" this small is a preview, not the feature.
SAMPLE_MAX_BYTES = 150 * 1000 * 1000
#: ... or this small next to the biggest file of the release.
SAMPLE_MAX_SHARE = 0.05


def is_sample(name: str, size: int, largest: int) -> bool:
    """True for a preview clip: "sample" in its name and small (never the biggest file)."""
    if "sample" not in name.lower() or size >= largest:
        return False
    return size < SAMPLE_MAX_SHARE * largest or size < SAMPLE_MAX_BYTES


class SelectStage:
    """Filters and names the files a release exposes."""

    name = "select"

    def __init__(self, allowed_extensions: Sequence[str], rename_to_nzb_name: bool) -> None:
        self._allowed = allowed_extensions
        self._rename = rename_to_nzb_name

    def run(self, job: ImportJob) -> ImportJob:
        """The job with only the candidates to expose, and what was left out."""
        allowed = [c for c in job.candidates if is_allowed(c.name, self._allowed)]
        skipped = [c.name for c in job.candidates if not is_allowed(c.name, self._allowed)]
        if not allowed:
            listed = ", ".join(sorted(skipped)[:10]) or "none"
            raise ImportFailed(
                f"no streamable media file in the release (files: {listed}); "
                "allowed extensions are import.allowed_file_extensions"
            )
        largest = max(c.size for c in allowed)
        kept = [c for c in allowed if not is_sample(c.name, c.size, largest)]
        skipped += [c.name for c in allowed if is_sample(c.name, c.size, largest)]
        if self._rename and len(kept) == 1 and job.release:
            kept = [_renamed(kept[0], job.release)]
        names = dedupe_names([c.name for c in kept])
        kept = [replace(c, name=name) for c, name in zip(kept, names, strict=True)]
        return replace(job, candidates=tuple(kept), skipped=(*job.skipped, *skipped))


def _renamed(candidate: Candidate, release: str) -> Candidate:
    stem, dot, extension = candidate.name.rpartition(".")
    suffix = dot + extension if stem and dot else ""
    name = safe_name(release, candidate.name, MAX_NAME_BYTES - len(suffix.encode())) + suffix
    return replace(candidate, name=name)
