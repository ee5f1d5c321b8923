"""DWARF inside a PE (mingw gcc), read by the project's one DWARF reader.

mingw's ld keeps ``.debug_*`` sections in the image under long names that the
section table can only hold as ``/N`` (an offset into the COFF string table);
:func:`.image.string_table_name` resolves them. Their bytes go straight to
:func:`assemblage.binaries.dwarf.read_dwarf_sections` (the same code that reads
ELF), whose virtual addresses are then moved to RVAs (DWARF in a PE states
``ImageBase + RVA``).

For the ``.pdata`` check, code outside every compilation unit's address
ranges (as the reader found them on each unit's root DIE) is code linked in
without debug info.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import replace

import pefile

from ...errors import InvalidBinaryError
from ..dwarf import DwarfError, DwarfSections, UnitSummary, read_dwarf_sections
from ..model import BinaryAnalysis, Function, LineRow, Range
from ..producer import observed_opt
from .image import ImageReader, debug_sections

__all__ = ["RUNTIME_UNIT", "dwarf_sections", "fill_from_dwarf"]

# Units of the toolchain's own runtime that mingw links into every image with
# their DWARF (Debian builds them at -O2): not evidence of the project's flags,
# so the observed optimisation level is read from the other units.
RUNTIME_UNIT = re.compile(r"(^|/)(mingw-w64-crt|mingw-w64-libraries|libgcc|libstdc\+\+-v3|winpthreads)/")


def dwarf_sections(pe: pefile.PE, data: bytes) -> DwarfSections | None:
    """The PE's DWARF section bytes, or None without ``.debug_info``."""
    secs = debug_sections(pe, data)
    if ".debug_info" not in secs:
        return None
    is64 = pe.FILE_HEADER.Machine == 0x8664
    return DwarfSections.of(
        lambda name: secs.get(f".debug_{name}", (b"", 0))[0], little_endian=True, address_size=8 if is64 else 4
    )


def _rebase(f: Function, base: int) -> Function:
    f.start -= base
    f.end -= base
    if f.entry is not None:  # was left a VA while start/end became RVAs (found by the fuzz invariant)
        f.entry -= base
    f.ranges = [Range(r.start - base, r.end - base) for r in f.ranges]
    f.lines = [LineRow(r.address - base, r.length, r.source_file, r.line) for r in f.lines]
    f.label_source = "dwarf"
    return f


def fill_from_dwarf(
    out: BinaryAnalysis, pe: pefile.PE, data: bytes, image: ImageReader, *, lines: bool = True
) -> Callable[[int], bool] | None:
    """Fill functions/lines/inlinings/producers from DWARF in the PE. None when there is none.

    Returns whether an RVA lies outside every compilation unit (code linked in without debug info).
    """
    sections = dwarf_sections(pe, data)
    out.extra["dwarf_sections"] = sections is not None
    if sections is None:
        return None
    base = pe.OPTIONAL_HEADER.ImageBase
    code = [(base + s.address, base + s.address + s.size) for s in out.sections if "x" in s.flags]
    try:
        result = read_dwarf_sections(
            sections,
            text_reader=lambda lo, hi: image.read(lo - base, hi - base),
            code_ranges=code,
            arch=out.arch,
            is_address=image.is_va,
            lines=lines,
        )
    except DwarfError as exc:
        raise InvalidBinaryError(out.path, f"corrupt DWARF in PE: {exc}") from None
    out.functions = [_rebase(f, base) for f in result.functions]
    out.inlinings = [
        replace(i, ranges=tuple(Range(r.start - base, r.end - base) for r in i.ranges)) for i in result.inlinings
    ]
    out.producers = list(result.producers)
    own = [u for u in result.units if not (u.name and RUNTIME_UNIT.search(u.name))]
    out.observed_opt, out.observed_flags = observed_opt([(u.producer, u.functions) for u in own or result.units])
    out.extra["dwarf"] = {"units": len(result.units), "discarded": result.discarded}
    return _outside_units(result.units, base)


def _outside_units(units: Sequence[UnitSummary], image_base: int) -> Callable[[int], bool]:
    """A predicate: is this RVA outside every compilation unit (code without debug info)?"""
    ranges = sorted((r.start - image_base, r.end - image_base) for u in units for r in u.ranges)
    starts = [lo for lo, _ in ranges]

    def outside(rva: int) -> bool:
        i = bisect_right(starts, rva) - 1
        return not any(ranges[j][0] <= rva < ranges[j][1] for j in range(max(0, i - 8), i + 1))

    return outside
