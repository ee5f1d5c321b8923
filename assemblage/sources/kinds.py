"""Source kinds: one class per kind, registered once, instead of ``isinstance`` chains.

A kind ties a recipe model (``recipes.models``: ``PathSource``, ``GitSource``...) to
what the pipeline does with it: its label and short name (no I/O), what it reads on
this machine and over the network (for the fetch policy and the API's checks), how
it is fetched into a :class:`~assemblage.sources.FetchedSource`, how the fetch pins
it (so that another worker or a rebuild fetches the same tree), and whether it is
not fetched at all but *expands* into other sources (a GitHub search through a
crawl, a Debian selector into packages).

    kind_of(spec).label(spec)        # "debian:zlib"
    kind_of(spec).fetch(spec, job)   # FetchedSource
    kind_of(spec).pin(spec, fetched) # the spec with commit / sha256 / version filled in

Each kind lives beside its fetcher (``sources/path.py``, ``git.py``, ``archive.py``,
``debian.py``, ``github.py``) and registers itself with :func:`register`; a new kind
is a model in ``recipes/models.py`` and one class here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from assemblage.errors import SourceError

if TYPE_CHECKING:
    from assemblage.sources import FetchedSource
    from assemblage.sources.policy import FetchPolicy

__all__ = ["FetchJob", "SourceKind", "kind_of", "kinds", "register"]

Expansion = Literal["crawl", "debian-selection"]


@dataclass(frozen=True, kw_only=True)
class FetchJob:
    """What one fetch is given: where things go, how long a step may take, what may be read."""

    label: str
    name: str
    cache: Path  # absolute
    timeout: float
    policy: FetchPolicy
    local_path: Path | None  # what the policy resolved :meth:`SourceKind.local` to, None when remote


class SourceKind:
    """How one kind of source is named, checked, fetched and pinned. Subclasses set ``kind`` and ``model``."""

    kind: ClassVar[str]
    model: ClassVar[type]
    url_field: ClassVar[str | None] = None  # the spec's field holding a URL or a local path (git, archive)

    def label(self, spec: Any) -> str:
        """The source as the recipe names it, credentials redacted (shown everywhere)."""
        raise NotImplementedError

    def short_name(self, spec: Any) -> str:
        """A name derived from the spec, ``[A-Za-z0-9._-]+`` (``spec.name`` wins, see ``source_name``)."""
        raise NotImplementedError

    def local(self, spec: Any) -> tuple[str, str] | None:
        """(field, path as written) when the source names something on this machine."""
        return None

    def remote(self, spec: Any) -> tuple[str, str] | None:
        """(field, URL) when the source is fetched over the network (the API checks it before accepting):
        the ``url_field`` of a spec that does not name something on this machine."""
        if self.url_field is None or self.local(spec) is not None:
            return None
        return self.url_field, getattr(spec, self.url_field)

    def expands(self, spec: Any) -> Expansion | None:
        """Not fetched itself: ``crawl`` (a search becomes git sources) or ``debian-selection`` (packages)."""
        return None

    def at_most(self, spec: Any) -> int:
        """How many sources the entry may become (a search or a selector: its ``limit``), for the build cap."""
        return 1

    def fetch(self, spec: Any, job: FetchJob) -> FetchedSource:
        raise SourceError(f"{job.label}: this kind of source is not fetched")

    def pin(self, spec: Any, fetched: FetchedSource) -> Any:
        """The spec with what pins it filled in; the spec itself when nothing does."""
        return spec


_KINDS: dict[type, SourceKind] = {}


def register(cls: type[SourceKind]) -> type[SourceKind]:
    """Class decorator: one instance per kind, found by the type of the recipe's source model."""
    if cls.model in _KINDS:
        raise RuntimeError(f"source model {cls.model.__name__} registered twice")
    _KINDS[cls.model] = cls()
    return cls


def kind_of(spec: Any) -> SourceKind:
    """The kind of a source spec; SourceError when it is none."""
    try:
        return _KINDS[type(spec)]
    except KeyError:
        raise SourceError(f"not a source: {spec!r}") from None


def kinds() -> dict[str, SourceKind]:
    """Every registered kind by its name."""
    return {k.kind: k for k in _KINDS.values()}
