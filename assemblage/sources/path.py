"""``path:`` sources: a folder on this machine, built in place (its tree hash pins it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from assemblage.errors import SourceError
from assemblage.recipes.models import PathSource
from assemblage.sources._util import safe_name
from assemblage.sources.fetched import FetchedSource, path_mtime, subdir
from assemblage.sources.kinds import FetchJob, SourceKind, register
from assemblage.sources.licenses import detect_license

__all__ = ["PathKind"]


@register
class PathKind(SourceKind):
    kind = "path"
    model = PathSource

    def label(self, spec: Any) -> str:
        return spec.path

    def short_name(self, spec: Any) -> str:
        return safe_name(Path(spec.path.rstrip("/\\") or ".").name or Path(spec.path).resolve().name, "path")

    def local(self, spec: Any) -> tuple[str, str] | None:
        return "path", spec.path

    def fetch(self, spec: Any, job: FetchJob) -> FetchedSource:
        folder = job.local_path
        assert folder is not None  # the policy resolved local() before
        if not folder.is_dir():
            raise SourceError(f"{job.label}: no such folder ({folder})")
        return FetchedSource(
            kind="path",
            label=job.label,
            name=job.name,
            path=subdir(folder, spec, job.label),
            license=detect_license(folder),
            last_update=path_mtime(folder),
        )
