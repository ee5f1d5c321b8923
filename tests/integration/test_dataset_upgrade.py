"""Embedded datasets and the package's migrations: an older dataset is upgraded when opened, a wheel migrates."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SAMPLES, need

pytestmark = pytest.mark.integration


def legacy_dataset(folder: Path) -> Path:
    """A dataset as the first release made it: the 0001 schema, no revision stamp, a finished build."""
    from assemblage.db.migrate import upgrade_database

    folder.mkdir()
    db = folder / "dataset.sqlite"
    upgrade_database(f"sqlite:///{db}", "0001")
    con = sqlite3.connect(db)
    con.execute("drop table alembic_version")  # the release made datasets with create_all, unstamped
    con.execute(
        "insert into recipes (id, name, description, text, sha256, created_at) values "
        "(1, 'old', '', 'x', '0', '2026-11-01 00:00:00')"
    )
    con.execute(
        "insert into runs (id, recipe_id, status, notes, options, created_at) values "
        "(1, 1, 'finished', '[]', '{}', '2026-11-01 00:00:00')"
    )
    con.commit()
    con.close()
    return db


def test_an_unversioned_dataset_is_upgraded_and_built_into(tmp_path: Path) -> None:
    need("gcc-12")
    from assemblage.db.migrate import head_revision
    from assemblage.pipeline.embedded import open_dataset, run_recipe
    from assemblage.recipes import parse_recipe

    db = legacy_dataset(tmp_path / "out")
    ds = open_dataset(tmp_path / "out")
    con = sqlite3.connect(db)
    assert con.execute("select version_num from alembic_version").fetchall() == [(head_revision(),)]
    assert con.execute("select name from recipes").fetchall() == [("old",)]  # nothing lost
    columns = {r[1] for r in con.execute("pragma table_info(functions)")}
    assert {"source_codes", "top_comments", "size_inferred"} <= columns
    recipe = parse_recipe(
        {
            "name": "new",
            "sources": [{"path": str(SAMPLES / "calc")}],
            "matrix": {"toolchain": ["gcc-12"], "opt": ["O1"]},
        }
    )
    run_id = run_recipe(ds, recipe, "new", tmp_path)
    assert run_id == 2
    assert con.execute("select count(*) from binaries where run_id = 2").fetchone()[0] >= 1


def test_a_dataset_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    from assemblage.errors import StorageError
    from assemblage.pipeline.embedded import open_dataset

    open_dataset(tmp_path / "out")
    con = sqlite3.connect(tmp_path / "out" / "dataset.sqlite")
    con.execute("update alembic_version set version_num = 'from_the_future'")
    con.commit()
    with pytest.raises(StorageError, match="does not know"):
        open_dataset(tmp_path / "out")


def test_an_installed_wheel_migrates_without_the_checkout(tmp_path: Path) -> None:
    """`pip install` of the package (not an editable checkout) carries the migrations."""
    wheels = tmp_path / "wheels"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    target = tmp_path / "site"
    [wheel] = wheels.glob("assemblage-*.whl")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import assemblage, sys; assert assemblage.__file__.startswith(sys.argv[1]), assemblage.__file__; "
        "from assemblage.cli.main import main; sys.argv = ['assemblage', 'db', 'upgrade']; main()"
    )
    env = {
        "PYTHONPATH": str(target),
        "PATH": "/usr/bin:/bin",
        "ASSEMBLAGE_DATABASE_URL": f"sqlite:///{tmp_path / 'svc.sqlite'}",
    }
    r = subprocess.run(
        [sys.executable, "-c", code, str(target)], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    tables = {
        t
        for (t,) in sqlite3.connect(tmp_path / "svc.sqlite").execute(
            "select name from sqlite_master where type = 'table'"
        )
    }
    assert {"alembic_version", "runs", "builds", "binaries", "functions", "api_tokens", "crawls"} <= tables
