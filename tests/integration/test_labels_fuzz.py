"""Mutated ELF files: the only failure is InvalidBinaryError, never a crash, hang or blow-up.

Seeds are real binaries compiled from the fixtures (gcc C, clang C++ with
DWARF 5 string/address indexes). Mutations hit the ELF header, the section
header table and the DWARF sections more often than the rest.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assemblage.binaries import BinaryAnalysis, analyze_file, analyze_file_bounded
from assemblage.binaries.elf_file import ElfFile
from assemblage.errors import InvalidBinaryError
from tests.conftest import need

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "elf"
OVER_BUDGET = ("time budget", "crashed", "unexpectedly", "killed", "memory budget", "without a result")


def _build(out: Path) -> list[tuple[bytes, list[tuple[int, int]]]]:
    seeds = []
    for cc, srcs, extra in (("gcc-12", ["labels.c"], []), ("clang++-19", ["labels.cpp", "second.cpp"], ["-gdwarf-5"])):
        exe = out / cc
        subprocess.run([cc, "-g", "-O2", *extra, "-o", str(exe), *(str(FIXTURES / s) for s in srcs)], check=True)
        with ElfFile(exe) as elf:
            regions = [(0, 64), (elf.shoff, elf.shoff + elf.shnum * elf.shentsize)]
            regions += [(s.offset, s.offset + s.size) for s in elf.sections if s.name.startswith(".debug") or s.name in (".symtab", ".strtab", ".text")]
        seeds.append((exe.read_bytes(), regions))
    return seeds


_SEEDS: list[tuple[bytes, list[tuple[int, int]]]] | None = None


def seeds() -> list[tuple[bytes, list[tuple[int, int]]]]:
    global _SEEDS
    need("gcc-12", "clang++-19")
    if _SEEDS is None:
        with tempfile.TemporaryDirectory() as d:
            _SEEDS = _build(Path(d))
    return _SEEDS


EXTREMES = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 0xFFFFFFF0, 2**63 - 1, 2**64 - 1]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data, regions = draw(st.sampled_from(seeds()))
    regions = regions[1:] * 3 + regions[:1]  # mostly inside sections and the section table
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        lo, hi = draw(st.sampled_from([(0, len(buf)), *regions]))
        hi = max(lo + 1, min(hi, len(buf)))
        if lo >= len(buf):
            continue
        at = draw(st.integers(lo, hi - 1))
        kind = draw(st.sampled_from(["byte"] * 8 + ["field"] * 8 + ["zero-run"] * 3 + ["truncate"]))
        if kind == "byte":
            buf[at] = draw(st.integers(0, 255))
        elif kind == "field":
            width = draw(st.sampled_from([1, 2, 4, 8]))
            value = draw(st.sampled_from(EXTREMES)) & ((1 << (8 * width)) - 1)
            buf[at : at + width] = value.to_bytes(width, "little")
        elif kind == "zero-run":
            n = draw(st.integers(1, 64))
            buf[at : at + n] = bytes(min(n, len(buf) - at))
        else:
            del buf[at:]
    return bytes(buf)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated())
def test_mutated_elf_in_bounded_child(data):
    fd, name = tempfile.mkstemp(prefix="fuzz-")
    try:
        os.write(fd, data)
        os.close(fd)
        try:
            res = analyze_file_bounded(name, timeout=20, memory=1024**3)
        except InvalidBinaryError as exc:
            assert exc.path == name
            assert not any(word in exc.problem for word in OVER_BUDGET), exc.problem
        else:
            assert isinstance(res, BinaryAnalysis)
            for f in res.functions:
                assert f.start <= (f.entry if f.entry is not None else f.start) <= max(f.end, f.start)
    finally:
        os.unlink(name)


class _Hang(Exception):
    pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated())
def test_mutated_elf_in_process_raises_only_invalid_binary(data):
    """No exception type other than InvalidBinaryError escapes (with a traceback if one does)."""

    def alarm(*_):
        raise _Hang

    fd, name = tempfile.mkstemp(prefix="fuzz-")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(20)
    try:
        os.write(fd, data)
        os.close(fd)
        try:
            analyze_file(name)
        except InvalidBinaryError:
            pass
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        os.unlink(name)


def test_hostile_section_header_is_named(tmp_path):
    data = bytearray(seeds()[0][0])
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    struct.pack_into("<Q", data, shoff + 64 * 5 + 0x20, 2**62)  # section 5's sh_size
    p = tmp_path / "hostile"
    p.write_bytes(bytes(data))
    with pytest.raises(InvalidBinaryError, match="runs past the end of the file"):
        analyze_file(p)
