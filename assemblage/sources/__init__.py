"""Fetching and pinning the sources a recipe names: path, git, archive, debian, github.

Each source is fetched once into a cache folder and becomes a *template* tree
that every configuration's build copies and nobody modifies. It is read-only by
contract, not by file mode: copies inherit modes, and builds must be able to
write into their copy. The result, :class:`FetchedSource`, records what pins the
source: the git commit, the archive's sha256, the Debian version.

    fetch_source(spec, base=recipe_dir, cache=out_dir / "sources") -> FetchedSource
    safe_extract(archive, dest) -> root folder           # refuses anything that escapes ``dest``
    FetchPolicy.for_service(settings)                    # what the service's fetches may touch

Errors: :class:`~assemblage.errors.SourceError`, and its subclass
:class:`~assemblage.errors.UnsafeArchiveError` for hostile archives.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from assemblage.errors import SourceError
from assemblage.recipes.models import (
    ArchiveSource,
    DebianSource,
    GithubSource,
    GitSource,
    PathSource,
    SourceSpec,
)
from assemblage.sources._util import safe_name
from assemblage.sources.archive import archive_name, fetch_archive, safe_extract
from assemblage.sources.debian import fetch_debian
from assemblage.sources.git import fetch_git, git_name
from assemblage.sources.licenses import detect_license
from assemblage.sources.policy import FetchPolicy, local_reference
from assemblage.urls import redact

__all__ = [
    "FetchPolicy",
    "FetchedSource",
    "fetch_source",
    "pin_spec",
    "safe_extract",
    "source_label",
    "source_name",
    "source_pin",
    "tree_pin",
]


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


def pin_spec(spec: SourceSpec, fetched: FetchedSource) -> SourceSpec:
    """The spec with what pins it filled in (git commit, archive sha256, Debian version).

    Fetching the pinned spec elsewhere (another worker, a rebuild years later)
    gives the same tree, or fails loudly.
    """
    if isinstance(spec, GitSource) and fetched.commit:
        return spec.model_copy(update={"ref": fetched.commit})
    if isinstance(spec, ArchiveSource) and fetched.sha256:
        return spec.model_copy(update={"sha256": fetched.sha256})
    if isinstance(spec, DebianSource) and fetched.version:
        return spec.model_copy(update={"version": fetched.version})
    return spec


def tree_pin(path: Path, version: str | None = None) -> str:
    """A content hash of a folder (names, modes, bytes), so editing a local source rebuilds it."""
    from assemblage.storage.base import sha256_file

    h = hashlib.sha256((version or "").encode())
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).as_posix()
        if p.is_symlink():
            h.update(f"L {rel} {p.readlink()}\n".encode())
        elif p.is_file():
            h.update(f"F {rel} {p.stat().st_mode & 0o111}\n".encode())
            h.update(sha256_file(p).encode())
    return "tree:" + h.hexdigest()


def source_pin(fetched: FetchedSource) -> str:
    """What pins a fetched source: the git commit, the archive's sha256, else the tree's hash."""
    return fetched.commit or fetched.sha256 or tree_pin(fetched.path, fetched.version)


def source_label(spec) -> str:
    """The source as the recipe names it (no I/O), credentials in URLs redacted: it is shown everywhere."""
    if isinstance(spec, PathSource):
        return spec.path
    if isinstance(spec, GitSource):
        return redact(spec.git)
    if isinstance(spec, ArchiveSource):
        return redact(spec.archive)
    if isinstance(spec, DebianSource) and not isinstance(spec.debian, str):  # [h8-debian-deps] a selector
        return "debian:" + spec.debian.model_dump_json(exclude_defaults=True)
    if isinstance(spec, DebianSource):
        label = f"debian:{spec.debian}"
        if spec.version:
            label += f"={spec.version}"
        elif spec.suite:
            label += f"/{spec.suite}"
        return label
    if isinstance(spec, GithubSource):
        return f"github:{spec.github.query}"
    raise SourceError(f"not a source: {spec!r}")


def source_name(spec) -> str:
    """A short name, ``[A-Za-z0-9._-]+``: ``spec.name`` if given, else derived (no I/O)."""
    if getattr(spec, "name", None):
        return safe_name(spec.name)
    if isinstance(spec, PathSource):
        return safe_name(Path(spec.path.rstrip("/\\") or ".").name or Path(spec.path).resolve().name, "path")
    if isinstance(spec, GitSource):
        return safe_name(git_name(spec.git), "git")
    if isinstance(spec, ArchiveSource):
        return archive_name(spec.archive)
    if isinstance(spec, DebianSource):
        return safe_name(spec.debian, "debian") if isinstance(spec.debian, str) else "debian-selector"
    if isinstance(spec, GithubSource):
        return "github"
    raise SourceError(f"not a source: {spec!r}")


def _subdir(root: Path, spec, label: str) -> Path:
    if not spec.subdir:
        return root
    path = (root / spec.subdir).resolve()
    real_root = root.resolve()
    if path != real_root and real_root not in path.parents:
        raise SourceError(f"{label}: subdir {spec.subdir!r} leads outside the source")
    if not path.is_dir():
        raise SourceError(f"{label}: subdir {spec.subdir!r} is not a folder of the source")
    return path


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _mtime(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    except OSError:
        return None


def fetch_source(spec, *, base: Path, cache: Path, timeout: float | None = None,
                 policy: FetchPolicy | None = None) -> FetchedSource:
    """Fetch (or reuse from ``cache``) the source ``spec`` names and pin it.

    ``base`` is the folder relative paths start from (then the working
    directory). ``path`` sources are used in place; all others are checked out
    under ``cache`` once and reused by later calls with the same spec (same
    URL and ref, same archive sha256 or URL, same Debian package, suite and
    version), without the network. ``timeout`` bounds each step (every
    subprocess, every download), in seconds (default: the policy's).

    ``policy`` (default :meth:`FetchPolicy.unrestricted`) decides what may be
    read: with a source root, local paths and ``file://`` URLs resolve against
    it alone and must stay inside it; with ``deny_private``, network fetches go
    to public addresses only (see :mod:`assemblage.sources.policy`).

    Raises :class:`SourceError` (:class:`UnsafeArchiveError` for a hostile archive,
    :class:`FetchRefusedError` for what the policy refuses); its message never
    carries the credentials of a URL.
    """
    policy = policy or FetchPolicy.unrestricted()
    timeout = policy.timeout if timeout is None else timeout
    try:
        return _fetch(spec, base=Path(base), cache=Path(cache).absolute(), timeout=timeout, policy=policy)
    except SourceError as exc:
        text = str(exc)
        if redact(text) != text:
            raise type(exc)(redact(text)) from None
        raise


def _fetch(spec, *, base: Path, cache: Path, timeout: float, policy: FetchPolicy) -> FetchedSource:
    label = source_label(spec)
    name = source_name(spec)
    local = local_reference(spec)
    try:
        local_path = policy.local(local[1], base) if local else None
    except ValueError as exc:
        raise SourceError(f"{label}: {exc}") from None
    if isinstance(spec, PathSource):
        assert local_path is not None
        if not local_path.is_dir():
            raise SourceError(f"{label}: no such folder ({local_path})")
        return FetchedSource(kind="path", label=label, name=name, path=_subdir(local_path, spec, label),
                             license=detect_license(local_path), last_update=_mtime(local_path))
    if isinstance(spec, GitSource):
        if local_path is not None:
            target, url = str(local_path), local_path.as_uri()
        else:
            target, url = spec.git, redact(spec.git)
        rec = fetch_git(target, spec.ref, label=label, name=name, cache=cache, timeout=timeout,
                        submodules=spec.submodules, policy=policy)
        root = cache / "git" / rec["path"]
        return FetchedSource(kind="git", label=label, name=name, path=_subdir(root, spec, label),
                             commit=rec["commit"], version=rec.get("version"), license=detect_license(root),
                             url=url, last_update=_date(rec.get("last_update")))
    if isinstance(spec, ArchiveSource):
        rec = fetch_archive(spec.archive, local=local_path, expected_sha256=spec.sha256, name=name, cache=cache,
                            timeout=timeout, policy=policy)
        root = cache / "archive" / rec["path"]
        return FetchedSource(kind="archive", label=label, name=name, path=_subdir(root, spec, label),
                             sha256=rec["sha256"], license=detect_license(root),
                             url=redact(spec.archive) if local_path is None else None,
                             last_update=_newest_mtime(root))
    if isinstance(spec, DebianSource) and not isinstance(spec.debian, str):
        raise SourceError(f"{label}: a debian selector is expanded into packages first (expand_debian)")
    if isinstance(spec, DebianSource):
        rec = fetch_debian(spec.debian, suite=spec.suite, version=spec.version, cache=cache, timeout=timeout)
        root = cache / "debian" / rec["path"]
        return FetchedSource(kind="debian", label=label, name=name, path=_subdir(root, spec, label),
                             version=rec["version"], license=rec.get("license") or detect_license(root),
                             url=rec.get("url"), last_update=_date(rec.get("last_update")))
    if isinstance(spec, GithubSource):
        raise SourceError(f"{label}: a github search becomes git sources through a crawl (assemblage.pipeline.crawl)")
    raise SourceError(f"not a source: {spec!r}")


def _newest_mtime(root: Path, limit: int = 20_000) -> datetime | None:
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
