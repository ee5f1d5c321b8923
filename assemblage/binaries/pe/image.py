"""The PE image as the analysis reads it: bytes by RVA, and section names from the COFF string table."""

from __future__ import annotations

from bisect import bisect_right

import pefile

__all__ = ["ImageReader", "debug_sections", "string_table_name"]


class ImageReader:
    """Reads the mapped image by RVA from the file's section data (fast slices, no pefile lookups)."""

    def __init__(self, pe: pefile.PE, data: bytes) -> None:
        self._data = data
        self.base = pe.OPTIONAL_HEADER.ImageBase
        self.size = pe.OPTIONAL_HEADER.SizeOfImage
        spans = []
        for s in pe.sections:
            raw = min(s.SizeOfRawData, s.Misc_VirtualSize or s.SizeOfRawData)
            spans.append((s.VirtualAddress, s.VirtualAddress + raw, s.PointerToRawData))
        spans.sort()
        self._spans = spans
        self._starts = [s for s, _, _ in spans]

    def read(self, start: int, end: int) -> bytes | None:
        """Bytes at RVAs [start, end), or None when they are not all in the file."""
        i = bisect_right(self._starts, start) - 1
        if i < 0 or end < start:
            return None
        lo, hi, raw = self._spans[i]
        if end > hi:
            return None
        chunk = self._data[raw + start - lo : raw + end - lo]
        return chunk if len(chunk) == end - start else None

    def is_va(self, v: int) -> bool:
        return self.base <= v < self.base + self.size


def string_table_name(pe: pefile.PE, data: bytes, raw: bytes) -> str:
    """Resolve a ``/123`` long section name through the COFF string table."""
    name = raw.rstrip(b"\x00").decode("latin-1")
    digits = name[1:]
    if not name.startswith("/") or not (digits.isascii() and digits.isdigit()):  # "/3\xb9" is no offset
        return name
    fh = pe.FILE_HEADER
    table = fh.PointerToSymbolTable + fh.NumberOfSymbols * 18
    at = table + int(name[1:])
    if fh.PointerToSymbolTable == 0 or at >= len(data):
        return name
    end = data.find(b"\x00", at, at + 256)
    return data[at : end if end > 0 else at + 256].decode("utf-8", "replace")


def debug_sections(pe: pefile.PE, data: bytes) -> dict[str, tuple[bytes, int]]:
    """The ``.debug_*`` sections (mingw keeps them under ``/N`` names): name -> (bytes, RVA)."""
    out = {}
    for s in pe.sections:
        name = string_table_name(pe, data, s.Name)
        if not name.startswith(".debug_"):
            continue
        size = min(s.Misc_VirtualSize or s.SizeOfRawData, s.SizeOfRawData)
        start = s.PointerToRawData
        out[name] = (data[start : start + size], s.VirtualAddress)
    return out
