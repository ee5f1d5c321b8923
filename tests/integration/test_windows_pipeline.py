"""Windows cross builds through the pipeline: every build system, both toolchains, both architectures.

tests/integration/test_windows_pdb.py and test_windows_mingw.py compile fixtures with the
compilers directly; these go through the engine (wrappers on PATH, toolchain and cross
files, --host) and the CLI, and check the result with llvm-pdbutil-19 / llvm-dwarfdump-19.
clang targeting MinGW once lost its headers here: it finds them through the first
`<triple>-gcc` on PATH, which was our wrapper.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from assemblage.binaries import analyze_file
from assemblage.builds.engine import BuildRequest, run_build
from assemblage.recipes.matrix import Config
from tests.conftest import SAMPLES, need

pytestmark = pytest.mark.integration

EXPECTED = {
    "calc": ("make", {"calc.exe"}),
    "shapes": ("cmake", {"libgeometry.dll", "shapes.exe"}),
    "wordfreq": ("autotools", {"wordfreq.exe"}),
    "vecmath": ("meson", {"libvecmath.dll", "vecdemo.exe"}),
}


def _run(*argv: str) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("arch", ["x86_64", "i686"])
@pytest.mark.parametrize("toolchain", ["clang-19", "mingw-gcc-12"])
@pytest.mark.parametrize("sample", sorted(EXPECTED))
def test_every_build_system_cross_builds(sample, toolchain, arch, tmp_path):
    need("llvm-pdbutil-19", "llvm-dwarfdump-19", "x86_64-w64-mingw32-gcc", "clang-19")
    system, names = EXPECTED[sample]
    log = tmp_path / "build.log"
    outcome = run_build(
        BuildRequest(source_dir=SAMPLES / sample, config=Config.parse(f"windows-{arch}-{toolchain}-O2")), log
    )
    try:
        assert outcome.status == "succeeded", log.read_text()[-4000:]
        assert outcome.build_system == system
        assert {b.path.name for b in outcome.binaries} == names
        machine = "coff-x86-64" if arch == "x86_64" else "coff-i386"
        for b in outcome.binaries:
            assert b.format == "pe"
            assert machine in _run("llvm-objdump-19", "-f", str(b.path)).lower()
            if toolchain == "clang-19":
                pdb = outcome.pdbs[b.relpath]
                # the PDB is the one the PE names (GUID and age; analyze_file refuses a stranger)
                ours = analyze_file(b.path, pdb=pdb)
                procs = set(
                    re.findall(
                        r"S_GPROC32 \[size = \d+\] `([^`]+)`", _run("llvm-pdbutil-19", "dump", "-symbols", str(pdb))
                    )
                )
                assert procs and {f.name for f in ours.functions if f.name in procs} == procs
                assert ours.observed_opt == "O2"
            else:
                assert b.relpath not in outcome.pdbs
                dump = _run("llvm-dwarfdump-19", "--debug-info", str(b.path))
                prods = [p for p in re.findall(r'DW_AT_producer\s+\("([^"]*)"\)', dump) if "-O" in p]
                assert prods and all(re.findall(r"-O\S*", p)[-1] == "-O2" for p in prods), prods
            if b.path.suffix == ".exe":
                assert "main" in {f.name for f in analyze_file(b.path, pdb=outcome.pdbs.get(b.relpath)).functions}
    finally:
        outcome.cleanup()


def test_a_windows_recipe_end_to_end(tmp_path):
    recipe = tmp_path / "win.yaml"
    recipe.write_text(
        "name: win\nsources:\n"
        f"  - path: {SAMPLES / 'calc'}\n  - path: {SAMPLES / 'shapes'}\n"
        "matrix:\n  platform: [windows]\n  arch: [x86_64, i686]\n  toolchain: [clang-19, mingw-gcc-12]\n  opt: [O0]\n"
    )
    exe = Path(sys.executable).parent / "assemblage"
    r = subprocess.run(
        [str(exe), "build", str(recipe), "--out", str(tmp_path / "out"), "--jobs", "2", "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    con = sqlite3.connect(tmp_path / "out" / "dataset.sqlite")
    assert con.execute("select status, count(*) from builds group by 1").fetchall() == [("succeeded", 8)], r.stdout
    rows = con.execute(
        "select b.toolchain, b.file_name, b.format, b.opt_observed, b.function_count,"
        " (select count(*) from pdbs p where p.binary_id = b.id) from binaries b"
    ).fetchall()
    assert len(rows) == 12
    for toolchain, name, fmt, opt, nfuncs, npdbs in rows:
        assert (fmt, opt) == ("pe", "O0") and nfuncs > 0, (toolchain, name)
        assert npdbs == (1 if toolchain == "clang-19" else 0), (toolchain, name)
    mains = con.execute(
        "select count(*) from functions f join binaries b on b.id = f.binary_id"
        " where f.name = 'main' and b.file_name in ('calc.exe', 'shapes.exe')"
    ).fetchone()[0]
    assert mains == 8
