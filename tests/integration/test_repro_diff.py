"""Real compilers, real differences: the cause each one is given, and the defaults that remove them.

Each case builds one program twice with one thing changed (the date, the
folder, the link order, the second the linker ran), the way a build that is
not reproducible would, and checks that :mod:`assemblage.binaries.diff` names
the section and the cause; then the same changes through our build engine
(the wrappers, SOURCE_DATE_EPOCH, /Brepro) give identical files.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from assemblage.binaries.diff import compare_files
from assemblage.builds.engine import BuildRequest, run_build
from assemblage.recipes.matrix import Config
from tests.conftest import SAMPLES, need

pytestmark = pytest.mark.integration

DATED = '#include <stdio.h>\nint main(void) { puts(__DATE__ " " __TIME__); return 0; }\n'


def cc(*args: str, cwd: Path, env: dict | None = None) -> None:
    import os

    subprocess.run(list(args), cwd=cwd, check=True, capture_output=True, env={**os.environ, **(env or {})})


def sections(diff) -> dict[str, str]:
    return {s.name: s.cause for s in diff.sections}


def test_date_and_time_macros_are_named(tmp_path):
    need("gcc-12")
    (tmp_path / "d.c").write_text(DATED)
    for epoch in ("1700000000", "1700000100"):
        cc("gcc-12", "-O2", "-g", "d.c", "-o", f"d{epoch}", cwd=tmp_path, env={"SOURCE_DATE_EPOCH": epoch})
    diff = compare_files(tmp_path / "d1700000000", tmp_path / "d1700000100")
    assert not diff.identical and diff.format == "elf"
    assert sections(diff)[".rodata"] == "date_time"
    assert diff.causes[0] == "date_time" and "build_id" in diff.causes
    detail = next(s.detail for s in diff.sections if s.name == ".rodata")
    assert "22:13:20" in detail and "22:15:00" in detail  # the two times, shown


def test_build_paths_are_named(tmp_path):
    need("gcc-12")
    for d in ("one", "two"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "d.c").write_text(DATED.replace('__DATE__ " " __TIME__', '"x"'))
        cc("gcc-12", "-O2", "-g", "d.c", "-o", "../" + d + ".bin", cwd=tmp_path / d)
    diff = compare_files(tmp_path / "one.bin", tmp_path / "two.bin")
    causes = sections(diff)
    assert causes[".debug_line_str"] == "build_path" and diff.causes[0] == "build_path"


def test_link_order_is_named_ordering(tmp_path):
    need("gcc-12")
    for f in ("main.c", "eval.c", "parser.c", "calc.h"):
        shutil.copy(SAMPLES / "calc" / f, tmp_path)
    cc("gcc-12", "-O2", "-g", "-c", "main.c", "eval.c", "parser.c", cwd=tmp_path)
    cc("gcc-12", "main.o", "eval.o", "parser.o", "-o", "a", "-lm", cwd=tmp_path)
    cc("gcc-12", "parser.o", "eval.o", "main.o", "-o", "b", "-lm", cwd=tmp_path)
    diff = compare_files(tmp_path / "a", tmp_path / "b")
    causes = sections(diff)
    assert causes[".strtab"] == "ordering" and diff.causes[0] == "ordering"
    assert causes[".text"] == "layout"  # code that moved because of it, not a cause of its own
    assert "unknown" not in diff.causes


def _calc_objects(tmp_path: Path) -> None:
    for f in ("main.c", "eval.c", "parser.c", "calc.h"):
        shutil.copy(SAMPLES / "calc" / f, tmp_path)
    for f in ("main", "eval", "parser"):
        cc(
            "clang-19",
            "--target=x86_64-w64-mingw32",
            "-O2",
            "-g",
            "-gcodeview",
            "-c",
            f"{f}.c",
            "-o",
            f"{f}.o",
            cwd=tmp_path,
        )


def test_the_pe_time_stamp_is_named_and_brepro_removes_it(tmp_path):
    need("clang-19", "lld-19", "x86_64-w64-mingw32-gcc")
    _calc_objects(tmp_path)
    out = {}
    for brepro in (False, True):
        for i in (1, 2):
            extra = ["-Wl,-Xlink=-Brepro"] if brepro else []
            cc(
                "clang-19",
                "--target=x86_64-w64-mingw32",
                "-fuse-ld=lld-19",
                "-g",
                "-Wl,--pdb=",
                *extra,
                "main.o",
                "eval.o",
                "parser.o",
                "-o",
                "c.exe",
                cwd=tmp_path,
            )
            out[(brepro, i)] = (tmp_path / "c.exe").read_bytes()
            time.sleep(1.1)  # a new second: a new time stamp
    a, b = tmp_path / "a.exe", tmp_path / "b.exe"
    a.write_bytes(out[(False, 1)])
    b.write_bytes(out[(False, 2)])
    diff = compare_files(a, b)
    assert diff.format == "pe" and diff.causes[0] == "pe_timestamp", diff.sections
    assert sections(diff)["PE headers"] == "pe_timestamp"
    assert out[(True, 1)] == out[(True, 2)]


def test_clang_temporary_object_names_in_a_pdb_are_randomised_names(tmp_path):
    need("clang-19", "lld-19", "x86_64-w64-mingw32-gcc")
    _calc_objects(tmp_path)
    pdbs = []
    for i in (1, 2):  # compile and link in one call: the objects get random temporary names
        cc(
            "clang-19",
            "--target=x86_64-w64-mingw32",
            "-fuse-ld=lld-19",
            "-g",
            "-gcodeview",
            "-Wl,--pdb=",
            "-Wl,-Xlink=-Brepro",
            "main.c",
            "eval.c",
            "parser.c",
            "-o",
            "c.exe",
            cwd=tmp_path,
        )
        pdbs.append(tmp_path / f"c{i}.pdb")
        shutil.copy(tmp_path / "c.pdb", pdbs[-1])
    diff = compare_files(*pdbs)
    assert diff.format == "pdb" and diff.causes == ["random_names"]
    assert ".o" in diff.sections[0].detail


def _build_twice(config: str, src: Path, tmp_path: Path, epoch: int = 1700000000) -> list[dict[str, str]]:
    out = []
    for i in (1, 2):
        outcome = run_build(
            BuildRequest(source_dir=src, config=Config.parse(config), source_date_epoch=epoch),
            tmp_path / f"{config}-{i}.log",
        )
        try:
            assert outcome.status == "succeeded", (tmp_path / f"{config}-{i}.log").read_text()[-3000:]
            files = {b.relpath: hashlib.sha256(b.path.read_bytes()).hexdigest() for b in outcome.binaries}
            files.update({k + ".pdb": hashlib.sha256(p.read_bytes()).hexdigest() for k, p in outcome.pdbs.items()})
            out.append(files)
        finally:
            outcome.cleanup()
        time.sleep(1.1)
    return out


@pytest.mark.parametrize(
    "config,tools",
    [
        ("windows-x86_64-clang-19-O2", ("clang-19", "lld-19", "x86_64-w64-mingw32-gcc")),
        ("windows-i686-mingw-gcc-12-O2", ("i686-w64-mingw32-gcc",)),
        ("linux-x86_64-clang-14-O2", ("clang-14",)),
    ],
)
def test_our_builds_of_dated_windows_and_clang_14_programs_are_identical(config, tools, tmp_path):
    need(*tools)
    src = tmp_path / "src"
    shutil.copytree(SAMPLES / "calc", src)
    (src / "stamp.c").write_text('const char *built_on = __DATE__ " " __TIME__;\n')
    (src / "Makefile").write_text((SAMPLES / "calc" / "Makefile").read_text().replace("main.o", "main.o stamp.o", 1))
    first, second = _build_twice(config, src, tmp_path)
    assert first and first == second
    if "clang-14" in config:  # it ignores SOURCE_DATE_EPOCH: the wrapper's macros carry the date
        run = run_build(
            BuildRequest(source_dir=src, config=Config.parse(config), source_date_epoch=1700000000),
            tmp_path / "again.log",
        )
        try:
            assert b"Nov 14 2023 22:13:20" in run.binaries[0].path.read_bytes()
        finally:
            run.cleanup()


def test_without_the_sandbox_the_prefix_map_still_gives_gcc_builds_one_path(tmp_path, monkeypatch):
    """Builds outside /build (no bubblewrap) in two random scratch folders: the same bytes, /build recorded."""
    need("gcc-12", "llvm-dwarfdump-19")
    monkeypatch.setenv("ASSEMBLAGE_NO_SANDBOX", "1")
    monkeypatch.setenv("ASSEMBLAGE_ALLOW_UNSANDBOXED", "1")  # no sandbox on purpose: allowed for this test
    try:
        first, second = [], []
        for out in (first, second):
            outcome = run_build(
                BuildRequest(source_dir=SAMPLES / "calc", config=Config.parse("linux-x86_64-gcc-12-O2")),
                tmp_path / "b.log",
            )
            try:
                assert outcome.status == "succeeded" and not outcome.sandboxed
                assert outcome.environment.wrapper_flags[0].startswith("-ffile-prefix-map=/")
                assert outcome.environment.wrapper_flags[0].endswith("=/build")
                out.append(outcome.binaries[0].path.read_bytes())
                dump = subprocess.run(
                    ["llvm-dwarfdump-19", "--debug-info", str(outcome.binaries[0].path)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                dirs = set(re.findall(r'DW_AT_comp_dir\s+\("([^"]*)"\)', dump))
                assert dirs == {"/build/src"}, dirs
                assert "asm-build-" not in dump.split("\n", 1)[1]  # the first line names the file dumped
            finally:
                outcome.cleanup()
        assert first == second
    finally:
        monkeypatch.delenv("ASSEMBLAGE_NO_SANDBOX")


def test_a_generated_source_that_differs_only_in_a_comment_is_a_source_checksum(tmp_path):
    """clang's DWARF 5 line table keeps each file's MD5: mawk's build writes the date into scancode.c's comment."""
    need("clang-19")
    out = []
    for i in (1, 2):
        (tmp_path / "gen.c").write_text(f"/* generated at {time.time_ns()} */\nint gen(void) {{ return 1; }}\n")
        (tmp_path / "main.c").write_text("int gen(void);\nint main(void) { return gen(); }\n")
        cc("clang-19", "-O0", "-g", "gen.c", "main.c", "-o", f"p{i}", cwd=tmp_path)
        out.append(tmp_path / f"p{i}")
    diff = compare_files(*out)
    assert sections(diff)[".debug_line"] == "source_checksum" and diff.causes[0] == "source_checksum"
    assert "gen.c" in next(s.detail for s in diff.sections if s.name == ".debug_line")
