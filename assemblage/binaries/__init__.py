"""Binary analysis: ground-truth labels from ELF (DWARF + symbols), PE and PDB.

Public surface::

    sniff(path) -> "elf" | "pe" | "pdb" | None      # magic bytes only
    analyze_file(path, *, pdb=None, lines=True) -> BinaryAnalysis
    analyze_file_bounded(path, *, pdb=None, timeout=60.0, memory=2 GiB) -> BinaryAnalysis
    strip_file_bounded(tool, path, out, *, timeout=60.0, memory=2 GiB)  # a stripped copy, same limits

plus the data model (:mod:`.model`). The formats have a subpackage each
(:mod:`.elf`, :mod:`.pe`, :mod:`.pdb`), and so has the DWARF reader they share
(:mod:`.dwarf`); hashing, demangling, the producers and verification stand
beside them. Every failure to analyse a file is an
:class:`~assemblage.errors.InvalidBinaryError`.
"""

from .bounded import analyze_file_bounded, strip_file_bounded
from .dispatch import analyze_file, sniff
from .model import BinaryAnalysis, Disagreement, Function, Inlining, LineRow, Producer, Range, Section

__all__ = [
    "BinaryAnalysis",
    "Disagreement",
    "Function",
    "Inlining",
    "LineRow",
    "Producer",
    "Range",
    "Section",
    "analyze_file",
    "analyze_file_bounded",
    "sniff",
    "strip_file_bounded",
]
