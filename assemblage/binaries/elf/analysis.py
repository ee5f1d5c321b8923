"""ELF analysis: the container, DWARF, the symbol table and hashes into one BinaryAnalysis.

``analyze_elf(path)`` never lets a parser error escape: a truncated, corrupt
or hostile file raises :class:`~assemblage.errors.InvalidBinaryError` naming
the file and the problem. Use :func:`assemblage.binaries.analyze_file_bounded`
to also bound time and memory.

Only parser errors are converted: our readers' own ``ElfError`` and
``DwarfError`` (every read they make is bounds-checked), ``struct.error``, an
undecodable name, and the input's numbers exceeding memory, integer or
recursion limits. An ``IndexError``, ``KeyError``, ``AttributeError`` or
``TypeError`` is a bug and propagates (the hostile-input tests then fail).

Relocatable objects (``.o``) need their DWARF relocated before reading; for
them pyelftools applies the relocations and :func:`..dwarf.read_dwarf` reads the
result. Linked binaries take the fast path (our own section reader).
"""

from __future__ import annotations

import hashlib
import os
import struct
from typing import Any

from ...errors import InvalidBinaryError
from .._forked import Forked, WorkerError
from .._thirdparty import raised_inside
from ..demangle import demangle
from ..dwarf import DwarfError, DwarfReader, DwarfResult, DwarfSections, read_dwarf
from ..hashing import FunctionHasher, hash_and_demangle
from ..model import BinaryAnalysis, Function, Section
from ..producer import observed_opt, parse_comment
from .file import MACHINES, SHF_ALLOC, SHF_EXECINSTR, ElfError, ElfFile
from .symbols import function_symbols, merge_symbols

__all__ = ["analyze_elf", "dwarf_sections"]

_KINDS = {1: "relocatable", 2: "executable", 3: "shared", 4: "core"}
# Below these sizes a forked helper (about 3 ms) costs more than it saves.
_PARALLEL_DWARF_BYTES = 512 * 1024
_PARALLEL_FUNCTIONS = 1000


def analyze_elf(path: str | os.PathLike[str], *, lines: bool = True) -> BinaryAnalysis:
    """Analyse one ELF file (see module doc). ``lines=False`` skips the line tables."""
    p = os.fspath(path)
    try:
        with ElfFile(p) as elf:
            return _analyze(elf, p, lines)
    except InvalidBinaryError:
        raise
    except (ElfError, DwarfError) as exc:
        raise InvalidBinaryError(p, str(exc)) from None
    except MemoryError:
        raise InvalidBinaryError(p, "analysis exceeded its memory budget") from None
    except (struct.error, OverflowError, RecursionError, UnicodeDecodeError) as exc:
        raise InvalidBinaryError(p, f"malformed ELF ({type(exc).__name__}: {exc})") from None
    except OSError as exc:
        raise InvalidBinaryError(p, f"cannot read: {exc.strerror or exc}") from None


def _flags(flags: int) -> str:
    return ("W" if flags & 1 else "") + ("A" if flags & SHF_ALLOC else "") + ("X" if flags & SHF_EXECINSTR else "")


def dwarf_sections(elf: ElfFile) -> DwarfSections:
    g = elf.debug_section
    return DwarfSections(
        info=g(".debug_info"),
        abbrev=g(".debug_abbrev"),
        str=g(".debug_str"),
        line_str=g(".debug_line_str"),
        line=g(".debug_line"),
        ranges=g(".debug_ranges"),
        rnglists=g(".debug_rnglists"),
        addr=g(".debug_addr"),
        str_offsets=g(".debug_str_offsets"),
        little_endian=elf.little_endian,
        default_address_size=elf.bits // 8,
    )


def _relocated_dwarf(path: str, lines: bool) -> DwarfResult:
    from elftools.common.exceptions import ELFError as PyElfError
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as fh:
        try:
            info = ELFFile(fh).get_dwarf_info(relocate_dwarf_sections=True)
        except Exception as exc:
            if isinstance(exc, (PyElfError, struct.error)) or raised_inside(exc, "elftools", "construct"):
                raise DwarfError(f"cannot relocate DWARF of a relocatable object ({type(exc).__name__}: {exc})") from None
            raise
        return read_dwarf(info, lines=lines, relocatable=True)


def _hash(hasher: FunctionHasher, functions: list[Function], names: list[str | None]) -> Forked[Any]:
    """Start hashing ``functions`` and demangling ``names`` (in a child when there are many)."""
    return Forked(hash_and_demangle, hasher, [f.ranges for f in functions], names, enabled=len(functions) >= _PARALLEL_FUNCTIONS)


