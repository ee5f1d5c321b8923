"""DWARF inside a PE (mingw gcc), handed to the project's one DWARF reader.

mingw's ld keeps ``.debug_*`` sections in the image under long names that the
section table can only hold as ``/N`` (an offset into the COFF string table);
:func:`assemblage.binaries.pe._string_table_name` resolves them. Here we wrap
those sections into a pyelftools ``DWARFInfo`` and call
:mod:`assemblage.binaries.dwarf` (the same code that reads ELF), then move its
virtual addresses to RVAs (DWARF in a PE states ``ImageBase + RVA``).

For the ``.pdata`` check, code outside every compilation unit's address
ranges is code linked in without debug info.
"""

from __future__ import annotations

import io
import re
from dataclasses import replace
from typing import TYPE_CHECKING

from elftools.dwarf.dwarfinfo import DebugSectionDescriptor, DWARFInfo, DwarfConfig

from assemblage.binaries._thirdparty import raised_inside
from assemblage.binaries.model import BinaryAnalysis, Function, LineRow, Range
from assemblage.errors import InvalidBinaryError

if TYPE_CHECKING:
    import pefile

    from assemblage.binaries.pe import ImageReader

__all__ = ["RUNTIME_UNIT", "dwarf_info_from_pe", "fill_from_dwarf"]

# Units of the toolchain's own runtime that mingw links into every image with
# their DWARF (Debian builds them at -O2): not evidence of the project's flags,
# so the observed optimisation level is read from the other units.
RUNTIME_UNIT = re.compile(r"(^|/)(mingw-w64-crt|mingw-w64-libraries|libgcc|libstdc\+\+-v3|winpthreads)/")

_ARGS = (
    "debug_info", "debug_aranges", "debug_abbrev", "debug_frame", "eh_frame", "debug_str", "debug_loc",
    "debug_ranges", "debug_line", "debug_pubtypes", "debug_pubnames", "debug_addr", "debug_str_offsets",
    "debug_line_str", "debug_loclists", "debug_rnglists", "debug_sup", "gnu_debugaltlink", "debug_types",
)


def _section_bytes(pe: pefile.PE, data: bytes) -> dict[str, tuple[bytes, int]]:
    from assemblage.binaries.pe import _string_table_name

    out = {}
    for s in pe.sections:
        name = _string_table_name(pe, data, s.Name)
        if not name.startswith(".debug_"):
            continue
        size = min(s.Misc_VirtualSize or s.SizeOfRawData, s.SizeOfRawData)
        start = s.PointerToRawData
        out[name] = (data[start : start + size], s.VirtualAddress)
    return out


def dwarf_info_from_pe(pe: pefile.PE, data: bytes) -> DWARFInfo | None:
    """A pyelftools ``DWARFInfo`` over the PE's ``.debug_*`` sections, or None without ``.debug_info``."""
    secs = _section_bytes(pe, data)
    if ".debug_info" not in secs:
        return None
    is64 = pe.FILE_HEADER.Machine == 0x8664
    config = DwarfConfig(little_endian=True, machine_arch="x64" if is64 else "x86", default_address_size=8 if is64 else 4)
    kwargs = {}
    for arg in _ARGS:
        hit = secs.get("." + arg)
        kwargs[f"{arg}_sec"] = (
            DebugSectionDescriptor(io.BytesIO(hit[0]), "." + arg, 0, len(hit[0]), hit[1]) if hit else None
        )
    return DWARFInfo(config=config, **kwargs)


def _rebase(f: Function, base: int) -> Function:
    f.start -= base
    f.end -= base
    if f.entry is not None:  # was left a VA while start/end became RVAs (found by the fuzz invariant)
        f.entry -= base
    f.ranges = [Range(r.start - base, r.end - base) for r in f.ranges]
    f.lines = [LineRow(r.address - base, r.length, r.source_file, r.line) for r in f.lines]
    f.label_source = "dwarf"
    return f


def fill_from_dwarf(out: BinaryAnalysis, pe: pefile.PE, data: bytes, image: ImageReader, *,
                    lines: bool = True) -> bool:
    """Fill functions/lines/inlinings/producers from DWARF in the PE. False when there is none."""
    info = dwarf_info_from_pe(pe, data)
    out.extra["dwarf_sections"] = info is not None
    if info is None:
        return False
    from assemblage.binaries.dwarf import DwarfError, read_dwarf
    from assemblage.binaries.producer import observed_opt

    base = pe.OPTIONAL_HEADER.ImageBase
    code = [(base + s.address, base + s.address + s.size) for s in out.sections if "x" in s.flags]
    try:
        result = read_dwarf(info, text_reader=lambda lo, hi: image.read(lo - base, hi - base),
                            code_ranges=code, arch=out.arch, is_address=image.is_va, lines=lines)
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
    out.extra["_no_debug_info"] = _outside_units(info, base)
    return True


def _unit_ranges(info: DWARFInfo) -> list[tuple[int, int]]:
    """Address ranges covered by compilation units (``.debug_aranges``, else each unit's top DIE)."""
    out: list[tuple[int, int]] = []
    aranges = info.get_aranges() if info.debug_aranges_sec is not None else None
    if aranges is not None:
        for e in aranges.entries:
            if e.length:
                out.append((e.begin_addr, e.begin_addr + e.length))
        return sorted(out)
    range_lists = None
    for cu in info.iter_CUs():
        top = cu.get_top_DIE()
        attrs = top.attributes
        if "DW_AT_low_pc" in attrs and "DW_AT_high_pc" in attrs:
            lo = attrs["DW_AT_low_pc"].value
            hi = attrs["DW_AT_high_pc"]
            end = hi.value if hi.form == "DW_FORM_addr" else lo + hi.value
            out.append((lo, end))
        elif "DW_AT_ranges" in attrs:
            range_lists = range_lists or info.range_lists()
            base = attrs["DW_AT_low_pc"].value if "DW_AT_low_pc" in attrs else 0
            for r in range_lists.get_range_list_at_offset(attrs["DW_AT_ranges"].value, cu=cu):
                if hasattr(r, "begin_offset"):
                    out.append((base + r.begin_offset, base + r.end_offset))
    return sorted(out)


def _outside_units(info: DWARFInfo, image_base: int):
    """A predicate: is this RVA outside every compilation unit (code without debug info)?"""
    from bisect import bisect_right

    try:
        ranges = [(lo - image_base, hi - image_base) for lo, hi in _unit_ranges(info)]
    except Exception as exc:  # pyelftools raises assorted errors on odd DWARF; then nothing is explained
        if not raised_inside(exc, "elftools", "construct"):
            raise  # ours: a bug
        return lambda rva: False
    starts = [lo for lo, _ in ranges]

    def outside(rva: int) -> bool:
        i = bisect_right(starts, rva) - 1
        return not any(ranges[j][0] <= rva < ranges[j][1] for j in range(max(0, i - 8), i + 1))

    return outside
