"""DWARF, for any container (ELF, PE): units and forms, line programs, and the reader that makes functions of them.

:func:`read_dwarf_sections` takes the section bytes and is the one driver of the reader
(:mod:`.reader`): the ELF analysis merges its symbol table in between, the PE analysis
does not.
"""

from .forms import DwarfError, DwarfSections
from .reader import DwarfResult, UnitSummary, read_dwarf, read_dwarf_sections, sections_from_dwarfinfo

__all__ = [
    "DwarfError",
    "DwarfResult",
    "DwarfSections",
    "UnitSummary",
    "read_dwarf",
    "read_dwarf_sections",
    "sections_from_dwarfinfo",
]
