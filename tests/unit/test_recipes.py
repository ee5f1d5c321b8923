from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from assemblage.errors import RecipeError
from assemblage.recipes import Config, expand_matrix, load_recipe, parse_recipe_text
from assemblage.recipes.models import parse_memory

GOOD = """
name: demo-corpus
sources:
  - path: {path}
  - git: https://example.invalid/madler/zlib
    ref: v1.3.1
  - archive: https://example.invalid/foo-1.0.tar.gz
    sha256: {sha}
  - debian: zlib
matrix:
  platform: [linux, windows]
  arch: [x86_64]
  toolchain: [gcc-12, clang-19, mingw-gcc-12]
  opt: [O0, O1, O2, O3, Os]
exclude:
  - {{toolchain: clang-19, opt: O1}}
build:
  timeout: 60
  memory: 512MiB
outputs:
  stripped: true
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "recipe.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def problems(tmp_path: Path, text: str) -> dict[str, str]:
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, text))
    return {p.location: p.message for p in info.value.problems}


def test_design_example_validates_and_expands(tmp_path: Path) -> None:
    recipe, base = load_recipe(write(tmp_path, GOOD.format(path=tmp_path, sha="ab" * 32)))
    assert base == tmp_path.resolve()
    assert [s.kind for s in recipe.sources] == ["path", "git", "archive", "debian"]
    assert recipe.build.memory_bytes == 512 * 1024**2
    configs, notes = expand_matrix(recipe)
    ids = [c.id for c in configs]
    # gcc and clang on linux (5 + 4 opts), clang-19 and mingw on windows (4 + 5)
    assert "linux-x86_64-gcc-12-O2" in ids
    assert "windows-x86_64-clang-19-O2" in ids
    assert "windows-x86_64-mingw-gcc-12-Os" in ids
    assert "windows-x86_64-gcc-12-O2" not in ids  # impossible: dropped with a note
    assert "linux-x86_64-mingw-gcc-12-O0" not in ids
    assert not any(c.toolchain == "clang-19" and c.opt == "O1" for c in configs)  # excluded
    assert len(ids) == 5 + 4 + 4 + 5
    assert any("gcc-12 cannot target windows-x86_64" in n for n in notes)
    assert any("mingw-gcc-12 cannot target linux-x86_64" in n for n in notes)
    assert any("excluded 2" in n for n in notes)


def test_every_problem_is_reported_with_its_location(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        name: Bad Name
        sources:
          - path: /definitely/not/here
          - git: https://example.invalid/x
            ref: --upload-pack=evil
          - nothing: 1
          - archive: a.tgz
            sha256: nothex
          - path: x
            git: y
        matrix:
          toolchain: [gcc-12, gcc-99]
          opt: [O2, O9]
          flags: ["-O3", "-g -Wall", "Wextra"]
          colour: blue
        build:
          memory: lots
        surprise: true
        """,
    )
    assert "name" in found
    assert found["sources[1].ref"].startswith("not a valid git ref")
    assert "exactly one of" in found["sources[2]"]
    assert "64 hexadecimal" in found["sources[3].sha256"]
    assert "exactly one of" in found["sources[4]"]
    assert "gcc-99" in found["matrix.toolchain[1]"] and "matrix.toolchain[0]" not in found
    assert "matrix.opt[1]" in found
    # every bad flag at its own place, not only the first
    assert "matrix.opt belongs" in found["matrix.flags[0]"] or "optimisation level" in found["matrix.flags[0]"]
    assert "no spaces" in found["matrix.flags[1]"]
    assert "starts with '-'" in found["matrix.flags[2]"]
    assert found["matrix.colour"] == "unknown key"
    assert "not a size" in found["build.memory"]
    assert found["surprise"] == "unknown key"


def test_local_paths_are_checked(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        name: ok
        sources:
          - path: no-such-folder
          - archive: no-such.tar.gz
        matrix: {toolchain: [gcc-12]}
        """,
    )
    assert found == {
        "sources[0].path": "no such folder: no-such-folder",
        "sources[1].archive": "no such file: no-such.tar.gz",
    }


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, "name: x\nsources: [\n"))
    assert info.value.problems[0].location.startswith("line ")


def test_not_a_mapping() -> None:
    with pytest.raises(RecipeError):
        parse_recipe_text("- just\n- a list\n")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(tmp_path / "absent.yaml")
    assert "no such file" in str(info.value)


@pytest.mark.parametrize(
    "ident",
    [
        "linux-x86_64-gcc-12-O2",
        "linux-aarch64-gcc-12-O0",
        "windows-x86_64-clang-19-O2",
        "windows-i686-mingw-gcc-12-Os",
        "windows-x86_64-msvc-v143-O2",
        "linux-armhf-clang-14-Oz",
    ],
)
def test_config_identifiers_round_trip(ident: str) -> None:
    assert Config.parse(ident).id == ident


def test_config_identifier_parts() -> None:
    c = Config.parse("windows-i686-mingw-gcc-12-Os")
    assert (c.platform, c.arch, c.toolchain, c.opt) == ("windows", "i686", "mingw-gcc-12", "Os")
    for bad in ("linux-x86_64-gcc-12", "mac-x86_64-gcc-12-O2", "linux-sparc-gcc-12-O2", ""):
        with pytest.raises(ValueError):
            Config.parse(bad)


def test_opt_a_toolchain_lacks_is_dropped_with_a_note(tmp_path: Path) -> None:
    recipe, _ = load_recipe(
        write(
            tmp_path,
            f"""
        name: oz
        sources: [{{path: {tmp_path}}}]
        matrix: {{toolchain: [gcc-12, clang-19], opt: [Oz]}}
        """,
        )
    )
    configs, notes = expand_matrix(recipe)
    assert [c.id for c in configs] == ["linux-x86_64-clang-19-Oz"]
    assert notes == ["dropped 1 configuration(s): gcc-12 has no -Oz"]


def test_memory_sizes() -> None:
    assert parse_memory("4GiB") == 4 * 1024**3
    assert parse_memory("1.5G") == int(1.5 * 1024**3)
    assert parse_memory("100MB") == 100 * 1000**2
    for bad in ("lots", "-1GiB", "1KiB"):
        with pytest.raises(ValueError):
            parse_memory(bad)


def test_demo_recipe_is_valid() -> None:
    from tests.conftest import REPO

    recipe, _ = load_recipe(REPO / "recipes" / "demo.yaml")
    configs, _ = expand_matrix(recipe)
    assert len(configs) == 6
