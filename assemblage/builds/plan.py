"""A build plan: the argument lists a build system needs, as data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from assemblage.toolchains.base import CompilerSet

if TYPE_CHECKING:  # for the annotation only: systems.py imports this module
    from assemblage.builds.systems import BuildTools

__all__ = ["LogSink", "Planner", "Step"]


@dataclass(frozen=True, kw_only=True)
class Step:
    """One command of a build. ``argv`` is an argument list, never a shell string.

    ``cwd`` is relative to the build's source root; ``env`` is added to the
    build's environment; ``phase`` classifies failures (a failing
    ``configure`` step is ``configure_failed``).
    """

    name: str
    argv: tuple[str, ...]
    cwd: str = "."
    env: dict[str, str] = field(default_factory=dict)
    phase: str = "build"  # "configure" | "build" | "install"


class LogSink(Protocol):
    """Where a build writes its log: an open text file, or the capped log of a build (``runner.CappedLog``)."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


class Planner(Protocol):
    """A build system: recognises a tree and plans its build for one compiler set."""

    name: str

    def detect(self, root: Path) -> bool: ...

    def plan(self, root: Path, compilers: CompilerSet, tools: BuildTools, *, jobs: int = 1) -> list[Step]:
        """May write files in ``root`` (a private copy): toolchain files, rewritten projects."""
        ...
