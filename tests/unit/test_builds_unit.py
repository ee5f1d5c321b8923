from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from assemblage.builds.collect import classify, find_binaries, snapshot
from assemblage.builds.engine import classify_failure
from assemblage.builds.plan import Step
from assemblage.builds.runner import Limits, LocalRunner, StepResult
from assemblage.builds.systems import (
    AutotoolsPlanner,
    BuildTools,
    CMakePlanner,
    MesonPlanner,
    PlainPlanner,
    detect_build_system,
)
from assemblage.builds.wrappers import write_wrappers
from assemblage.toolchains.base import CompilerSet
from assemblage.toolchains.registry import get_toolchain


def elf_header(e_type: int, *, interp: bool = False) -> bytes:
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    phoff = 64
    hdr = ident + struct.pack("<HHIQQQIHHHHHH", e_type, 62, 1, 0, phoff, 0, 0, 64, 56, 1, 64, 0, 0)
    ph = struct.pack("<IIQQQQQQ", 3 if interp else 1, 0, 0, 0, 0, 0, 0, 0)
    return hdr + ph


def pe_header(dll: bool) -> bytes:
    mz = bytearray(b"MZ" + bytes(62))
    mz[60:64] = struct.pack("<I", 64)
    coff = b"PE\0\0" + struct.pack("<HHIIIHH", 0x8664, 0, 0, 0, 0, 0, 0x2022 if dll else 0x0022)
    return bytes(mz) + coff


@pytest.mark.parametrize(
    "data,expected",
    [
        (elf_header(2), ("elf", "executable")),
        (elf_header(3, interp=True), ("elf", "executable")),  # PIE
        (elf_header(3), ("elf", "shared")),
        (elf_header(1), ("elf", "object")),
        (pe_header(False), ("pe", "executable")),
        (pe_header(True), ("pe", "shared")),
        (b"!<arch>\nrest", ("ar", "static")),
        (b"#!/bin/sh\necho hi\n", None),
        (b"MZ not really a PE", None),
        (b"\x7fELF", None),
        (b"", None),
    ],
)
def test_classify_by_magic_bytes(tmp_path: Path, data: bytes, expected) -> None:
    p = tmp_path / "file.txt"  # the name must not matter
    p.write_bytes(data)
    assert classify(p) == expected


def test_find_binaries_skips_unchanged_symlinks_and_probes(tmp_path: Path) -> None:
    (tmp_path / "old").write_bytes(elf_header(2))
    before = snapshot(tmp_path)
    (tmp_path / "new.so").write_bytes(elf_header(3))
    (tmp_path / "link.so").symlink_to("new.so")
    (tmp_path / "CMakeFiles").mkdir()
    (tmp_path / "CMakeFiles" / "a.out").write_bytes(elf_header(2))
    (tmp_path / "obj" / "config.tests" / "binary_for_strip_built").mkdir(parents=True)
    (tmp_path / "obj" / "config.tests" / "binary_for_strip_built" / "liblib1.so").write_bytes(elf_header(3))
    (tmp_path / "obj.o").write_bytes(elf_header(1))
    found = find_binaries(tmp_path, before, kinds={"executable", "shared"})
    assert [(b.relpath, b.kind) for b in found] == [("new.so", "shared")]
    found = find_binaries(tmp_path, before, kinds={"object"})
    assert [b.relpath for b in found] == ["obj.o"]


def fake_compiler(tmp_path: Path) -> Path:
    (tmp_path / "real").mkdir(exist_ok=True)
    p = tmp_path / "real" / "fake-cc"
    p.write_text('#!/bin/sh\nfor a do printf "[%s]" "$a"; done\n')
    p.chmod(0o755)
    return p


