"""A build plan: the argument lists a build system needs, as data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from assemblage.toolchains.base import CompilerSet

__all__ = ["BuildTools", "LogSink", "Planner", "Step"]


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


@dataclass(frozen=True, kw_only=True)
class BuildTools:
    """What a planner needs besides the compiler set: the wrappers, and where the build's tools are."""

    cc: str  # the compiler wrappers, as the build sees them
    cxx: str
    src_dir: str  # the source root as the build sees it (inside the sandbox)
    # where a command is where the build runs (the runner's ``which``: the host's PATH, or the docker
    # image's); None: not there. Planners never look on this machine for a build that runs elsewhere.
    which: Callable[[str], str | None]

    def path_of(self, command: str) -> str:
        """``command``'s full path where the build runs, or its bare name when it is not there."""
        return self.which(command) or command


class Planner(Protocol):
    """A build system: recognises a tree and plans its build for one compiler set."""

    name: str

    def detect(self, root: Path) -> bool: ...

    def plan(self, root: Path, compilers: CompilerSet, tools: BuildTools, *, jobs: int = 1) -> list[Step]:
        """The steps that build ``root`` with ``compilers`` through ``tools``, ``jobs`` at once.

        May write files in ``root`` (a private copy): toolchain files, rewritten projects.
        """
        ...
