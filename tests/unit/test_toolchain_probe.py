"""A toolchain target counts as installed only when a C program compiles and links for it."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from assemblage.toolchains.probe import probe_compilers, probe_target
from assemblage.toolchains.registry import get_toolchain
from tests.conftest import need


def test_a_native_target_that_builds_probes_ok(tmp_path: Path) -> None:
    need("gcc-12")
    # the oracle: the compiler itself builds and runs a program
    (tmp_path / "t.c").write_text('#include <stdio.h>\nint main(void){puts("x");return 0;}\n')
    subprocess.run(["gcc-12", "t.c", "-o", "t"], cwd=tmp_path, check=True)
    assert subprocess.run([str(tmp_path / "t")], capture_output=True, text=True).stdout == "x\n"
    assert probe_target("gcc-12", "linux", "x86_64").ok


def test_clang_for_windows_without_its_sysroot_is_unavailable() -> None:
    """clang-19 on PATH is not enough: without MinGW-w64 headers every Windows build fails."""
    need("clang-19")
    cs = get_toolchain("clang-19").compilers("windows", "x86_64", "O0")
    broken = dataclasses.replace(cs, cflags=(*cs.cflags, "--sysroot=/nonexistent-mingw-sysroot"))
    result = probe_compilers(broken)
    assert not result.ok
    assert "stdio.h" in result.problem and "windows-x86_64" in result.problem


def test_a_missing_compiler_is_named() -> None:
    cs = get_toolchain("gcc-12").compilers("linux", "x86_64", "O0")
    result = probe_compilers(dataclasses.replace(cs, cc="gcc-does-not-exist-99"))
    assert not result.ok and "gcc-does-not-exist-99" in result.problem


def test_msvc_is_never_local() -> None:
    result = probe_target("msvc-v143", "windows", "x86_64")
    assert not result.ok and "Windows workers" in result.problem


def test_toolchains_json_agrees_with_the_probe() -> None:
    cli = Path(sys.executable).with_name("assemblage")
    r = subprocess.run([str(cli), "toolchains", "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = {(row["toolchain"], row["target"]): row for row in json.loads(r.stdout)}
    if shutil.which("gcc-12"):
        assert rows[("gcc-12", "linux-x86_64")]["installed"] is True
    assert rows[("msvc-v143", "windows-x86_64")]["installed"] is False
    for row in rows.values():
        assert row["installed"] == (row["problem"] is None)
        if not row["installed"] and not row["toolchain"].startswith("msvc"):
            assert row["install"] == f"assemblage toolchains install {row['toolchain']}:{row['target']}"


@pytest.mark.parametrize("target", [("windows", "x86_64"), ("windows", "i686")])
def test_clang_windows_probe_matches_a_real_link(target: tuple[str, str], tmp_path: Path) -> None:
    """Whatever the probe says, a real compile and link with the same flags says the same."""
    need("clang-19")
    cs = get_toolchain("clang-19").compilers(*target, "O0")
    (tmp_path / "p.c").write_text("#include <stdio.h>\nint main(void){return 0;}\n")
    ld = [f"{f}p.pdb" if f == "-Wl,--pdb=" else f for f in cs.ldflags]
    real = subprocess.run([cs.cc, *cs.cflags, *ld, "p.c", "-o", "p.exe"], cwd=tmp_path, capture_output=True)
    assert probe_target("clang-19", *target).ok == (real.returncode == 0)
