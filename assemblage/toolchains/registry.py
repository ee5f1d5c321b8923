"""Every toolchain Assemblage knows, by name (docs/recipes.md, "The matrix")."""

from __future__ import annotations

from typing import Final

from assemblage.errors import ToolchainError
from assemblage.toolchains.base import BaseToolchain
from assemblage.toolchains.gnu import GCC_OPTS, Gcc, MingwGcc
from assemblage.toolchains.llvm import CLANG_OPTS, Clang, Msvc

__all__ = ["TOOLCHAINS", "get_toolchain"]

_LINUX = (("linux", "x86_64"), ("linux", "aarch64"), ("linux", "armhf"))
_WINDOWS = (("windows", "x86_64"), ("windows", "i686"))
_MSVC_OPTS = ("Od", "O1", "O2", "Ox")


def _registry() -> dict[str, BaseToolchain]:
    tcs: list[BaseToolchain] = [
        Gcc(name="gcc-11", family="gcc", version="11", opts=GCC_OPTS, targets=_LINUX),
        Gcc(name="gcc-12", family="gcc", version="12", opts=GCC_OPTS, targets=_LINUX),
        Clang(name="clang-14", family="clang", version="14", opts=CLANG_OPTS, targets=_LINUX),
        Clang(name="clang-16", family="clang", version="16", opts=CLANG_OPTS, targets=_LINUX),
        Clang(name="clang-19", family="clang", version="19", opts=CLANG_OPTS, targets=_LINUX + _WINDOWS),
        MingwGcc(name="mingw-gcc-12", family="mingw-gcc", version="12", opts=GCC_OPTS, targets=_WINDOWS),
    ]
    for v in ("140", "141", "142", "143"):
        tcs.append(
            Msvc(name=f"msvc-v{v}", family="msvc", version=v, opts=_MSVC_OPTS, targets=_WINDOWS, remote_only=True)
        )
    return {t.name: t for t in tcs}


TOOLCHAINS: Final[dict[str, BaseToolchain]] = _registry()


def get_toolchain(name: str) -> BaseToolchain:
    try:
        return TOOLCHAINS[name]
    except KeyError:
        raise ToolchainError(f"unknown toolchain {name!r}; known: {', '.join(TOOLCHAINS)}") from None
