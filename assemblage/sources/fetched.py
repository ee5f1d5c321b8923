"""What a fetch gives: :class:`FetchedSource`, and the small helpers every kind's fetch shares."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from assemblage.errors import SourceError

__all__ = ["FetchedSource", "newest_mtime", "parse_date", "path_mtime", "subdir"]


@dataclass(frozen=True, kw_only=True)
class FetchedSource:
    """A source on disk, ready to build, with what pins it."""

    kind: str  # "path" | "git" | "archive" | "debian" | "github"
    label: str  # the source as the recipe names it: "debian:zlib", the git URL, the path, the archive
    name: str  # short name, [A-Za-z0-9._-]+
    path: Path  # the folder to build (spec.subdir applied)
    commit: str | None = None  # git SHA
    version: str | None = None  # Debian version, or the git tag if the commit has one
    sha256: str | None = None  # archive sha256
    license: str | None = None
    url: str | None = None  # homepage / repository URL
    last_update: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (for task payloads and logs)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["path"] = str(self.path)
        out["last_update"] = self.last_update.isoformat() if self.last_update else None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FetchedSource:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["path"] = Path(values["path"])
        if values.get("last_update"):
            values["last_update"] = datetime.fromisoformat(values["last_update"])
        return cls(**values)


def subdir(root: Path, spec, label: str) -> Path:
    if not spec.subdir:
        return root
    path = (root / spec.subdir).resolve()
    real_root = root.resolve()
    if path != real_root and real_root not in path.parents:
        raise SourceError(f"{label}: subdir {spec.subdir!r} leads outside the source")
    if not path.is_dir():
        raise SourceError(f"{label}: subdir {spec.subdir!r} is not a folder of the source")
    return path


def parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def path_mtime(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    except OSError:
        return None


def newest_mtime(root: Path, limit: int = 20_000) -> datetime | None:
    """The newest file time in an unpacked archive (its release date, near enough)."""
    newest = 0.0
    for n, (folder, _dirs, files) in enumerate(os.walk(root)):
        if n > limit:
            break
        for f in files:
            try:
                newest = max(newest, os.lstat(os.path.join(folder, f)).st_mtime)
            except OSError:
                continue
    return datetime.fromtimestamp(newest, tz=UTC) if newest else None
