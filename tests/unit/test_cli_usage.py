"""The installed ``assemblage`` command, run as a user runs it: usage errors, --version, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

CLI = Path(sys.executable).with_name("assemblage")


def cli(*args: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, cwd=cwd, timeout=120, env=env)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["build"], "Missing argument"),
        (["build", "recipes/demo.yaml", "--jobs", "0"], "--jobs"),
        (["--frob"], "No such option: --frob"),
        (["build", "recipes/demo.yaml", "--frob"], "No such option: --frob"),
        (["toolchains", "frob"], "unknown action 'frob'"),
        (["token", "create", "--scope", "god"], "scope must be one of read, submit, admin"),
        (["build", "recipes/demo.yaml", "--runner", "podman"], "'podman': expected local or docker"),
        (["report", "no-such-folder"], "no dataset here"),
        (["nosuchcommand"], "No such command"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: list[str], needle: str) -> None:
    r = cli(*args)
    assert r.returncode == 2, (args, r.returncode, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]
    assert "--help" in lines[0]  # says where to look


def test_no_command_prints_help_and_exits_2() -> None:
    r = cli()
    assert r.returncode == 2
    assert "Traceback" not in r.stderr + r.stdout
    assert "Usage: assemblage" in r.stderr and "build" in r.stderr


def test_version() -> None:
    from importlib.metadata import version

    r = cli("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"assemblage {version('assemblage')}"


def test_help_documents_every_exit_code() -> None:
    from assemblage.errors import (
        AssemblageError,
        BuildError,
        InvalidBinaryError,
        RecipeError,
        SourceError,
        StorageError,
        ToolchainError,
    )
    from assemblage.settings import SettingsError

    r = cli("--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    for exc in (
        AssemblageError,
        RecipeError,
        SourceError,
        ToolchainError,
        BuildError,
        InvalidBinaryError,
        StorageError,
        SettingsError,
    ):
        assert f"{exc.exit_code} " in text, exc
    assert "9 the run finished but some builds did not succeed" in text


def test_recipe_error_exit_2_lists_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad Name\nsources: []\nmatrix: {toolchain: [gcc-99]}\nfrob: 1\n")
    r = cli("recipe", "check", str(bad))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    for where in ("name:", "sources:", "matrix.toolchain[0]:", "frob: unknown key"):
        assert where in r.stderr, (where, r.stderr)


def test_recipe_check_warns_about_what_cannot_build_here(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: warn\n"
        "sources:\n  - path: " + str(REPO / "recipes/samples/calc") + "\n"
        "  - github: {query: 'language:c'}\n"
        "matrix: {platform: [linux, windows], toolchain: [gcc-12, msvc-v143], opt: [O2]}\n"
    )
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)}  # no ASSEMBLAGE_GITHUB_TOKEN
    r = cli("recipe", "check", str(recipe), "--json", env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is True
    assert "linux-x86_64-gcc-12-O2" in doc["configurations"]
    assert any("msvc-v143 for windows-x86_64 would be skipped" in w for w in doc["warnings"]), doc["warnings"]
    assert any("ASSEMBLAGE_GITHUB_TOKEN" in w for w in doc["warnings"]), doc["warnings"]
    # gcc-12 for Linux works here: no warning about it
    assert not any("gcc-12" in w for w in doc["warnings"]), doc["warnings"]


def test_recipe_schema_is_json_schema() -> None:
    r = cli("recipe", "schema")
    assert r.returncode == 0, r.stderr
    schema = json.loads(r.stdout)
    assert schema["title"] == "Recipe"
    assert {"name", "sources", "matrix", "exclude", "build", "outputs"} <= set(schema["properties"])


def test_every_bad_list_item_is_reported_at_its_place(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: flags\nsources: [{path: " + str(REPO / "recipes/samples/calc") + "}]\n"
        "matrix: {toolchain: [gcc-12, gcc-98, clang-99], flags: ['-fPIC', 'nodash', '-O3', '-a b']}\n"
    )
    r = cli("recipe", "check", str(bad))
    assert r.returncode == 2
    for where in (
        "matrix.toolchain[1]: unknown toolchain 'gcc-98'",
        "matrix.toolchain[2]: unknown toolchain 'clang-99'",
        "matrix.flags[1]: 'nodash'",
        "matrix.flags[2]: '-O3'",
        "matrix.flags[3]: '-a b'",
    ):
        assert where in r.stderr, (where, r.stderr)
    assert "matrix.flags[0]" not in r.stderr
