"""Configuration identifiers and the expansion of a recipe's matrix into them."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from assemblage.recipes.models import ARCHS, PLATFORMS, Recipe

__all__ = ["Config", "expand_matrix"]

_ID_RE = re.compile(r"^(?P<platform>[a-z]+)-(?P<arch>x86_64|i686|aarch64|armhf)-(?P<toolchain>.+)-(?P<opt>O[0-3sgz]|Ofast|Od|Ox)$")


@dataclass(frozen=True, kw_only=True, order=True)
class Config:
    """One cell of the build matrix: ``{platform}-{arch}-{toolchain}-{opt}``."""

    platform: str
    arch: str
    toolchain: str
    opt: str

    @property
    def id(self) -> str:
        return f"{self.platform}-{self.arch}-{self.toolchain}-{self.opt}"

    def __str__(self) -> str:
        return self.id

    @classmethod
    def parse(cls, identifier: str) -> "Config":
        m = _ID_RE.match(identifier)
        if not m or m["platform"] not in PLATFORMS or m["arch"] not in ARCHS:
            raise ValueError(
                f"not a configuration identifier: {identifier!r} "
                "(expected platform-arch-toolchain-opt, e.g. linux-x86_64-gcc-12-O2)"
            )
        return cls(**m.groupdict())


def expand_matrix(recipe: Recipe) -> tuple[list[Config], list[str]]:
    """All configurations of the recipe, in a stable order, and a note for each one dropped.

    A combination the toolchain cannot produce (gcc for Windows, Oz for gcc) is
    dropped with a note and never attempted; ``exclude`` rules drop silently
    but are counted in a note.
    """
    from assemblage.toolchains.registry import TOOLCHAINS

    m = recipe.matrix
    configs: list[Config] = []
    notes: list[str] = []
    impossible: dict[str, list[str]] = {}
    excluded = 0
    for platform, arch, tc_name, opt in itertools.product(m.platform, m.arch, m.toolchain, m.opt):
        tc = TOOLCHAINS[tc_name]
        if not tc.can_target(platform, arch):
            impossible.setdefault(f"{tc_name} cannot target {platform}-{arch}", []).append(opt)
            continue
        if opt not in tc.opts:
            impossible.setdefault(f"{tc_name} has no -{opt}", []).append(f"{platform}-{arch}")
            continue
        if any(rule.matches(platform=platform, arch=arch, toolchain=tc_name, opt=opt) for rule in recipe.exclude):
            excluded += 1
            continue
        configs.append(Config(platform=platform, arch=arch, toolchain=tc_name, opt=opt))
    for reason, which in impossible.items():
        notes.append(f"dropped {len(which)} configuration(s): {reason}")
    if excluded:
        notes.append(f"excluded {excluded} configuration(s) by the recipe's exclude rules")
    return configs, notes
