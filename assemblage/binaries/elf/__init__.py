"""ELF: the container (:mod:`.file`), its symbol table (:mod:`.symbols`) and the analysis (:mod:`.analysis`)."""

from .analysis import analyze_elf, dwarf_sections
from .file import MACHINES, ElfError, ElfFile, ElfSection, ElfSymbol

__all__ = ["MACHINES", "ElfError", "ElfFile", "ElfSection", "ElfSymbol", "analyze_elf", "dwarf_sections"]
