"""The run's plan: validated once from the recipe, stored in runs.options, read back as the same model."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from assemblage.pipeline.plan import RunPlan
from assemblage.recipes import expand_matrix, parse_recipe


def test_a_recipe_becomes_a_plan_that_reads_back_the_same():
    recipe = parse_recipe(
        {
            "name": "p",
            "sources": [{"path": "."}],
            "matrix": {"toolchain": ["gcc-12"], "opt": ["O0", "O2"], "flags": ["-fno-inline"]},
            "build": {"memory": "512MiB", "disk": "2GiB", "timeout": 60, "runner": "docker"},
            "outputs": {"static_libraries": True, "shared_libraries": False, "stripped": True},
        }
    )
    configs, _ = expand_matrix(recipe)
    plan = RunPlan.of_recipe(recipe, configs, Path("/srv/recipes"))
    stored = plan.stored()
    assert set(stored) == {"base", "build", "outputs", "flags", "configs"}  # runs.options keeps its keys
    again = RunPlan.of(SimpleNamespace(options=stored))
    assert again == plan
    assert again.configs == ["linux-x86_64-gcc-12-O0", "linux-x86_64-gcc-12-O2"] and again.flags == ["-fno-inline"]
    limits = again.limits()
    assert (limits.memory, limits.disk, limits.file_size, limits.timeout) == (
        512 * 1024**2,
        2 * 1024**3,
        2 * 1024**3,
        60.0,
    )
    assert again.kinds() == {"executable", "static"} and again.outputs.stripped
    assert again.build.runner == "docker"


def test_options_recorded_before_read_back_with_todays_defaults():
    """A run recorded by an older version (fewer keys, or none) still has a plan: the defaults fill in."""
    old = RunPlan.of(SimpleNamespace(options={"base": ".", "build": {"memory": "1GiB"}, "configs": ["x"]}))
    assert old.limits().memory == 1024**3 and old.limits().disk == 8 * 1024**3  # disk: the model's default
    assert old.kinds() == {"executable", "shared"} and old.flags == []
    assert RunPlan.of(SimpleNamespace(options=None)).build.runner == "local"
