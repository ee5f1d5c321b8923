"""A build plan: the argument lists a build system needs, as data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from assemblage.toolchains.base import CompilerSet

__all__ = ["Planner", "Step"]


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


class Planner(Protocol):
    """A build system: recognises a tree and plans its build for one compiler set."""

    name: str

    def detect(self, root: Path) -> bool: ...

    def plan(self, root: Path, compilers: CompilerSet, *, jobs: int = 1) -> list[Step]:
        """May write files in ``root`` (a private copy): toolchain files, rewritten projects."""
        ...
