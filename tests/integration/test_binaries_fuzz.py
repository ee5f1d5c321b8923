"""Hostile input beyond linked ELF (tests/integration/test_labels_fuzz.py): mingw PE files with
DWARF inside, and relocatable ELF objects (.o) from gcc and clang.

Seeds are compiled here from the fixtures. The mutations hit the headers, the
section tables, the ``.debug_*`` sections and, in objects, the relocation
sections that pyelftools applies to the DWARF. The only exception ever raised
is InvalidBinaryError and no analysis runs over its budget (20 s in the
bounded child and in-process).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from assemblage.binaries import analyze_file
from tests.conftest import need
from tests.integration.fuzz_support import Seed, check_bounded, check_in_process, elf_seed, mutated, pe_seed

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parents[1]
ELF_FIXTURES = TESTS / "fixtures" / "elf"
WIN_FIXTURES = TESTS / "fixtures" / "windows"
# about 0.6 s per example in process and 1 s in the bounded child on this machine's seeds
IN_PROCESS = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
BOUNDED = settings(IN_PROCESS, max_examples=30)

_PE: list[Seed] = []
_OBJ: list[Seed] = []


def pe_seeds() -> list[Seed]:
    """mingw gcc 12 with DWARF: a PE32+ (C, -O2) and a PE32 (C++, -O1)."""
    if not _PE:
        need("x86_64-w64-mingw32-gcc", "i686-w64-mingw32-g++")
        with tempfile.TemporaryDirectory() as d:
            for name, cc, srcs, opt in (
                ("mingw-x64-c", "x86_64-w64-mingw32-gcc", sorted((WIN_FIXTURES / "c").glob("*.c")), "-O2"),
                ("mingw-x86-cpp", "i686-w64-mingw32-g++", sorted((WIN_FIXTURES / "cpp").glob("*.cpp")), "-O1"),
            ):
                out = Path(d) / f"{name}.exe"
                subprocess.run([cc, opt, "-g", *map(str, srcs), "-o", str(out)], check=True, capture_output=True)
                _PE.append(pe_seed(name, out.read_bytes()))
    return _PE


def object_seeds() -> list[Seed]:
    """Relocatable objects with DWARF: gcc-12 C (DWARF 5), clang-19 C, clang++-19 C++ (-O1)."""
    if not _OBJ:
        need("gcc-12", "clang-19", "clang++-19")
        with tempfile.TemporaryDirectory() as d:
            for name, cc, src, opt in (
                ("gcc-12-c.o", "gcc-12", "labels.c", "-O2"),
                ("clang-19-c.o", "clang-19", "labels.c", "-O2"),
                ("clang++-19-cpp.o", "clang++-19", "labels.cpp", "-O1"),
            ):
                out = Path(d) / name
                subprocess.run([cc, "-g", opt, "-c", "-o", str(out), str(ELF_FIXTURES / src)], check=True)
                _OBJ.append(elf_seed(name, out.read_bytes(), str(out)))
    return _OBJ


def test_the_seeds_are_what_the_fuzzing_claims():
    """Unmutated, each seed analyses with its DWARF: mingw PEs labelled from DWARF, objects relocatable."""
    with tempfile.TemporaryDirectory() as d:
        for seed in pe_seeds() + object_seeds():
            p = Path(d) / f"{seed.name}{seed.suffix}"
            p.write_bytes(seed.data)
            a = analyze_file(p)
            names = {f.name for f in a.functions if f.label_source in ("dwarf", "both")}
            assert a.has_debug_info and "main" in names, seed.name
            if seed.suffix == ".o":
                assert a.kind == "relocatable", seed.name
            else:
                assert a.format == "pe" and a.extra["dwarf_sections"] is True, seed.name


@BOUNDED
@given(mutated(pe_seeds))
def test_mutated_mingw_pe_in_bounded_child(case):
    check_bounded(case)


@IN_PROCESS
@given(mutated(pe_seeds))
def test_mutated_mingw_pe_in_process_raises_only_invalid_binary(case):
    check_in_process(case)


@BOUNDED
@given(mutated(object_seeds))
def test_mutated_object_in_bounded_child(case):
    check_bounded(case)


@IN_PROCESS
@given(mutated(object_seeds))
def test_mutated_object_in_process_raises_only_invalid_binary(case):
    check_in_process(case)
