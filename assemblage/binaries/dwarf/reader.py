"""Functions, inlinings, producers and line rows from DWARF, for any container.

Public entry points::

    read_dwarf(dwarfinfo, *, text_reader=None, code_ranges=None, arch=None,
               is_address=None, lines=True, parallel=True,
               relocatable=False) -> DwarfResult
    read_dwarf_sections(sections: DwarfSections, *, <same keywords>) -> DwarfResult

    DwarfResult(functions: list[Function], inlinings: list[Inlining],
                producers: list[Producer], lines: list[LineRow],
                units: list[UnitSummary], discarded: int, problems: list[str])

Addresses are those of the DWARF (virtual addresses; a PE caller rebases).
Raises :class:`DwarfError` (a ``ValueError``) on malformed DWARF; callers
turn it into ``InvalidBinaryError`` with their file name. ``DwarfReader`` is
the work in steps (``functions()`` then ``finish()``); ``read_dwarf_sections``
is its one driver, for ELF (which merges its symbols in between, ``merge``)
and PE alike.

``read_dwarf_sections`` takes the section bytes (an ELF's, a mingw PE's) and
reads them with our own fast walker (:mod:`.units`, :mod:`.lines`);
``read_dwarf`` takes a pyelftools ``DWARFInfo`` instead, for the one case that
needs pyelftools: a relocatable object whose DWARF it relocated.

Keywords:

* ``text_reader(start, end) -> bytes | None``: reads code at addresses; when
  given, every function gets ``sha256``/``pic_hash``.
* ``arch``: ``"x86_64"``, ``"i686"``, ``"aarch64"``, ... (selects the
  position-independent hash; others get the raw hash).
* ``code_ranges``: the address ranges of executable sections; a subprogram
  whose ranges all lie outside them is discarded code (see below).
* ``is_address(v)``: whether a number is an address in the image (pic hash).
* ``lines``: run the line programs and attach rows to functions.
* ``parallel``: run the line programs and hashes in forked children (2 cores).
* ``relocatable``: the DWARF of a ``.o`` (already relocated): address 0 is real.

Rules (each has a test; ``verify-labels`` uses the same names to explain
differences with llvm-dwarfdump):

* ``discarded``: a subprogram whose every range starts at 0, at a linker
  tombstone (-1 or -2 in the address size), is empty, or lies outside
  ``code_ranges``, is code the linker dropped (COMDAT duplicates,
  ``--gc-sections``). It is not a function; ``DwarfResult.discarded`` counts them.
* ``alias``: two DIEs with exactly the same ranges (identical-code folding,
  constructor aliases) give one function; the other names go to ``aliases``.
* Declarations, abstract instances (``DW_AT_inline``) and subprograms
  without code are not functions; inlined instances become :class:`Inlining`.
* Names come from the DIE or, in order, through ``DW_AT_abstract_origin`` and
  ``DW_AT_specification`` (at most 16 hops, cycles stop the chain); the same
  for the linkage name, the declaration file/line and ``DW_AT_external``.
  ``name`` is DW_AT_name (short, as llvm-dwarfdump prints it); C++ functions
  also carry ``linkage_name`` (mangled) and ``demangled``. A function without
  any name is called ``sub_<entry in hex>``.
* ``entry`` is DW_AT_low_pc, else DW_AT_entry_pc, else the first range listed
  (gcc lists the hot part first; its ``.cold`` part often lies lower, so
  ``start`` = lowest address is not always the entry).
* An inlining's ``caller`` is the function it was inlined into (which may
  itself be an inlined copy); ``function`` is the out-of-line function whose
  code holds it.
* Line rows: one per line-table row with a length > 0 (length = next row's
  address minus its own, within a sequence), attributed to the function whose
  range contains its address; rows outside every function are dropped.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._forked import Forked, WorkerError
from .._gc import paused_gc
from ..demangle import demangle
from ..hashing import FunctionHasher, hash_and_demangle
from ..model import Function, Inlining, LineRow, Producer, Range
from ..producer import parse_producer
from .forms import ByteOrder
from .lines import LineProgram, read_line_program
from .units import (
    AT,
    CONSTANT_FORMS,
    TAG,
    Die,
    DwarfError,
    DwarfSections,
    Unit,
    decode_lazy,
    die_at,
    read_uleb,
    walk_units,
)

__all__ = [
    "DwarfError",
    "DwarfResult",
    "DwarfSections",
    "UnitSummary",
    "read_dwarf",
    "read_dwarf_sections",
    "sections_from_dwarfinfo",
    "DwarfReader",
]

_MAX_CHAIN = 16
_NO_INFO: tuple[Any, ...] = (None, None, None, None, None)  # DwarfReader.info: name, linkage, file, line, external
_AT_NAME, _AT_LINKAGE_NAME, _AT_MIPS_LINKAGE_NAME = AT.name, AT.linkage_name, AT.mips_linkage_name
_AT_DECL_FILE, _AT_DECL_LINE, _AT_EXTERNAL = AT.decl_file, AT.decl_line, AT.external
_CHAIN_ATTRS = (AT.abstract_origin, AT.specification)
_AT_LOW_PC, _AT_HIGH_PC, _AT_RANGES = AT.low_pc, AT.high_pc, AT.ranges
_AT_ABSTRACT_ORIGIN, _AT_CALL_FILE, _AT_CALL_LINE = AT.abstract_origin, AT.call_file, AT.call_line


@dataclass(slots=True)
class UnitSummary:
    """One compilation unit: its name, producer, how many functions it defines and the code it covers."""

    name: str | None
    producer: Producer | None
    language: int | None
    functions: int = 0
    ranges: tuple[Range, ...] = ()  # its root DIE's low_pc/high_pc or DW_AT_ranges


@dataclass(slots=True)
class DwarfResult:
    functions: list[Function] = field(default_factory=list)
    inlinings: list[Inlining] = field(default_factory=list)
    producers: list[Producer] = field(default_factory=list)
    lines: list[LineRow] = field(default_factory=list)
    units: list[UnitSummary] = field(default_factory=list)
    discarded: int = 0
    problems: list[str] = field(default_factory=list)  # non-fatal: e.g. a broken line table


def sections_from_dwarfinfo(dwarfinfo: Any) -> DwarfSections:
    """Copy the section bytes out of a pyelftools ``DWARFInfo``."""

    def get(name: str) -> bytes:
        sec = getattr(dwarfinfo, name, None)
        if sec is None:
            return b""
        stream = sec.stream
        if hasattr(stream, "getvalue"):
            return bytes(stream.getvalue())
        stream.seek(0)
        return bytes(stream.read(sec.size))

    cfg = dwarfinfo.config
    return DwarfSections.of(
        lambda name: get(f"debug_{name}_sec"),
        little_endian=bool(cfg.little_endian),
        address_size=int(cfg.default_address_size),
    )


def read_dwarf(dwarfinfo: Any, **kwargs: Any) -> DwarfResult:
    """Read functions/inlinings/producers/lines from a pyelftools DWARFInfo (see module doc)."""
    return read_dwarf_sections(sections_from_dwarfinfo(dwarfinfo), **kwargs)


def read_dwarf_sections(
    sections: DwarfSections,
    *,
    text_reader: Callable[[int, int], bytes | None] | None = None,
    code_ranges: Sequence[tuple[int, int]] | None = None,
    arch: str | None = None,
    is_address: Callable[[int], bool] | None = None,
    lines: bool = True,
    parallel: bool = True,
    relocatable: bool = False,
    hasher: FunctionHasher | None = None,
    hash_in_child_from: int | None = 0,
    merge: Callable[[list[Function]], list[Function]] | None = None,
) -> DwarfResult:
    """Read the DWARF in ``sections``; raises :class:`DwarfError` when it is malformed.

    The one driver of :class:`DwarfReader`, for every container. ``parallel`` runs the
    line programs in a forked child while this process walks the DIEs (see
    :mod:`.._forked`). ``hasher`` (or ``text_reader`` with ``arch`` and ``is_address``)
    hashes every function and demangles its linkage name, in a forked child when there
    are ``hash_in_child_from`` functions or more (None: never), while this process goes
    on. ``merge(functions) -> functions`` adds what the container knows besides DWARF
    (the ELF symbol table) between the DIE walk and the inlinings and line rows; those
    go to the merged functions that do not come from the symbol table alone
    (``label_source="symtab"``), and ``DwarfResult.functions`` is the merged list.
    """
    if hasher is None and text_reader is not None:
        hasher = FunctionHasher(arch or "", text_reader, is_address or (lambda v: False))
    with paused_gc():  # see .._gc
        reader = DwarfReader(sections, code_ranges=code_ranges, lines=lines, parallel=parallel, relocatable=relocatable)
        reader.demangle = hasher is None  # with a hasher, names are demangled in its worker
        jobs: list[tuple[list[Function], Forked[Any]]] = []
        try:
            res = reader.functions()
            early = list(res.functions)
            early_names = [f.linkage_name for f in early]
            if hasher is not None:
                jobs.append((early, _hash(hasher, early, early_names, hash_in_child_from)))
            functions = merge(res.functions) if merge is not None else res.functions
            known = {id(f) for f in early}
            late = [f for f in functions if id(f) not in known]
            if hasher is not None:
                jobs.append((late, _hash(hasher, late, [f.linkage_name for f in late], hash_in_child_from)))
            reader.finish(res, [f for f in functions if f.label_source != "symtab"])
            res.functions = functions
            for fs, job in jobs:
                _apply_hashes(fs, job)
            for f, name in zip(early, early_names, strict=True):
                if f.linkage_name != name:  # named by the merge
                    f.demangled = f.demangled or demangle(f.linkage_name)
            if hasher is None:
                for f in late:
                    f.demangled = f.demangled or demangle(f.linkage_name)
            return res
        finally:
            reader.close()
            for _, job in jobs:
                job.cancel()


def _hash(
    hasher: FunctionHasher, functions: list[Function], names: list[str | None], child_from: int | None
) -> Forked[Any]:
    """Start hashing ``functions`` and demangling ``names`` (in a child when there are ``child_from`` or more)."""
    enabled = child_from is not None and len(functions) >= child_from
    return Forked(hash_and_demangle, hasher, [f.ranges for f in functions], names, enabled=enabled)


def _apply_hashes(functions: list[Function], job: Forked[Any]) -> None:
    try:
        hashes, demangled = job.result()
    except WorkerError as exc:
        raise DwarfError(f"hashing failed: {exc}") from None
    for f, (sha, pic, method), dem in zip(functions, hashes, demangled, strict=True):
        f.sha256, f.pic_hash, f.pic_hash_method = sha, pic, method
        f.demangled = f.demangled or dem


def _line_tables(sec: DwarfSections) -> tuple[dict[int, tuple[Any, ...]], list[str]]:
    """Every line program's rows with a length > 0, as compact arrays (runs in a child)."""
    units, _ = walk_units(sec, roots_only=True)
    out: dict[int, tuple[Any, ...]] = {}
    problems: list[str] = []
    for u in units:
        off = u.stmt_list
        if off is None or off in out:
            continue
        try:
            prog = read_line_program(sec, off, comp_dir=u.comp_dir, cu_name=u.name, rows=True)
        except DwarfError as exc:
            problems.append(str(exc))
            continue
        addrs, lens, lns, fids = array("Q"), array("Q"), array("q"), array("q")
        rows = prog.rows
        for k in range(len(rows) - 1):
            addr, fidx, line, end_seq = rows[k]
            n = rows[k + 1][0] - addr
            if end_seq or n <= 0 or addr >= 1 << 64 or n >= 1 << 64:
                continue
            addrs.append(addr)
            lens.append(n)
            lns.append(max(min(line, (1 << 63) - 1), -(1 << 63)))
            fids.append(min(fidx, (1 << 63) - 1))
        out[off] = (prog.files, addrs, lens, lns, fids)
    return out, problems


