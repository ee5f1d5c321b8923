"""Build reuse (pipeline/reuse.py): only a build with the same inputs, and only an outcome those inputs give again.

Real builds in the embedded pipeline: a failure under a tiny memory cap is not reused by a run with a
large one; an ``internal_error`` (Assemblage crashed) is never reused; docker builds say ``runner=docker``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import select

import assemblage.pipeline.steps as steps
from assemblage.db import models as m
from assemblage.pipeline.embedded import open_dataset, run_recipe
from assemblage.pipeline.plan import RunPlan
from assemblage.recipes import parse_recipe
from assemblage.recipes.models import BuildOptions
from tests.conftest import SAMPLES, need
from tests.integration.docker_support import IMAGE, require_image, skip_without_docker

pytestmark = pytest.mark.integration


def _recipe(build: dict | None = None, *, opts=("O0",)):
    return parse_recipe(
        {
            "name": "reuse",
            "sources": [{"path": str(SAMPLES / "calc")}],
            "matrix": {"toolchain": ["gcc-12"], "opt": list(opts)},
            "build": build or {},
        }
    )


def _builds(ds, run_id: int) -> list[m.Build]:
    with ds.context.sessions() as s:
        rows = list(s.scalars(select(m.Build).where(m.Build.run_id == run_id).order_by(m.Build.id)))
        s.expunge_all()
        return rows


def test_a_failure_under_a_tiny_memory_cap_is_not_reused_under_a_large_one(tmp_path: Path) -> None:
    need("gcc-12")
    ds = open_dataset(tmp_path / "out")
    tiny = run_recipe(ds, _recipe({"memory": "16MiB"}), "tiny", tmp_path, jobs=1)
    [failed] = _builds(ds, tiny)
    assert failed.status == "failed", (failed.reason, failed.message)

    large = run_recipe(ds, _recipe({"memory": "4GiB"}), "large", tmp_path, jobs=1)
    [built] = _builds(ds, large)
    assert built.reused_from_id is None, "the 16MiB failure was reused by a run with 4GiB"
    assert built.status == "succeeded", (built.reason, built.message)
    assert built.key != failed.key

    # the same inputs again: the success is reused; 4096MiB is the same limit as 4GiB
    again = run_recipe(ds, _recipe({"memory": "4096MiB"}), "again", tmp_path, jobs=1)
    [reused] = _builds(ds, again)
    assert reused.reused_from_id == built.id and reused.status == "succeeded"


def test_every_build_option_is_part_of_the_key() -> None:
    base = {"label": "path:x", "pin": "tree:1", "config": "linux-x86_64-gcc-12-O0", "flags": [], "source_date_epoch": 1}
    opts = {
        "build": {
            "runner": "local",
            "image": None,
            "timeout": 600,
            "memory": "4GiB",
            "processes": 512,
            "disk": "8GiB",
            "jobs_per_build": 1,
        },
        "outputs": {"stripped": False},
    }
    key = steps.build_key(**base, options=RunPlan.model_validate(opts))
    assert (
        steps.build_key(
            **base, options=RunPlan.model_validate(opts), toolchain={"commands": {"gcc-12": ["/usr/bin/gcc-12", 1, 2]}}
        )
        != key
    )
    for field, value in [
        ("runner", "docker"),
        ("image", "other:1"),
        ("timeout", 60),
        ("memory", "16MiB"),
        ("processes", 64),
        ("disk", "1GiB"),
        ("jobs_per_build", 4),
    ]:
        changed = {**opts, "build": {**opts["build"], field: value}}
        assert steps.build_key(**base, options=RunPlan.model_validate(changed)) != key, field
    assert steps.build_key(**{**base, "source_date_epoch": 2}, options=RunPlan.model_validate(opts)) != key
    assert steps.build_key(**base, options=RunPlan.model_validate({**opts, "outputs": {"stripped": True}})) != key


def test_an_internal_error_is_never_reused(tmp_path: Path, monkeypatch) -> None:
    need("gcc-12")
    real = steps.run_build
    calls = []

    def crash_once(request, log_path):
        calls.append(request)
        if len(calls) == 1:  # after the build's key was recorded, as a real crash in the engine would be
            raise RuntimeError("simulated crash in the engine")
        return real(request, log_path)

    monkeypatch.setattr(steps, "run_build", crash_once)
    ds = open_dataset(tmp_path / "out")
    first = run_recipe(ds, _recipe(), "first", tmp_path, jobs=1)
    [crashed] = _builds(ds, first)
    assert (crashed.status, crashed.reason) == ("failed", "internal_error")
    assert crashed.key is not None

    second = run_recipe(ds, _recipe(), "second", tmp_path, jobs=1)
    [built] = _builds(ds, second)
    assert built.reused_from_id is None, "an internal_error was reused"
    assert built.status == "succeeded", (built.reason, built.message)
    assert len(calls) == 2


@skip_without_docker
def test_docker_builds_record_runner_docker(tmp_path: Path) -> None:
    require_image()
    ds = open_dataset(tmp_path / "out")
    run_id = run_recipe(ds, _recipe({"runner": "docker", "image": IMAGE}), "docker", tmp_path, jobs=1)
    [b] = _builds(ds, run_id)
    assert b.status == "succeeded", (b.reason, b.message)
    assert b.runner == "docker"
    assert b.environment["runner"] == "docker"


def test_a_changed_compiler_is_built_again(tmp_path: Path, monkeypatch) -> None:
    """The key covers the toolchain found on this machine: another gcc-12 on PATH is another input."""
    need("gcc-12")
    from assemblage.pipeline.reuse import toolchain_identity

    ds = open_dataset(tmp_path / "out")
    first = run_recipe(ds, _recipe(), "first", tmp_path, jobs=1)
    [built] = _builds(ds, first)
    assert built.status == "succeeded", (built.reason, built.message)
    before = toolchain_identity("linux-x86_64-gcc-12-O0", [], BuildOptions())

    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "gcc-12").write_text('#!/bin/sh\nexec /usr/bin/gcc-12 "$@"\n')
    (shim / "gcc-12").chmod(0o755)
    original = os.environ["PATH"]
    monkeypatch.setenv("PATH", f"{shim}:{original}")
    after = toolchain_identity("linux-x86_64-gcc-12-O0", [], BuildOptions())
    assert after["commands"]["gcc-12"][0] == str(shim / "gcc-12") and after != before

    second = run_recipe(ds, _recipe(), "second", tmp_path, jobs=1)
    [again] = _builds(ds, second)
    assert again.reused_from_id is None, "a build with another compiler reused the first one"
    assert again.key != built.key

    monkeypatch.setenv("PATH", original)
    third = run_recipe(ds, _recipe(), "third", tmp_path, jobs=1)
    [reused] = _builds(ds, third)
    assert reused.reused_from_id == built.id  # the original compiler again: the first build's result