def _apply_hashes(functions: list[Function], job: Forked[Any]) -> None:
    try:
        hashes, demangled = job.result()
    except WorkerError as exc:
        raise ElfError(f"hashing failed: {exc}") from None
    for f, (sha, pic, method), dem in zip(functions, hashes, demangled, strict=True):
        f.sha256, f.pic_hash, f.pic_hash_method = sha, pic, method
        f.demangled = f.demangled or dem


def _analyze(elf: ElfFile, path: str, lines: bool) -> BinaryAnalysis:
    sha = hashlib.sha256(elf.data).hexdigest()
    arch, bits = MACHINES.get(elf.machine, (f"em{elf.machine}", elf.bits))
    kind = _KINDS.get(elf.type, f"type{elf.type}")
    if kind == "shared" and elf.section(".interp") is not None:
        kind = "executable"  # a position-independent executable
    text = elf.section(".text")
    stripped = not any(s.type == 2 for s in elf.sections)
    res = BinaryAnalysis(
        path=path,
        sha256=sha,
        size=elf.size,
        format="elf",
        arch=arch,
        bits=bits,
        kind=kind,
        build_id=elf.build_id(),
        text_sha256=hashlib.sha256(elf.section_bytes(text)).hexdigest() if text is not None else None,
        stripped=stripped,
        sections=[Section(s.name, s.addr, s.size, _flags(s.flags)) for s in elf.sections if s.index],
    )
    code = elf.code_ranges()
    info = elf.section(".debug_info") or elf.section(".zdebug_info")
    res.has_debug_info = info is not None and info.size > 0
    dwarf = DwarfResult()
    reader: DwarfReader | None = None
    hash_job: Forked[Any] | None = None
    try:
        if res.has_debug_info:
            if kind == "relocatable":
                dwarf = _relocated_dwarf(path, lines)
                res.extra["note"] = "relocatable object: addresses are offsets in their own sections and may coincide"
            else:
                sections = dwarf_sections(elf)
                reader = DwarfReader(sections, code_ranges=code, lines=lines, parallel=len(sections.info) >= _PARALLEL_DWARF_BYTES)
                reader.demangle = False  # done by the worker below
                dwarf = reader.functions()
        comment = elf.section(".comment")
        res.producers = list(dwarf.producers) + (parse_comment(elf.section_bytes(comment)) if comment is not None else [])
        res.observed_opt, res.observed_flags = observed_opt([(u.producer, u.functions) for u in dwarf.units])
        # The compiler of the user's code first (the pipeline reads producers[0]), assemblers and .comment after.
        res.producers.sort(key=lambda p: (p.compiler not in ("gcc", "clang"), p.source != "dwarf", p.opt != res.observed_opt))
        lo, hi = elf.image_bounds()
        hasher = FunctionHasher(arch, elf.read_va, lambda v: lo <= v < hi)
        # The DWARF functions are hashed and demangled in a child while this process merges
        # the symbols and reads inlinings and lines; what the merge adds (symtab functions)
        # or names (a linkage name taken from the symbol) is done once it is known.
        early = list(dwarf.functions)
        early_names = [f.linkage_name for f in early]
        hash_job = _hash(hasher, early, early_names)
        by_addr = function_symbols(elf.symbols() or elf.symbols(dynamic=True), thumb=arch == "armhf")
        res.functions, res.disagreements = merge_symbols(dwarf.functions, by_addr, has_dwarf=bool(dwarf.functions),
                                                         code_ranges=code, code_end=hasher.code_end)
        known = {id(f) for f in early}
        late = [f for f in res.functions if id(f) not in known]
        late_job = _hash(hasher, late, [f.linkage_name for f in late])
        try:
            if reader is not None:
                reader.finish(dwarf, [f for f in res.functions if f.label_source != "symtab"])
            res.inlinings = dwarf.inlinings
            _apply_hashes(early, hash_job)
            _apply_hashes(late, late_job)
        finally:
            late_job.cancel()
        for f, name in zip(early, early_names, strict=True):
            if f.linkage_name != name:  # named by the merge
                f.demangled = f.demangled or demangle(f.linkage_name)
    finally:
        if reader is not None:
            reader.close()
        if hash_job is not None:
            hash_job.cancel()
    dyn = elf.symbols(dynamic=True)
    res.imports = sorted({s.name for s in dyn if s.shndx == 0 and s.name})
    res.exports = sorted({s.name for s in dyn if s.shndx != 0 and s.bind in (1, 2) and s.name})
    res.extra["dwarf_discarded_subprograms"] = dwarf.discarded
    res.extra["dwarf_units"] = len(dwarf.units)
    res.extra["pic_hash_method"] = hasher.method
    res.extra["line_rows"] = len(dwarf.lines)
    if dwarf.problems:
        res.extra["problems"] = dwarf.problems[:20]
    return res
