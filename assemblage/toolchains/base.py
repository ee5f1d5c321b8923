"""What a toolchain is: the compilers for a target, the flags that carry a configuration."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["CompilerSet", "Toolchain", "LINUX_TRIPLES", "WINDOWS_TRIPLES", "DEBUG_FLAGS"]

LINUX_TRIPLES = {
    "x86_64": "x86_64-linux-gnu",
    "i686": "i686-linux-gnu",
    "aarch64": "aarch64-linux-gnu",
    "armhf": "arm-linux-gnueabihf",
}
WINDOWS_TRIPLES = {"x86_64": "x86_64-w64-mingw32", "i686": "i686-w64-mingw32"}

# CPU names as CMake and Meson want them.
CPU = {
    "x86_64": ("x86_64", "x86_64"),
    "i686": ("i686", "x86"),
    "aarch64": ("aarch64", "aarch64"),
    "armhf": ("armv7l", "arm"),
}

# So the flags can be read back from DW_AT_producer.
DEBUG_FLAGS = ("-g", "-grecord-gcc-switches")


@dataclass(frozen=True, kw_only=True)
class CompilerSet:
    """The commands and flags one build uses for one (toolchain, platform, arch, opt)."""

    toolchain: str
    platform: str
    arch: str
    cc: str
    cxx: str
    ar: str = "ar"
    ranlib: str = "ranlib"
    strip: str = "strip"
    windres: str | None = None
    # flags every compile and link gets (target selection, debug info, the opt level)
    cflags: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = ()
    host_triple: str | None = None  # set when cross compiling (autotools --host)
    cmake_system_name: str = "Linux"
    cpu: str = "x86_64"
    cpu_family: str = "x86_64"
    pdb: bool = False  # the link writes a PDB next to each PE
    env: tuple[tuple[str, str], ...] = ()  # extra environment for the build

    @property
    def cross(self) -> bool:
        return self.host_triple is not None

    def commands(self) -> list[str]:
        """The executables this set needs on PATH."""
        cmds = [self.cc, self.cxx, self.ar, self.strip]
        return [c for c in cmds if c]

    def missing(self, which: Callable[[str], str | None] = shutil.which) -> list[str]:
        """The commands ``which`` cannot find (the host's PATH, or a runner's image)."""
        return [c for c in self.commands() if which(c) is None]


class Toolchain(Protocol):
    """A toolchain family member, e.g. gcc-12. Implementations are frozen dataclasses."""

    name: str
    family: str
    version: str
    opts: tuple[str, ...]
    targets: tuple[tuple[str, str], ...]

    def can_target(self, platform: str, arch: str) -> bool: ...

    def compilers(self, platform: str, arch: str, opt: str, flags: tuple[str, ...] = ()) -> CompilerSet: ...

    def packages(self, platform: str, arch: str) -> list[str]:
        """Debian packages that provide this toolchain for that target."""
        ...

    def available(self, platform: str, arch: str) -> bool: ...


@dataclass(frozen=True, kw_only=True)
class BaseToolchain:
    name: str
    family: str
    version: str
    opts: tuple[str, ...]
    targets: tuple[tuple[str, str], ...]
    remote_only: bool = field(default=False)  # e.g. MSVC: only Windows workers run it

    def can_target(self, platform: str, arch: str) -> bool:
        return (platform, arch) in self.targets

    def opt_flag(self, opt: str) -> str:
        return f"-{opt}"

    def available(self, platform: str, arch: str) -> bool:
        if self.remote_only or not self.can_target(platform, arch):
            return False
        return not self.compilers(platform, arch, "O0").missing()

    def compilers(self, platform: str, arch: str, opt: str, flags: tuple[str, ...] = ()) -> CompilerSet:
        raise NotImplementedError

    def packages(self, platform: str, arch: str) -> list[str]:
        raise NotImplementedError