class DwarfReader:
    """The DWARF of one binary, read in steps: ``functions()``, then ``finish()``.

    The ELF backend uses the steps to merge symbols and hash in between;
    :func:`read_dwarf_sections` runs them in order.
    """

    def __init__(
        self,
        sec: DwarfSections,
        *,
        code_ranges: Sequence[tuple[int, int]] | None = None,
        lines: bool = True,
        parallel: bool = True,
        relocatable: bool = False,
    ) -> None:
        self.sec = sec
        self.zero_is_discarded = not relocatable  # in a .o every section starts at 0
        self.demangle = True  # the ELF backend turns this off and demangles in its hash worker
        self.line_job: Forked[tuple[dict[int, tuple[Any, ...]], list[str]]] | None = None
        if lines:
            self.line_job = Forked(_line_tables, sec, enabled=parallel)
        try:
            self.units, self.dies = walk_units(sec)
        except BaseException:
            self.close()
            raise
        self.by_offset = {d.offset: d for d in self.dies}
        self.want_lines = lines
        self.programs: dict[int, LineProgram | None] = {}
        self.code = sorted(code_ranges) if code_ranges is not None else None
        self.code_starts = [s for s, _ in self.code] if self.code is not None else []
        self.name_cache: dict[int, tuple[Any, ...]] = {}
        self.busy: set[int] = set()
        self.problems: list[str] = []
        self.unit_offsets: list[int] | None = None

    def _die_at(self, offset: int) -> Die | None:
        """A subprogram the walk jumped over (inside a type), decoded when a chain reaches it."""
        if self.unit_offsets is None:
            self.unit_offsets = [u.offset for u in self.units]
        die = die_at(self.sec, self.units, self.unit_offsets, offset)
        if die is not None:
            self.by_offset[offset] = die
        return die

    def close(self) -> None:
        if self.line_job is not None:
            self.line_job.cancel()

    # -- lookups --------------------------------------------------------------
    def program(self, unit: Unit) -> LineProgram | None:
        off = unit.stmt_list
        if off is None:
            return None
        if off not in self.programs:
            try:
                self.programs[off] = read_line_program(
                    self.sec, off, comp_dir=unit.comp_dir, cu_name=unit.name, rows=False
                )
            except DwarfError as exc:
                self.programs[off] = None  # a broken line table does not lose the functions
                self.problems.append(str(exc))
        return self.programs[off]

    def info(self, die: Die, depth: int = 0) -> tuple[Any, ...]:
        """(name, linkage name, decl file, decl line, external), following the chain."""
        cached = self.name_cache.get(die.offset)
        if cached is not None:
            return cached
        if depth > _MAX_CHAIN or die.offset in self.busy:
            return _NO_INFO  # a cycle or an absurdly long chain: stop here
        a = die.attrs if die.attrs is not None else decode_lazy(self.sec, die)
        get = a.get
        v = get(_AT_NAME)
        name = v[1] if v is not None and v[1].__class__ is str else None
        v = get(_AT_LINKAGE_NAME) or get(_AT_MIPS_LINKAGE_NAME)
        linkage = v[1] if v is not None and v[1].__class__ is str else None
        file = line = None
        v = get(_AT_DECL_FILE)
        if v is not None and isinstance(v[1], int):
            prog = self.program(die.unit)
            file = prog.files.get(v[1]) if prog else None
        v = get(_AT_DECL_LINE)
        if v is not None and isinstance(v[1], int):
            line = v[1]
        v = get(_AT_EXTERNAL)
        external = bool(v[1]) if v is not None else None
        if name is None or linkage is None or file is None or line is None or external is None:
            nxt = None
            for at in _CHAIN_ATTRS:
                v = get(at)
                if v is not None and isinstance(v[1], int):
                    nxt = self.by_offset.get(v[1]) or self._die_at(v[1])
                    if nxt is not None:
                        break
            if nxt is not None:
                self.busy.add(die.offset)
                sub_name, sub_linkage, sub_file, sub_line, sub_external = self.info(nxt, depth + 1)
                self.busy.discard(die.offset)
                name = name if name is not None else sub_name
                linkage = linkage if linkage is not None else sub_linkage
                if file is None:
                    file = sub_file
                    line = line if line is not None else sub_line
                line = line if line is not None else sub_line
                external = external if external is not None else sub_external
        out = (name, linkage, file, line, external)
        self.name_cache[die.offset] = out
        return out

    def ranges(self, die: Die) -> list[Range]:
        a = die.attrs
        assert a is not None  # callers pass decoded DIEs (a unit's, a decoded subprogram's)
        v = a.get(_AT_LOW_PC)
        if v is not None and isinstance(v[1], int):
            low = v[1]
            h = a.get(_AT_HIGH_PC)
            if h is None:
                return []
            form, hv = h
            if not isinstance(hv, int):
                return []
            high = low + hv if form in CONSTANT_FORMS else hv
            return [Range(low, high)] if high > low else []
        v = a.get(_AT_RANGES)
        if v is not None and isinstance(v[1], int):
            form, off = v
            u = die.unit
            if u.version >= 5:
                return self._rnglist(u, off, form == 0x23)
            return self._ranges_v4(u, off + u.ranges_base)
        return []

    def _rnglist(self, u: Unit, v: int, is_index: bool) -> list[Range]:
        data = self.sec.rnglists
        order: ByteOrder = "little" if self.sec.little_endian else "big"
        if is_index:
            base = u.rnglists_base if u.rnglists_base is not None else 12
            p = base + v * u.offset_size
            if p + u.offset_size > len(data):
                raise DwarfError(f"range list index {v} outside .debug_rnglists")
            pos = base + int.from_bytes(data[p : p + u.offset_size], order)
        else:
            pos = v
        asz = u.address_size
        base_addr = u.low_pc
        out: list[Range] = []
        addrx = _AddrX(self.sec, u)
        while True:
            if pos >= len(data):
                raise DwarfError(f"range list at {v:#x} runs past .debug_rnglists")
            kind = data[pos]
            pos += 1
            if kind == 0:
                return out
            if kind == 1:
                i, pos = read_uleb(data, pos)
                base_addr = addrx(i)
            elif kind in (2, 3):
                i, pos = read_uleb(data, pos)
                j, pos = read_uleb(data, pos)
                s = addrx(i)
                out.append(Range(s, addrx(j) if kind == 2 else s + j))
            elif kind == 4:
                s, pos = read_uleb(data, pos)
                e, pos = read_uleb(data, pos)
                out.append(Range(base_addr + s, base_addr + e))
            elif kind == 5:
                base_addr = int.from_bytes(data[pos : pos + asz], order)
                pos += asz
            elif kind == 6:
                s = int.from_bytes(data[pos : pos + asz], order)
                e = int.from_bytes(data[pos + asz : pos + 2 * asz], order)
                pos += 2 * asz
                out.append(Range(s, e))
            elif kind == 7:
                s = int.from_bytes(data[pos : pos + asz], order)
                n, pos = read_uleb(data, pos + asz)
                out.append(Range(s, s + n))
            else:
                raise DwarfError(f"unknown range list entry kind {kind}")

    def _ranges_v4(self, u: Unit, off: int) -> list[Range]:
        data = self.sec.ranges
        order: ByteOrder = "little" if self.sec.little_endian else "big"
        asz = u.address_size
        top = (1 << (8 * asz)) - 1
        base_addr = u.low_pc
        out: list[Range] = []
        pos = off
        while True:
            if pos + 2 * asz > len(data):
                raise DwarfError(f"range list at {off:#x} runs past .debug_ranges")
            s = int.from_bytes(data[pos : pos + asz], order)
            e = int.from_bytes(data[pos + asz : pos + 2 * asz], order)
            pos += 2 * asz
            if s == 0 and e == 0:
                return out
            if s == top:
                base_addr = e
            else:
                out.append(Range(base_addr + s, base_addr + e))

    def live(self, ranges: list[Range], address_size: int) -> list[Range]:
        """Drop empty, zero-address, tombstoned and outside-the-code ranges (rule ``discarded``)."""
        tombstone = (1 << (8 * address_size)) - 2  # -2 and -1 in the address size
        zero_is_discarded = self.zero_is_discarded
        code, code_starts = self.code, self.code_starts
        out = []
        for r in ranges:
            start, end = r.start, r.end
            if end <= start or (start == 0 and zero_is_discarded) or start >= tombstone:
                continue
            if code is not None:
                i = bisect_right(code_starts, start) - 1
                if i < 0:
                    continue
                lo, hi = code[i]
                if not (lo <= start and end <= hi):
                    continue
            out.append(r)
        return out

    def _unit_ranges(self, u: Unit) -> tuple[Range, ...]:
        try:
            return tuple(self.ranges(Die(u.offset, u.tag, u, u.attrs, None)))
        except DwarfError as exc:  # a broken range list does not lose the unit
            self.problems.append(str(exc))
            return ()

    # -- assembly -------------------------------------------------------------
    def functions(self) -> DwarfResult:
        """Units, producers and functions (no inlinings or lines yet)."""
        res = DwarfResult()
        summaries = {}
        producers: dict[str, Producer] = {}
        for u in self.units:
            p = None
            if u.producer:
                raw = u.producer if not u.apple_flags else f"{u.producer} {u.apple_flags}"
                p = producers.get(raw)
                if p is None:
                    p = producers[raw] = parse_producer(raw)
            summaries[u.index] = UnitSummary(u.name, p, u.language, ranges=self._unit_ranges(u))
        res.producers = list(producers.values())
        res.units = [summaries[u.index] for u in self.units]
        by_ranges: dict[tuple[int, ...], Function] = {}  # (start, end, start, end, ...) -> function
        for die in self.dies:
            if die.tag != TAG.subprogram or die.attrs is None:
                continue  # not a subprogram, or one without code (decoded only when referenced)
            a = die.attrs
            if AT.declaration in a and a[AT.declaration][1]:
                continue
            spans = self.ranges(die)
            if not spans:
                continue
            rs = self.live(spans, die.unit.address_size)
            if not rs:
                res.discarded += 1
                continue
            m_name, m_linkage, m_file, m_line, m_external = self.info(die)
            if len(rs) == 1:
                ordered = rs
                key: tuple[int, ...] = (rs[0].start, rs[0].end)
                start, end, size = rs[0].start, rs[0].end, rs[0].end - rs[0].start
            else:
                ordered = sorted(rs, key=_range_start)
                key = tuple(x for r in ordered for x in (r.start, r.end))
                start, end, size = ordered[0].start, max(r.end for r in rs), sum(r.end - r.start for r in rs)
            name = m_name or m_linkage
            prior = by_ranges.get(key)
            if prior is not None:
                alias = name or ""
                if alias and alias != prior.name and alias not in prior.aliases:
                    prior.aliases.append(alias)
                continue
            entry = rs[0].start
            if AT.low_pc in a:
                entry = a[AT.low_pc][1]
            elif AT.entry_pc in a and isinstance(a[AT.entry_pc][1], int) and a[AT.entry_pc][0] not in CONSTANT_FORMS:
                entry = a[AT.entry_pc][1]
            f = Function(
                name=name or f"sub_{entry:x}",
                start=start,
                end=end,
                size=size,
                ranges=list(ordered),
                linkage_name=m_linkage,
                demangled=demangle(m_linkage) if self.demangle else None,
                source_file=m_file,
                decl_line=m_line,
                compilation_unit=die.unit.name,
                is_static=(not m_external) if m_external is not None else True,
                label_source="dwarf",
                entry=entry,
            )
            by_ranges[key] = f
            summaries[die.unit.index].functions += 1
            res.functions.append(f)
        res.functions.sort(key=lambda f: (f.start, f.name))
        return res

    def finish(self, res: DwarfResult, functions: list[Function]) -> None:
        """Add inlinings and attach line rows to ``functions`` (DWARF ones plus any others)."""
        res.inlinings = self._inlinings()
        if self.want_lines:
            res.lines = self._attach_lines(functions)
        if self.problems:
            res.problems = list(self.problems)

    def _inlinings(self) -> list[Inlining]:
        out = []
        by_offset = self.by_offset
        container_of: dict[int, str | None] = {}  # parent offset -> out-of-line function name
        info, ranges, live = self.info, self.ranges, self.live
        inlined = TAG.inlined_subroutine
        for die in self.dies:
            if die.tag != inlined:
                continue
            rs = live(ranges(die), die.unit.address_size)
            if not rs:
                continue
            a = die.attrs
            assert a is not None
            origin = a.get(_AT_ABSTRACT_ORIGIN)
            target = (
                (by_offset.get(origin[1]) or self._die_at(origin[1]))
                if origin is not None and isinstance(origin[1], int)
                else None
            )
            meta = info(target) if target is not None else info(die)
            caller = container = None
            parent = by_offset.get(die.parent) if die.parent is not None else None
            if parent is not None:
                caller = info(parent)[0]
                if parent.offset in container_of:
                    container = container_of[parent.offset]
                else:
                    p: Die | None = parent
                    hops = 0
                    while p is not None and p.tag != TAG.subprogram and hops < 10_000:
                        p = by_offset.get(p.parent) if p.parent is not None else None
                        hops += 1
                    container = container_of[parent.offset] = self.info(p)[0] if p is not None else None
            call_file = None
            v = a.get(_AT_CALL_FILE)
            if v is not None and isinstance(v[1], int):
                prog = self.program(die.unit)
                call_file = prog.files.get(v[1]) if prog else None
            v = a.get(_AT_CALL_LINE)
            call_line = v[1] if v is not None and isinstance(v[1], int) else None
            out.append(Inlining(meta[0] or meta[1] or "?", caller, tuple(rs), call_file, call_line, container))
        return out

    def _attach_lines(self, functions: list[Function]) -> list[LineRow]:
        tables: dict[int, tuple[Any, ...]] = {}
        if self.line_job is not None:
            try:
                tables, problems = self.line_job.result()
            except WorkerError as exc:
                raise DwarfError(f"line tables: {exc}") from None
            self.problems.extend(problems)
        spans = sorted(((r.start, r.end, f.lines) for f in functions for r in f.ranges), key=lambda t: (t[0], t[1]))
        starts = [s[0] for s in spans]
        ends = [s[1] for s in spans]
        lists = [s[2] for s in spans]
        out: list[LineRow] = []
        append = out.append
        for files, addrs, lens, lns, fids in tables.values():
            names: dict[int, str | None] = {}
            for addr, n, line, fidx in zip(addrs, lens, lns, fids):
                k = bisect_right(starts, addr) - 1
                if k < 0 or addr >= ends[k]:
                    continue
                name = names.get(fidx, _MISSING)
                if name is _MISSING:
                    name = names[fidx] = files.get(fidx)
                row = LineRow(addr, n, name, line)
                lists[k].append(row)
                append(row)
        for f in functions:
            if f.lines:
                f.lines.sort(key=_row_address)
        return out


def _range_start(r: Range) -> int:
    return r.start


def _row_address(r: LineRow) -> int:
    return r.address


_MISSING: Any = object()


class _AddrX:
    def __init__(self, sec: DwarfSections, u: Unit) -> None:
        self.data = sec.addr
        self.base = u.addr_base if u.addr_base is not None else 8
        self.size = u.address_size
        self.order: ByteOrder = "little" if sec.little_endian else "big"

    def __call__(self, i: int) -> int:
        p = self.base + i * self.size
        if p + self.size > len(self.data):
            raise DwarfError(f"address index {i} outside .debug_addr")
        return int.from_bytes(self.data[p : p + self.size], self.order)
