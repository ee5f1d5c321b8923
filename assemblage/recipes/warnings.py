"""What a valid recipe will still not get on this machine: said by ``recipe check`` as warnings.

A recipe is valid wherever it runs (a worker with the right image may build what
this machine cannot), so these never fail the check; but a user who runs
``assemblage build`` here should know before the run that, say, every
``windows-*-clang-19`` cell would be skipped for a missing MinGW-w64 sysroot.
"""

from __future__ import annotations


from assemblage.recipes.matrix import Config
from assemblage.recipes.models import Recipe
from assemblage.settings import read_setting

__all__ = ["recipe_warnings"]


def recipe_warnings(recipe: Recipe, configs: list[Config]) -> list[str]:
    """One line per problem the run would meet here (toolchains, tokens), in a stable order."""
    out: list[str] = []
    if recipe.build.runner == "local":
        from assemblage.toolchains.probe import probe_target

        seen: dict[tuple[str, str, str], int] = {}
        for c in configs:
            key = (c.toolchain, c.platform, c.arch)
            seen[key] = seen.get(key, 0) + 1
        for (tc, platform, arch), n in seen.items():
            result = probe_target(tc, platform, arch)
            if not result.ok:
                fix = ("it runs on Windows workers" if tc.startswith("msvc-")
                       else f"install it: assemblage toolchains install {tc}:{platform}-{arch}")
                out.append(f"{n} configuration(s) of {tc} for {platform}-{arch} would be skipped "
                           f"(toolchain_unavailable): {result.problem}; {fix}")
    if any(s.kind == "github" for s in recipe.sources) and not read_setting("github_token", None):
        out.append("a github source needs ASSEMBLAGE_GITHUB_TOKEN (and network): without it the search "
                   "is recorded as one failed source")
    return out