def test_wrapper_drops_project_levels_and_appends_ours(tmp_path: Path) -> None:
    real = fake_compiler(tmp_path)
    cs = CompilerSet(
        toolchain="x",
        platform="linux",
        arch="x86_64",
        cc=str(real),
        cxx=str(real),
        cflags=("-O2", "-g", "-grecord-gcc-switches"),
    )
    cc, cxx = write_wrappers(tmp_path / "bin", cs, "linux-x86_64-x-O2")
    weird = "$(touch pwned);`x` 'a b'"
    out = subprocess.run(
        [str(cc), "-O3", "-c", weird, "-g0", "-s", "-Ofast", "-DX=1"], capture_output=True, text=True, cwd=tmp_path
    ).stdout
    assert out == f"[-c][{weird}][-DX=1][-O2][-g][-grecord-gcc-switches]"
    assert not (tmp_path / "pwned").exists()
    for name in ("gcc", "clang", "cc", "c++", "g++"):
        assert (tmp_path / "bin" / name).exists()


def test_wrapper_names_cover_cross_prefixes(tmp_path: Path) -> None:
    cs = get_toolchain("gcc-12").compilers("linux", "aarch64", "O1")
    write_wrappers(tmp_path / "bin", cs, "linux-aarch64-gcc-12-O1")
    assert (tmp_path / "bin" / "aarch64-linux-gnu-gcc").exists()
    assert (tmp_path / "bin" / "aarch64-linux-gnu-gcc-12").exists()


def tools() -> BuildTools:
    return BuildTools(cc="/build/bin/cc", cxx="/build/bin/c++", src_dir="/build/src", which=shutil.which)


def test_cmake_plan_neutralises_build_type(tmp_path: Path) -> None:
    (tmp_path / "CMakeLists.txt").write_text("project(x C)\n")
    cs = get_toolchain("clang-19").compilers("linux", "aarch64", "Oz")
    steps = CMakePlanner().plan(tmp_path, cs, tools(), jobs=3)
    configure = steps[0].argv
    assert "-DCMAKE_BUILD_TYPE=" in configure
    assert any(a.startswith("-DCMAKE_C_FLAGS=") and "-Oz" in a for a in configure)
    text = (tmp_path / "_assemblage_build" / "toolchain.cmake").read_text()
    assert "CMAKE_SYSTEM_PROCESSOR aarch64" in text and "/build/bin/cc" in text
    assert steps[1].argv[-1] == "3"


class ImageRunner(LocalRunner):
    """A runner whose tools are somewhere else than this machine's PATH (as the docker runner's image)."""

    def __init__(self) -> None:
        super().__init__(Limits(), sandbox=True)
        self.asked: list[str] = []

    def which(self, name: str) -> str | None:
        self.asked.append(name)
        return None if name == "ninja" else f"/image/bin/{name}"


def test_planners_ask_the_runner_for_their_tools_not_this_machine(tmp_path: Path) -> None:
    runner = ImageRunner()
    tools = BuildTools(cc="/build/bin/cc", cxx="/build/bin/c++", src_dir="/build/src", which=runner.which)
    cs = get_toolchain("mingw-gcc-12").compilers("windows", "x86_64", "O2")  # ar, ranlib, windres of the cross tools
    (tmp_path / "CMakeLists.txt").write_text("project(x C)\n")
    configure = CMakePlanner().plan(tmp_path, cs, tools, jobs=1)[0].argv
    text = (tmp_path / "_assemblage_build" / "toolchain.cmake").read_text()
    for tool in (cs.ar, cs.ranlib, cs.windres):
        assert f'"/image/bin/{tool}"' in text
        host = shutil.which(tool)
        assert host is None or host not in text
    # no ninja in the image: make's generator, whether or not this machine has ninja
    assert "Ninja" not in configure and "ninja" in runner.asked
    (tmp_path / "meson.build").write_text("project('x', 'c')\n")
    MesonPlanner().plan(tmp_path, cs, tools)
    assert f"strip = '/image/bin/{cs.strip}'" in (tmp_path / "_assemblage_build" / "cross.ini").read_text()
    assert {cs.ar, cs.ranlib, cs.windres, cs.strip, "ninja"} <= set(runner.asked)


def test_autotools_plan_cross_and_autoreconf(tmp_path: Path) -> None:
    (tmp_path / "configure.ac").write_text("AC_INIT([x],[1])\n")
    cs = get_toolchain("gcc-12").compilers("linux", "armhf", "O2")
    steps = AutotoolsPlanner().plan(tmp_path, cs, tools())
    assert steps[0].argv == ("autoreconf", "-fi")
    assert "--host=arm-linux-gnueabihf" in steps[1].argv
    assert steps[1].env["CHOST"] == "arm-linux-gnueabihf"
    assert steps[1].phase == "configure"


