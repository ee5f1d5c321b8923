"""One broken build never takes a run down; an analysis that fails is recorded, not fatal."""

from __future__ import annotations

from pathlib import Path

import pytest

import assemblage.pipeline.embedded as embedded
from assemblage.pipeline.embedded import open_dataset, run_recipe
from assemblage.pipeline.report import run_report
from assemblage.recipes import parse_recipe
from tests.conftest import need

pytestmark = pytest.mark.integration


def test_a_crashing_build_is_recorded_and_the_run_goes_on(tmp_path: Path, monkeypatch) -> None:
    need("gcc-12")
    src = tmp_path / "p"
    src.mkdir()
    (src / "main.c").write_text("int main(void){return 0;}\n")
    recipe = parse_recipe(
        {"name": "r", "sources": [{"path": str(src)}], "matrix": {"toolchain": ["gcc-12"], "opt": ["O0", "O1", "O2"]}}
    )
    real = embedded.execute_build
    calls = []

    def flaky(ctx, bid):
        calls.append(bid)
        if len(calls) == 1:
            raise RuntimeError("simulated bug")
        return real(ctx, bid)

    monkeypatch.setattr(embedded, "execute_build", flaky)
    ds = open_dataset(tmp_path / "out")
    run_id = run_recipe(ds, recipe, "r", tmp_path, jobs=1)
    with ds.context.sessions() as s:
        rep = run_report(s, run_id)
    assert rep.status == "finished"
    assert rep.by_status == {"succeeded": 2, "failed": 1}
    crashed = next(c for c in rep.cells if c.status == "failed")
    assert crashed.reason == "internal_error"
    assert "simulated bug" in crashed.message


def test_two_sources_with_one_name_stay_two_rows_of_coverage(tmp_path: Path) -> None:
    need("gcc-12")
    specs = []
    for i, body in enumerate(("return 0;", "syntax error here")):
        src = tmp_path / f"p{i}"
        src.mkdir()
        (src / "main.c").write_text(f"int main(void){{{body}}}\n")
        specs.append({"path": str(src), "name": "same"})
    recipe = parse_recipe({"name": "r", "sources": specs, "matrix": {"toolchain": ["gcc-12"], "opt": ["O0"]}})
    ds = open_dataset(tmp_path / "out")
    run_id = run_recipe(ds, recipe, "r", tmp_path, jobs=1)
    with ds.context.sessions() as s:
        rep = run_report(s, run_id)
    assert rep.sources == ["same", "same"]
    assert rep.cell(rep.positions[0], "linux-x86_64-gcc-12-O0").status == "succeeded"
    assert rep.cell(rep.positions[1], "linux-x86_64-gcc-12-O0").status == "failed"
    assert rep.binaries == 1 and rep.functions >= 1
