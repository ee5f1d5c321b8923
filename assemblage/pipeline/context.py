"""What every step of the pipeline is given: :class:`Context` (its own module: the steps and the
transitions of :mod:`assemblage.pipeline.failures` both take it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from assemblage.settings import MAX_BINARIES_PER_BUILD
from assemblage.sources.policy import FetchPolicy
from assemblage.storage.base import ObjectStore

__all__ = ["Context"]


@dataclass(frozen=True, kw_only=True)
class Context:
    """What every step needs: where metadata and objects go, and this worker's folders."""

    sessions: sessionmaker[Session]
    store: ObjectStore
    cache_dir: Path  # fetched sources (one checkout per source, reused by its builds)
    work_root: Path | None = None  # scratch folders of builds (must be reachable by the build user)
    worker: str = "embedded"
    # where relative ``path:`` sources resolve on this machine; None: where the run was
    # created (embedded). Service workers use their own ASSEMBLAGE_SOURCE_ROOT, since the
    # API's folder need not exist on a worker's machine or in its container.
    source_root: Path | None = None
    # what fetches may touch: unrestricted in the embedded mode (the user's own recipe); the service's
    # workers pass FetchPolicy.for_service (source root, public addresses only)
    fetch_policy: FetchPolicy = field(default_factory=FetchPolicy.unrestricted)
    max_builds: int | None = None  # sources x configurations of one run (the service's cap; None: no cap)
    max_binaries: int = MAX_BINARIES_PER_BUILD  # binaries one build may leave (the setting max_binaries_per_build)
    analysis_timeout: float = 300.0
    analysis_memory: int = 4 * 1024**3