def test_meson_plan_plain_buildtype(tmp_path: Path) -> None:
    (tmp_path / "meson.build").write_text("project('x', 'c')\n")
    cs = get_toolchain("gcc-12").compilers("linux", "x86_64", "Os")
    steps = MesonPlanner().plan(tmp_path, cs, tools())
    assert "--buildtype=plain" in steps[0].argv
    assert "'-Os'" in (tmp_path / "_assemblage_build" / "native.ini").read_text()


def test_plain_planner_links_each_main(tmp_path: Path) -> None:
    (tmp_path / "a.c").write_text("int main(void){return 0;}\n")
    (tmp_path / "b.c").write_text("int main(int c, char**v){return c;}\n")
    (tmp_path / "util.cpp").write_text("int util(){return 1;}\n")
    cs = get_toolchain("gcc-12").compilers("linux", "x86_64", "O2")
    steps = PlainPlanner().plan(tmp_path, cs, tools())
    links = [s for s in steps if s.phase == "link"]
    assert len(links) == 2
    assert all(s.argv[0] == "/build/bin/c++" for s in links)  # C++ present: link with c++
    assert all(any("util" in a for a in s.argv) for s in links)


def test_detection_order(tmp_path: Path) -> None:
    (tmp_path / "main.c").write_text("int main(void){return 0;}")
    assert detect_build_system(tmp_path).name == "plain"
    (tmp_path / "Makefile").write_text("all:\n")
    assert detect_build_system(tmp_path).name == "make"
    (tmp_path / "configure").write_text("#!/bin/sh\n")
    assert detect_build_system(tmp_path).name == "autotools"
    (tmp_path / "CMakeLists.txt").write_text("")
    assert detect_build_system(tmp_path).name == "cmake"


@pytest.mark.parametrize(
    "phase,tail,rc,expected",
    [
        ("build", ["x.c:1:10: fatal error: zlib.h: No such file or directory"], 2, "missing_dependency"),
        ("configure", ["configure: error: C compiler cannot create executables"], 77, "configure_failed"),
        ("configure", ["-- Could NOT find OpenSSL"], 1, "missing_dependency"),
        ("build", ["main.c:(.text+0x5): undefined reference to `foo'"], 2, "link_error"),
        ("build", ["a.c:3:1: error: expected ';'"], 2, "compile_error"),
        ("build", ["cc1: out of memory allocating 123 bytes"], 1, "out_of_memory"),
        ("build", ["make: *** No rule to make target"], 2, "build_failed"),
    ],
)
def test_failure_classes(phase, tail, rc, expected) -> None:
    res = StepResult(step=Step(name="s", argv=("make",), phase=phase), returncode=rc, duration=1, tail=tail)
    status, reason, message = classify_failure(res, Limits())
    assert (status, reason) == ("failed", expected)
    assert message


def test_timeout_class() -> None:
    res = StepResult(step=Step(name="make", argv=("make",)), returncode=-9, duration=5, timed_out=True)
    assert classify_failure(res, Limits(timeout=5))[:2] == ("timed_out", "timeout")


def test_disk_watch_measures_often_only_near_the_limit(tmp_path: Path) -> None:
    from assemblage.builds.runner import DiskWatch

    watch = DiskWatch(tmp_path, 8 * 1024**3, lambda: None)
    try:
        watch.used = 100 * 1024**2  # far below: a build cannot write the rest before the next measure
        assert watch.next_wait(0.001) == DiskWatch.MAX_WAIT
        watch.used = watch.limit - 100 * 1024**2  # close: as often as before
        assert watch.next_wait(0.001) == watch.interval
        watch.used = watch.limit - DiskWatch.WRITE_RATE  # one second of writing to go
        assert watch.next_wait(0.001) == 1.0
        assert watch.next_wait(1.0) == 5.0  # a huge tree: at most a fifth of the time measuring
    finally:
        watch.stop()
    small = DiskWatch(tmp_path, 16 * 1024**2, lambda: None)  # a small disk cap is measured every interval
    small.stop()
    assert small.next_wait(0.001) == small.interval
