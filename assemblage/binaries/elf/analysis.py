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
them pyelftools applies the relocations; linked binaries take the fast path
(our own section reader). Either way :func:`..dwarf.read_dwarf_sections`, the one
DWARF driver, reads the sections, with the symbol table merged in between.
"""

from __future__ import annotations

import hashlib
import os
import struct

from ...errors import InvalidBinaryError
from .._thirdparty import raised_inside
from ..dwarf import DwarfError, DwarfSections, read_dwarf_sections, sections_from_dwarfinfo
from ..hashing import FunctionHasher
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
    """The ELF's DWARF section bytes (decompressed; ``.zdebug_*`` too)."""
    return DwarfSections.of(
        lambda name: elf.debug_section(f".debug_{name}"), little_endian=elf.little_endian, address_size=elf.bits // 8
    )


def _relocated_sections(path: str) -> DwarfSections:
    """The DWARF of a relocatable object with its relocations applied (by pyelftools)."""
    from elftools.common.exceptions import ELFError as PyElfError
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as fh:
        try:
            info = ELFFile(fh).get_dwarf_info(relocate_dwarf_sections=True)
        except Exception as exc:
            if isinstance(exc, (PyElfError, struct.error)) or raised_inside(exc, "elftools", "construct"):
                raise DwarfError(
                    f"cannot relocate DWARF of a relocatable object ({type(exc).__name__}: {exc})"
                ) from None
            raise
        return sections_from_dwarfinfo(info)


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
    relocatable = kind == "relocatable"
    if not res.has_debug_info:
        sections = DwarfSections()
    elif relocatable:
        sections = _relocated_sections(path)
        res.extra["note"] = "relocatable object: addresses are offsets in their own sections and may coincide"
    else:
        sections = dwarf_sections(elf)
    lo, hi = elf.image_bounds()
    hasher = FunctionHasher(arch, elf.read_va, lambda v: lo <= v < hi)
    by_addr = function_symbols(elf.symbols() or elf.symbols(dynamic=True), thumb=arch == "armhf")

    def merge(functions: list[Function]) -> list[Function]:
        merged, res.disagreements = merge_symbols(
            functions, by_addr, has_dwarf=bool(functions), code_ranges=code, code_end=hasher.code_end
        )
        return merged

    # The DWARF functions are hashed and demangled in a child while this process merges
    # the symbols and reads inlinings and lines (see read_dwarf_sections).
    dwarf = read_dwarf_sections(
        sections,
        code_ranges=None if relocatable else code,
        lines=lines,
        relocatable=relocatable,
        parallel=len(sections.info) >= _PARALLEL_DWARF_BYTES,
        hasher=hasher,
        hash_in_child_from=_PARALLEL_FUNCTIONS,
        merge=merge,
    )
    comment = elf.section(".comment")
    res.producers = list(dwarf.producers) + (parse_comment(elf.section_bytes(comment)) if comment is not None else [])
    res.observed_opt, res.observed_flags = observed_opt([(u.producer, u.functions) for u in dwarf.units])
    # The compiler of the user's code first (the pipeline reads producers[0]), assemblers and .comment after.
    res.producers.sort(
        key=lambda p: (p.compiler not in ("gcc", "clang"), p.source != "dwarf", p.opt != res.observed_opt)
    )
    res.functions = dwarf.functions
    res.inlinings = dwarf.inlinings
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
