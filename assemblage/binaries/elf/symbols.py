"""The symbol table as a second label source, merged with DWARF.

Every function ends up with ``label_source`` ``"dwarf"``, ``"symtab"`` or
``"both"``. Where the two sources disagree a :class:`Disagreement` is
recorded (never silently resolved):

* ``missing_in_symtab``: a DWARF function with no FUNC symbol at its entry.
* ``missing_in_dwarf``: a FUNC symbol with no DWARF function (crt code, assembly,
  libraries linked without debug info). It becomes a ``symtab`` function.
* ``name_differs``: the symbol at a DWARF entry has another name (gcc clones
  such as ``foo.constprop.0`` keep the DWARF name ``foo``).
* ``size_differs``: ``st_size`` differs from the length of the entry range.
* ``split_part``: a symbol (``foo.cold``) marks a non-entry range of a DWARF
  function; DWARF makes it part of ``foo``, the symbol table a function.
* ``inside_function``: a symbol in the middle of a DWARF function's range.
* ``size_inferred``: a FUNC symbol of size 0 (crt start-up code such as
  ``_init``, ``deregister_tm_clones``, ``frame_dummy``: assembled or compiled
  without ``.size``). Its extent runs to the next function or symbol, or the
  end of its section, with the padding trimmed by ``code_end``; the function is
  marked ``size_inferred``.

Several symbols at one address (aliases, C1/C2 constructors, ``.dynsym``
copies) give one function; the extra names go to ``Function.aliases``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence

from ..model import Disagreement, Function, Range
from .file import STT_FUNC, STT_GNU_IFUNC, ElfSymbol

__all__ = ["function_symbols", "merge_symbols"]


def function_symbols(symbols: Sequence[ElfSymbol], *, thumb: bool = False) -> dict[int, list[ElfSymbol]]:
    """Defined FUNC/IFUNC symbols by address (Thumb bit cleared on ARM), first seen first."""
    out: dict[int, list[ElfSymbol]] = {}
    for s in symbols:
        if s.type not in (STT_FUNC, STT_GNU_IFUNC) or s.shndx == 0 or s.value == 0 or not s.name:
            continue
        addr = s.value & ~1 if thumb else s.value
        lst = out.setdefault(addr, [])
        if all(o.name != s.name for o in lst):
            lst.append(s)
    return out


def _pick(f: Function, syms: list[ElfSymbol]) -> ElfSymbol:
    for want in (f.linkage_name, f.name):
        for s in syms:
            if want and s.name == want:
                return s
    globals_ = [s for s in syms if s.bind in (1, 2)]
    return (globals_ or syms)[0]


def merge_symbols(
    functions: list[Function],
    by_addr: dict[int, list[ElfSymbol]],
    *,
    has_dwarf: bool,
    code_ranges: Sequence[tuple[int, int]],
    code_end: Callable[[int, int], int] | None = None,
) -> tuple[list[Function], list[Disagreement]]:
    """Merge DWARF functions with FUNC symbols; return (all functions, disagreements)."""
    out = list(functions)
    dis: list[Disagreement] = []
    used: set[int] = set()
    have_symtab = bool(by_addr)
    spans = sorted(((r.start, r.end, f) for f in functions for r in f.ranges), key=lambda t: (t[0], t[1]))
    span_starts = [s[0] for s in spans]
    for f in functions:
        entry = f.entry if f.entry is not None else f.start
        syms = by_addr.get(entry)
        if syms:
            used.add(entry)
            f.label_source = "both"
            main = _pick(f, syms)
            if f.linkage_name is None and main.name != f.name:
                # DWARF gave no linkage name (gcc omits it for lambdas): the symbol is that name
                f.linkage_name = main.name
            if main.name not in (f.linkage_name, f.name):
                dis.append(
                    Disagreement("name_differs", entry, f"dwarf {f.linkage_name or f.name!r}, symtab {main.name!r}")
                )
            for s in syms:
                if s.name not in (f.name, f.linkage_name) and s.name not in f.aliases:
                    f.aliases.append(s.name)
            entry_range = next((r for r in f.ranges if r.start <= entry < r.end), None)
            if entry_range is not None and main.size and main.size != entry_range.end - entry:
                dis.append(
                    Disagreement(
                        "size_differs",
                        entry,
                        f"{f.name}: dwarf {entry_range.end - entry} bytes, symtab {main.size} bytes ({main.name})",
                    )
                )
        elif have_symtab:
            dis.append(Disagreement("missing_in_symtab", entry, f"{f.name} has no FUNC symbol"))
        for r in f.ranges:
            if r.start != entry and r.start in by_addr:
                used.add(r.start)
                names = ", ".join(s.name for s in by_addr[r.start])
                dis.append(
                    Disagreement(
                        "split_part",
                        r.start,
                        f"symbol {names} is a part of {f.name} (dwarf range {r.start:#x}-{r.end:#x})",
                    )
                )
    code = sorted(code_ranges)
    starts = sorted({r.start for f in functions for r in f.ranges} | set(by_addr))
    for addr in sorted(by_addr):
        if addr in used:
            continue
        syms = by_addr[addr]
        k = bisect_right(span_starts, addr) - 1
        if k >= 0 and addr < spans[k][1]:
            dis.append(Disagreement("inside_function", addr, f"symbol {syms[0].name} lies inside {spans[k][2].name}"))
            continue
        s = max(syms, key=lambda s: (s.size, s.bind in (1, 2)))
        section = next(((lo, hi) for lo, hi in code if lo <= addr < hi), None)
        if section is None:
            continue  # a FUNC symbol outside executable sections (e.g. descriptors); not code
        size, inferred = s.size, False
        if not size and code_end is not None:
            k = bisect_left(starts, addr + 1)
            limit = min(starts[k] if k < len(starts) else section[1], section[1])
            size = max(0, code_end(addr, limit) - addr)
            inferred = size > 0
            if inferred:
                dis.append(
                    Disagreement(
                        "size_inferred", addr, f"symbol {s.name} has size 0; its code runs {addr:#x}-{addr + size:#x}"
                    )
                )
        ranges = [Range(addr, addr + size)] if size else []
        f = Function(
            name=s.name,
            start=addr,
            end=addr + size,
            size=size,
            size_inferred=inferred,
            ranges=ranges,
            linkage_name=s.name,
            demangled=None,
            is_static=s.bind == 0,
            label_source="symtab",
            entry=addr,
            aliases=[o.name for o in syms if o.name != s.name],
        )
        out.append(f)
        if has_dwarf:
            dis.append(
                Disagreement("missing_in_dwarf", addr, f"symbol {s.name} ({s.size} bytes) has no DWARF subprogram")
            )
    out.sort(key=lambda f: (f.start, f.name))
    return out, dis
