"""Which reader a file needs, from its magic bytes: ``sniff`` and ``analyze_file``."""

from __future__ import annotations

import importlib
import os
from typing import Literal

from ..errors import InvalidBinaryError
from ._gc import paused_gc
from .model import BinaryAnalysis

__all__ = ["PDB_MAGIC", "analyze_file", "sniff"]

PDB_MAGIC = b"Microsoft C/C++ MSF 7.00\r\n\x1aDS\x00\x00\x00"


def sniff(path: str | os.PathLike[str]) -> Literal["elf", "pe", "pdb"] | None:
    """The format of a file from its magic bytes, or None (also for unreadable files)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
            if head[:4] == b"\x7fELF":
                return "elf"
            if head[: len(PDB_MAGIC)] == PDB_MAGIC:
                return "pdb"
            if head[:2] == b"MZ" and len(head) >= 64:
                pe_off = int.from_bytes(head[60:64], "little")
                fh.seek(pe_off)
                if fh.read(4) == b"PE\0\0":
                    return "pe"
    except OSError:
        return None
    return None


def analyze_file(path: str | os.PathLike[str], *, pdb: str | os.PathLike[str] | None = None, lines: bool = True) -> BinaryAnalysis:
    """Analyse one binary, dispatching on its format. Raises InvalidBinaryError."""
    p = os.fspath(path)
    with paused_gc():  # see ._gc: the collector would only rescan what the analysis keeps
        return _analyze_file(p, pdb, lines)


def _analyze_file(p: str, pdb: str | os.PathLike[str] | None, lines: bool) -> BinaryAnalysis:
    kind = sniff(p)
    if kind == "elf":
        from .elf.analysis import analyze_elf

        return analyze_elf(p, lines=lines)
    if kind == "pe":
        try:
            pe = importlib.import_module("assemblage.binaries.pe.analysis")
        except ModuleNotFoundError as exc:
            if exc.name in ("assemblage.binaries.pe", "assemblage.binaries.pe.analysis"):
                raise InvalidBinaryError(p, "PE analysis is not available") from None
            raise
        return pe.analyze_pe(p, pdb=pdb)
    if kind == "pdb":
        raise InvalidBinaryError(p, "a PDB alone is not analysed; pass it with --pdb next to its PE")
    if not os.path.exists(p):
        raise InvalidBinaryError(p, "no such file")
    raise InvalidBinaryError(p, "not an ELF or PE file (unknown magic bytes)")
