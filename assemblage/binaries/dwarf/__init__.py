"""DWARF, for any container (ELF, PE): units and forms, line programs, and the reader that makes functions of them.

:func:`read_dwarf_sections` takes the section bytes; :class:`DwarfReader` is the same work
in steps (``functions()``, then ``finish()``). See :mod:`.reader`.
"""

from .forms import DwarfError, DwarfSections
from .reader import DwarfReader, DwarfResult, UnitSummary, read_dwarf, read_dwarf_sections, sections_from_dwarfinfo

__all__ = ["DwarfError", "DwarfReader", "DwarfResult", "DwarfSections", "UnitSummary", "read_dwarf", "read_dwarf_sections",
           "sections_from_dwarfinfo"]
