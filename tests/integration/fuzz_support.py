"""What the hostile-input fuzz tests share: seeds with their structural regions, a mutation
strategy aimed at them, and the two checks (in a bounded child, and in-process).

The rule they enforce: analysing any file raises nothing but
:class:`~assemblage.errors.InvalidBinaryError` (a bug in our code is another
exception type and fails the test with its traceback), and no analysis runs
over its budget.
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import strategies as st

from assemblage.binaries import BinaryAnalysis, analyze_file, analyze_file_bounded
from assemblage.errors import InvalidBinaryError

# Outcomes of the bounded child that mean "over budget" or "a bug", never "a bad file".
OVER_BUDGET = ("time budget", "crashed", "unexpectedly", "killed", "memory budget", "without a result")
EXTREMES = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 0xFFFFFFF0, 2**63 - 1, 2**64 - 1]
BUDGET_S = 20


@dataclass(frozen=True)
class Seed:
    """A real binary and the byte ranges where its structure lives (headers, tables, debug sections)."""

    name: str
    data: bytes
    regions: tuple[tuple[int, int], ...]
    suffix: str = ""


def elf_seed(name: str, data: bytes, path: str) -> Seed:
    """ELF header, section table, and every .debug*, .rela*, .symtab and .strtab section."""
    from assemblage.binaries.elf.file import ElfFile

    with ElfFile(path) as elf:
        regions = [(0, 64), (elf.shoff, elf.shoff + elf.shnum * elf.shentsize)]
        regions += [
            (s.offset, s.offset + s.size)
            for s in elf.sections
            if s.size and s.name.startswith((".debug", ".rela", ".symtab", ".strtab"))
        ]
    return Seed(name, data, tuple(regions), ".o" if path.endswith(".o") else "")


def pe_seed(name: str, data: bytes) -> Seed:
    """The headers and section table (first KiB) and every .debug_* section (long names resolved)."""
    import pefile

    from assemblage.binaries.pe.image import string_table_name

    pe = pefile.PE(data=data, fast_load=True)
    regions = [(0, 1024)]
    for s in pe.sections:
        if string_table_name(pe, data, s.Name).startswith(".debug_"):
            regions.append((s.PointerToRawData, s.PointerToRawData + s.SizeOfRawData))
    assert len(regions) > 4, f"{name}: no DWARF sections found to mutate"
    return Seed(name, data, tuple(regions), ".exe")


@dataclass(frozen=True)
class Case:
    """One mutated file: its seed, its bytes and the edits (what a failing example prints)."""

    seed: Seed
    data: bytes
    edits: tuple[str, ...]

    def __repr__(self) -> str:
        return f"Case({self.seed.name}: {'; '.join(self.edits)})"


def mutated(seeds: Callable[[], list[Seed]]) -> st.SearchStrategy[Case]:
    """A seed (from ``seeds()``, called at the first draw: the seeds are compiled then, not at
    collection) and 1-6 edits of it: bytes, extreme field values, zeroed runs, a truncation;
    mostly inside the structural regions (the first region, the header, a third as often)."""

    @st.composite
    def build(draw: st.DrawFn) -> Case:
        seed = draw(st.sampled_from(seeds()))
        regions = list(seed.regions[1:]) * 3 + list(seed.regions[:1])
        buf = bytearray(seed.data)
        edits = []
        for _ in range(draw(st.integers(1, 6))):
            lo, hi = draw(st.sampled_from([(0, len(buf)), *regions]))
            hi = max(lo + 1, min(hi, len(buf)))
            if lo >= len(buf):
                continue
            at = draw(st.integers(lo, hi - 1))
            kind = draw(st.sampled_from(["byte"] * 8 + ["field"] * 8 + ["zero-run"] * 3 + ["truncate"]))
            if kind == "byte":
                buf[at] = draw(st.integers(0, 255))
                edits.append(f"[{at:#x}]={buf[at]:#x}")
            elif kind == "field":
                width = draw(st.sampled_from([1, 2, 4, 8]))
                value = draw(st.sampled_from(EXTREMES)) & ((1 << (8 * width)) - 1)
                buf[at : at + width] = value.to_bytes(width, "little")
                edits.append(f"u{8 * width}[{at:#x}]={value:#x}")
            elif kind == "zero-run":
                n = draw(st.integers(1, 64))
                buf[at : at + n] = bytes(min(n, len(buf) - at))
                edits.append(f"zero [{at:#x}, +{n})")
            else:
                del buf[at:]
                edits.append(f"truncate at {at:#x}")
        return Case(seed, bytes(buf), tuple(edits))

    return build()


def _write(data: bytes, suffix: str) -> str:
    fd, name = tempfile.mkstemp(prefix="fuzz-", suffix=suffix)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return name


def check_bounded(case: Case) -> None:
    """In a bounded child: a result, or an InvalidBinaryError that is about the file (not over budget, not a bug)."""
    seed = case.seed
    name = _write(case.data, seed.suffix)
    try:
        try:
            res = analyze_file_bounded(name, timeout=BUDGET_S, memory=1024**3)
        except InvalidBinaryError as exc:
            assert exc.path == name
            assert not any(word in exc.problem for word in OVER_BUDGET), f"{seed.name}: {exc.problem}"
        else:
            assert isinstance(res, BinaryAnalysis)
            for f in res.functions:  # the entry inside the function (a PE's DWARF entry was once left a VA)
                assert f.start <= (f.entry if f.entry is not None else f.start) <= max(f.end, f.start), (
                    seed.name,
                    f.name,
                    f.start,
                    f.end,
                    f.entry,
                )
    finally:
        os.unlink(name)


class OverBudget(Exception):
    """The in-process analysis ran past BUDGET_S seconds."""


def check_in_process(case: Case) -> None:
    """In this process: nothing but InvalidBinaryError escapes (any other type fails with its traceback)."""
    seed, data = case.seed, case.data

    def alarm(*_: object) -> None:
        raise OverBudget(f"{seed.name}: analysis ran over {BUDGET_S} s")

    name = _write(data, seed.suffix)
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(BUDGET_S)
    try:
        try:
            analyze_file(name)
        except InvalidBinaryError as exc:
            assert exc.path == name
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        os.unlink(name)
