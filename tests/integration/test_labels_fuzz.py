"""Mutated ELF files: the only failure is InvalidBinaryError, never a crash, hang or blow-up.

Seeds are real binaries compiled from the fixtures (gcc C, clang C++ with
DWARF 5 string/address indexes). Mutations hit the ELF header, the section
header table and the DWARF sections more often than the rest
(tests/integration/fuzz_support.py; PE and relocatable objects:
tests/integration/test_binaries_fuzz.py).
"""

from __future__ import annotations

import struct
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from assemblage.binaries import analyze_file
from assemblage.errors import InvalidBinaryError
from tests.conftest import need
from tests.integration.fuzz_support import Seed, check_bounded, check_in_process, elf_seed, mutated

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "elf"

_SEEDS: list[Seed] = []


def seeds() -> list[Seed]:
    if not _SEEDS:
        need("gcc-12", "clang++-19")
        with tempfile.TemporaryDirectory() as d:
            for cc, srcs, extra in (
                ("gcc-12", ["labels.c"], []),
                ("clang++-19", ["labels.cpp", "second.cpp"], ["-gdwarf-5"]),
            ):
                exe = Path(d) / cc
                subprocess.run(
                    [cc, "-g", "-O2", *extra, "-o", str(exe), *(str(FIXTURES / s) for s in srcs)], check=True
                )
                _SEEDS.append(elf_seed(cc, exe.read_bytes(), str(exe)))
    return _SEEDS


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated(seeds))
def test_mutated_elf_in_bounded_child(case):
    check_bounded(case)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated(seeds))
def test_mutated_elf_in_process_raises_only_invalid_binary(case):
    """No exception type other than InvalidBinaryError escapes (with a traceback if one does)."""
    check_in_process(case)


def test_hostile_section_header_is_named(tmp_path):
    data = bytearray(seeds()[0].data)
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    struct.pack_into("<Q", data, shoff + 64 * 5 + 0x20, 2**62)  # section 5's sh_size
    p = tmp_path / "hostile"
    p.write_bytes(bytes(data))
    with pytest.raises(InvalidBinaryError, match="runs past the end of the file"):
        analyze_file(p)
