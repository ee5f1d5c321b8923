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
from pathlib import Path

from assemblage.errors import SourceError
from assemblage.recipes.models import SourceSpec

# each kind registers itself when its module is imported (assemblage.sources.kinds); ArchiveKind with safe_extract below
from assemblage.sources import debian as _debian  # noqa: F401 - registers DebianKind
from assemblage.sources import git as _git  # noqa: F401 - registers GitKind
from assemblage.sources import github as _github  # noqa: F401 - registers GithubKind
from assemblage.sources import path as _path  # noqa: F401 - registers PathKind
from assemblage.sources._util import safe_name
from assemblage.sources.archive import safe_extract
from assemblage.sources.fetched import FetchedSource
from assemblage.sources.kinds import FetchJob, SourceKind, kind_of, kinds
from assemblage.sources.policy import FetchPolicy
from assemblage.urls import redact

__all__ = [
    "FetchPolicy",
    "FetchedSource",
    "SourceKind",
    "kind_of",
    "kinds",
    "fetch_source",
    "pin_spec",
    "safe_extract",
    "source_label",
    "source_name",
    "source_pin",
    "tree_pin",
]


def pin_spec(spec: SourceSpec, fetched: FetchedSource) -> SourceSpec:
    """The spec with what pins it filled in (git commit, archive sha256, Debian version).

    Fetching the pinned spec elsewhere (another worker, a rebuild years later)
    gives the same tree, or fails loudly.
    """
    return kind_of(spec).pin(spec, fetched)


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
    return kind_of(spec).label(spec)


def source_name(spec) -> str:
    """A short name, ``[A-Za-z0-9._-]+``: ``spec.name`` if given, else derived (no I/O)."""
    if getattr(spec, "name", None):
        return safe_name(spec.name)
    return kind_of(spec).short_name(spec)


def fetch_source(
    spec, *, base: Path, cache: Path, timeout: float | None = None, policy: FetchPolicy | None = None
) -> FetchedSource:
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
    kind = kind_of(spec)
    label = kind.label(spec)
    local = kind.local(spec)
    try:
        local_path = policy.local(local[1], base) if local else None
    except ValueError as exc:
        raise SourceError(f"{label}: {exc}") from None
    job = FetchJob(
        label=label, name=source_name(spec), cache=cache, timeout=timeout, policy=policy, local_path=local_path
    )
    return kind.fetch(spec, job)
