"""A run's plan: the recipe validated once into the options every later step reads (``runs.options``).

:func:`~assemblage.pipeline.steps.create_run` writes it (``RunPlan.of_recipe``) and every
step reads it back as the same typed model (``RunPlan.of(run)``): the build options and
their defaults live in one place, :class:`~assemblage.recipes.models.BuildOptions`, not
restated as ``run.options.get("build", {}).get("memory", "4GiB")`` wherever a step
needed one. The stored JSON keeps its keys (``base``, ``build``, ``outputs``, ``flags``,
``configs``), so runs recorded before read back unchanged, missing keys taking today's
defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from assemblage.builds.runner import Limits
from assemblage.recipes.matrix import Config
from assemblage.recipes.models import BuildOptions, Outputs, Recipe

__all__ = ["RunPlan"]


class RunPlan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    base: str = "."  # where relative local sources resolve (the recipe's folder, embedded)
    build: BuildOptions = Field(default_factory=BuildOptions)
    outputs: Outputs = Field(default_factory=Outputs)
    flags: list[str] = Field(default_factory=list)
    configs: list[str] = Field(default_factory=list)  # the matrix, expanded once by create_run

    @classmethod
    def of_recipe(cls, recipe: Recipe, configs: list[Config], base: Path) -> RunPlan:
        return cls(
            base=str(base),
            build=recipe.build,
            outputs=recipe.outputs,
            flags=list(recipe.matrix.flags),
            configs=[c.id for c in configs],
        )

    @classmethod
    def of(cls, run: Any) -> RunPlan:
        """The plan a run was created with (``run.options``)."""
        return cls.model_validate(run.options or {})

    def stored(self) -> dict[str, Any]:
        """What ``runs.options`` holds."""
        return self.model_dump(mode="json")

    def limits(self) -> Limits:
        """The limits of each build (sizes in bytes)."""
        b = self.build
        return Limits(
            timeout=float(b.timeout),
            memory=b.memory_bytes,
            processes=b.processes,
            file_size=b.disk_bytes,
            disk=b.disk_bytes,
        )  # disk: the whole build folder, not only each file

    def kinds(self) -> frozenset[str]:
        """The kinds of binaries the recipe asks for."""
        o = self.outputs
        wanted = {
            "executable": o.executables,
            "shared": o.shared_libraries,
            "static": o.static_libraries,
            "object": o.objects,
        }
        return frozenset(k for k, on in wanted.items() if on)
