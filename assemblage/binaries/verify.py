"""``verify-labels``: our labels against independent tools on the same binary.

Oracles: ``llvm-dwarfdump-19 --debug-info`` (subprograms with their ranges
and names), ``llvm-dwarfdump-19 --debug-line`` (line rows), ``readelf -SW``
(executable sections), ``readelf -sW`` (FUNC symbols), ``c++filt``
(demangled names). Their text is parsed here, without any of our readers.

Every difference is either explained by a named rule (below; each has a
test) or reported as unexplained, which makes ``verify-labels`` exit 1.

Rules:

* ``discarded``: the oracle has a subprogram whose ranges all start at 0, at
  a tombstone, are empty or outside the executable sections (code the linker
  dropped). We do not count it as a function (:mod:`.dwarf` rule of the same name).
* ``alias``: several oracle DIEs with identical ranges are one function of
  ours, the extra names being in ``aliases``.
* ``split_part``: a FUNC symbol at a non-entry range of one of our DWARF
  functions (gcc's ``foo.cold``); recorded as a ``split_part`` disagreement.
* ``recorded_disagreement``: a symbol whose size differs from the DWARF entry
  range, for which we recorded a ``size_differs`` disagreement.
* ``demangler_variant``: cxxfilt and c++filt print the same name with different
  spacing or ``(anonymous namespace)`` spelling.
* ``not_code``: a FUNC symbol outside every executable section (e.g. a
  function descriptor in data); it is not code, we make no function of it.

FUNC symbols with size 0 (``_init``, crt helpers) are functions of ours whose
extent we infer (``size_inferred``): they match readelf on address and name, and
their end must be where ``llvm-objdump-19 -d`` shows the last instruction that is
not padding (nop, int3, zero bytes) before the next FUNC symbol or the end of the
section.
"""

from __future__ import annotations

import re
import shutil
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import _spawn
from ..errors import AssemblageError
from .model import BinaryAnalysis, Function, Range

__all__ = [
    "DUMP_TOOL",
    "OracleFunction",
    "Report",
    "is_discarded",
    "parse_dwarfdump",
    "parse_dwarfdump_lines",
    "parse_readelf_sections",
    "parse_readelf_symbols",
    "verify_binary",
]

DUMP_TOOL = "llvm-dwarfdump-19"

_DIE = re.compile(r"^0x([0-9a-f]+):(\s+)(DW_TAG_\w+|NULL)")
_ATTR = re.compile(r"^\s+(DW_AT_\w+)\s+\((.*)$")
_RANGE = re.compile(r"\[0x([0-9a-f]+), 0x([0-9a-f]+)\)")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass
class OracleFunction:
    offset: int
    ranges: list[Range]
    name: str | None  # the DIE's own linkage name, else the referenced DIE's printed name, else its own name


@dataclass
class Report:
    path: str
    counts: dict[str, int] = field(default_factory=dict)
    explained: dict[str, int] = field(default_factory=dict)
    unexplained: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unexplained

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "counts": self.counts,
            "explained": self.explained,
            "unexplained": self.unexplained,
        }

    def explain(self, rule: str) -> None:
        self.explained[rule] = self.explained.get(rule, 0) + 1


def _run(args: Sequence[str], input_text: str | None = None) -> str:
    if shutil.which(args[0]) is None:
        raise AssemblageError(f"{args[0]} is not installed; verify-labels needs it (apt-get install llvm-19 binutils)")
    proc = _spawn.run(list(args), input=input_text, capture_output=True, text=True, errors="replace", check=False)
    if proc.returncode != 0:
        raise AssemblageError(f"{args[0]} failed on {args[-1]}: {proc.stderr.strip()[:500]}")
    return proc.stdout


def parse_dwarfdump(text: Iterable[str]) -> list[OracleFunction]:
    """Subprograms with code from ``llvm-dwarfdump --debug-info`` text."""
    out: list[OracleFunction] = []
    cur: dict[str, Any] | None = None
    in_ranges = False

    def flush() -> None:
        if cur is None or cur["tag"] != "DW_TAG_subprogram" or cur.get("declaration"):
            return
        rs: list[Range] = []
        if "low" in cur and "high" in cur:
            rs = [Range(cur["low"], cur["high"])]
        elif "ranges" in cur:
            rs = cur["ranges"]
        else:
            return
        name = cur.get("linkage") or cur.get("ref") or cur.get("name")
        out.append(OracleFunction(cur["offset"], rs, name))

    for line in text:
        if in_ranges and cur is not None and not _DIE.match(line) and not _ATTR.match(line):
            cur["ranges"].extend(Range(int(a, 16), int(b, 16)) for a, b in _RANGE.findall(line))
            if line.rstrip().endswith("))"):
                in_ranges = False
            continue
        m = _DIE.match(line)
        if m:
            flush()
            cur = {"offset": int(m.group(1), 16), "tag": m.group(3)}
            continue
        m = _ATTR.match(line)
        if not m or cur is None:
            continue
        at, val = m.group(1), m.group(2)
        if at == "DW_AT_low_pc":
            cur["low"] = int(val.split(")")[0], 16)
        elif at == "DW_AT_high_pc":
            cur["high"] = int(val.split(")")[0], 16)
        elif at == "DW_AT_ranges":
            cur["ranges"] = [Range(int(a, 16), int(b, 16)) for a, b in _RANGE.findall(val)]
            in_ranges = not val.rstrip().endswith("))")
        elif at in ("DW_AT_linkage_name", "DW_AT_MIPS_linkage_name", "DW_AT_name"):
            q = _QUOTED.search(val)
            if q:
                cur["linkage" if at != "DW_AT_name" else "name"] = q.group(1)
        elif at in ("DW_AT_abstract_origin", "DW_AT_specification"):
            q = _QUOTED.search(val)
            if q and "ref" not in cur:
                cur["ref"] = q.group(1)
        elif at == "DW_AT_declaration" and val.startswith("true"):
            cur["declaration"] = True
    flush()
    return out


def parse_dwarfdump_lines(text: Iterable[str]) -> list[tuple[int, int, int]]:
    """(address, line, length) rows with a length > 0 from ``llvm-dwarfdump --debug-line``."""
    rows: list[tuple[int, int, int]] = []
    seq: list[tuple[int, int, bool]] = []

    def close() -> None:
        for i in range(len(seq) - 1):
            a, ln, end = seq[i]
            n = seq[i + 1][0] - a
            if not end and n > 0:
                rows.append((a, ln, n))
        seq.clear()

    for line in text:
        if not line.startswith("0x"):
            continue
        parts = line.split()
        if len(parts) < 7:
            continue
        try:
            addr, ln = int(parts[0], 16), int(parts[1])
        except ValueError:
            continue
        end = "end_sequence" in parts[7:]
        seq.append((addr, ln, end))
        if end:
            close()
    close()
    return rows


def parse_readelf_sections(text: str) -> list[tuple[int, int]]:
    """Executable (flag X) section address ranges from ``readelf -SW``."""
    out = []
    for line in text.splitlines():
        m = re.match(
            r"^\s*\[\s*\d+\]\s+(\S+)\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+(\S*)", line
        )
        if m and "X" in m.group(6) and m.group(2) != "NOBITS":
            addr, size = int(m.group(3), 16), int(m.group(5), 16)
            if size:
                out.append((addr, addr + size))
    return out


def parse_readelf_symbols(text: str) -> list[tuple[str, int, int, str]]:
    """Defined FUNC/IFUNC symbols (name, value, size, bind) from ``readelf -sW``.

    Uses ``.symtab`` when present, else ``.dynsym`` (version suffixes dropped).
    """
    tables: dict[str, list[tuple[str, int, int, str]]] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^Symbol table '([^']+)'", line)
        if m:
            current = tables.setdefault(m.group(1), [])
            continue
        parts = line.split()
        if current is None or len(parts) < 8 or not parts[0].endswith(":"):
            continue
        _num, value, size, typ, bind, _vis, ndx, name = parts[:8]
        if typ not in ("FUNC", "IFUNC") or ndx == "UND" or not name:
            continue
        v = int(value, 16)
        if v == 0:
            continue
        current.append((name.split("@")[0], v, int(size, 0), bind))
    return tables.get(".symtab") or tables.get(".dynsym") or []


def is_discarded(ranges: Sequence[Range], code: Sequence[tuple[int, int]], address_size: int = 8) -> list[Range]:
    """Rule ``discarded``: the ranges that survive (empty list: the subprogram is dropped code)."""
    top = (1 << (8 * address_size)) - 1
    code = sorted(code)
    starts = [c[0] for c in code]
    live = []
    for r in ranges:
        if r.end <= r.start or r.start == 0 or r.start >= top - 1:
            continue
        i = bisect_right(starts, r.start) - 1
        if i < 0 or r.end > code[i][1]:
            continue
        live.append(r)
    return live


def _same_demangling(a: str, b: str) -> bool:
    norm = lambda s: re.sub(r"\s+", "", s.replace("(anonymous namespace)", "{anon}"))  # noqa: E731
    return norm(a) == norm(b)


def verify_binary(path: str, analysis: BinaryAnalysis, *, lines: bool = True) -> Report:
    """Compare ``analysis`` of ``path`` with llvm-dwarfdump, readelf and c++filt."""
    rep = Report(path)
    code = parse_readelf_sections(_run(["readelf", "-SW", path]))
    ours = analysis.functions
    by_entry = {(f.entry if f.entry is not None else f.start): f for f in ours}
    addr_size = analysis.bits // 8
    # 1. DWARF subprograms.
    if analysis.has_debug_info:
        oracle = parse_dwarfdump(_run([DUMP_TOOL, "--debug-info", path]).splitlines())
        dwarf_ours = {
            tuple(sorted(f.ranges, key=lambda r: r.start)): f for f in ours if f.label_source in ("dwarf", "both")
        }
        matched: set[int] = set()
        seen_keys: set[tuple[Range, ...]] = set()
        rep.counts["dwarf_oracle_subprograms"] = len(oracle)
        rep.counts["dwarf_ours"] = len(dwarf_ours)
        for o in oracle:
            live = is_discarded(o.ranges, code, addr_size)
            if not live:
                rep.explain("discarded")
                continue
            key = tuple(sorted(live, key=lambda r: r.start))
            f = dwarf_ours.get(key)
            if f is None:
                rep.unexplained.append(f"dwarf: {o.name} {_fmt(key)} (DIE {o.offset:#x}) is not among our functions")
                continue
            names = {f.name, f.linkage_name, *f.aliases}
            if key in seen_keys:
                if o.name in names:
                    rep.explain("alias")
                else:
                    rep.unexplained.append(f"dwarf: alias {o.name} of {f.name} at {f.start:#x} not in aliases")
                continue
            seen_keys.add(key)
            matched.add(id(f))
            if o.name in names:
                rep.counts["dwarf_matched"] = rep.counts.get("dwarf_matched", 0) + 1
            else:
                rep.unexplained.append(f"dwarf: name {o.name!r} at {f.start:#x}, ours {f.linkage_name or f.name!r}")
        for f in dwarf_ours.values():
            if id(f) not in matched:
                rep.unexplained.append(f"dwarf: our {f.name} {_fmt(f.ranges)} has no llvm-dwarfdump subprogram")
    # 2. Symbols.
    syms = parse_readelf_symbols(_run(["readelf", "-sW", path]))
    thumb = analysis.arch == "armhf"
    rep.counts["symtab_oracle"] = len(syms)
    sym_addrs: set[int] = set()
    size_dis = {d.address for d in analysis.disagreements if d.kind == "size_differs"}
    part_dis = {d.address for d in analysis.disagreements if d.kind == "split_part"}
    for name, value, size, _bind in syms:
        addr = value & ~1 if thumb else value
        sym_addrs.add(addr)
        if not any(lo <= addr < hi for lo, hi in code):
            rep.explain("not_code")
            continue
        f = by_entry.get(addr)
        if f is None:
            if addr in part_dis:
                rep.explain("split_part")
            else:
                rep.unexplained.append(f"symtab: {name} at {addr:#x} is not one of our functions")
            continue
        if name not in {f.name, f.linkage_name, *f.aliases}:
            rep.unexplained.append(f"symtab: {name} at {addr:#x} not named by our function {f.name}")
            continue
        entry_len = next((r.end - addr for r in f.ranges if r.start <= addr < r.end), 0)
        if size and size != entry_len:
            if addr in size_dis:
                rep.explain("recorded_disagreement")
            else:
                rep.unexplained.append(f"symtab: {name} has {size} bytes, our entry range {entry_len}")
            continue
        rep.counts["symtab_matched"] = rep.counts.get("symtab_matched", 0) + 1
    for f in ours:
        if f.label_source == "symtab" and f.start not in sym_addrs:
            rep.unexplained.append(f"symtab: our {f.name} at {f.start:#x} is not a FUNC symbol per readelf")
    _verify_inferred_sizes(rep, path, ours, sorted(sym_addrs), code, thumb=thumb)
    # 3. Demangled names.
    mangled = [f for f in ours if f.linkage_name and f.linkage_name.startswith("_Z")]
    if mangled and shutil.which("c++filt"):
        outs = _run(["c++filt"], "\n".join(f.linkage_name or "" for f in mangled) + "\n").splitlines()
        for f, d in zip(mangled, outs, strict=False):
            if d == f.linkage_name:
                continue  # c++filt could not demangle it either
            if f.demangled == d:
                rep.counts["demangled_matched"] = rep.counts.get("demangled_matched", 0) + 1
            elif f.demangled and _same_demangling(f.demangled, d):
                rep.explain("demangler_variant")
            else:
                rep.unexplained.append(f"demangle: {f.linkage_name}: ours {f.demangled!r}, c++filt {d!r}")
    # 4. Line rows inside functions.
    if lines and analysis.has_debug_info:
        _verify_lines(rep, path, ours)
    return rep


# "  1016: c3    retq" (x86: bytes) or "  bc0: d503201f   nop" (AArch64: one word)
_OBJDUMP_INSN = re.compile(r"^\s*([0-9a-f]+):\s+((?:[0-9a-f]{2,8} )+)\s*(\S*)")
_PADDING_MNEMONICS = ("nop", "int3")


def _verify_inferred_sizes(
    rep: Report,
    path: str,
    ours: list[Function],
    sym_addrs: list[int],
    code: Sequence[tuple[int, int]],
    *,
    thumb: bool = False,
) -> None:
    """Each inferred extent ends where llvm-objdump's last non-padding instruction ends.

    Zero bytes count as padding, except in Thumb code, where they end literal pools.
    """
    for f in (f for f in ours if f.size_inferred):
        section_end = next((hi for lo, hi in code if lo <= f.start < hi), None)
        k = bisect_right(sym_addrs, f.start)
        limit = min(x for x in (sym_addrs[k] if k < len(sym_addrs) else None, section_end) if x is not None)
        out = _run(["llvm-objdump-19", "-d", f"--start-address={f.start:#x}", f"--stop-address={limit:#x}", path])
        end = f.start
        for line in out.splitlines():
            m = _OBJDUMP_INSN.match(line)
            if not m:
                continue
            addr, raw, mnem = int(m.group(1), 16), m.group(2).split(), m.group(3)
            if mnem.startswith(_PADDING_MNEMONICS) or (not "".join(raw).strip("0") and not thumb):
                continue
            end = addr + sum(len(word) // 2 for word in raw)
        if end == f.end:
            rep.counts["inferred_sizes_matched"] = rep.counts.get("inferred_sizes_matched", 0) + 1
        else:
            rep.unexplained.append(
                f"extent: our {f.name} ends at {f.end:#x}, llvm-objdump's last instruction "
                f"before {limit:#x} ends at {end:#x}"
            )


def _verify_lines(rep: Report, path: str, ours: list[Function]) -> None:
    spans = sorted((r.start, r.end) for f in ours if f.label_source != "symtab" for r in f.ranges)
    starts = [s for s, _ in spans]

    def inside(a: int) -> bool:
        k = bisect_right(starts, a) - 1
        return k >= 0 and a < spans[k][1]

    oracle = {
        (a, ln, n)
        for a, ln, n in parse_dwarfdump_lines(_run([DUMP_TOOL, "--debug-line", path]).splitlines())
        if inside(a)
    }
    mine = {(r.address, r.line, r.length) for f in ours for r in f.lines}
    rep.counts["lines_oracle"] = len(oracle)
    rep.counts["lines_matched"] = len(oracle & mine)
    for a, ln, n in sorted(oracle - mine)[:20]:
        rep.unexplained.append(f"lines: llvm-dwarfdump row {a:#x} line {ln} ({n} bytes) missing from ours")
    for a, ln, n in sorted(mine - oracle)[:20]:
        rep.unexplained.append(f"lines: our row {a:#x} line {ln} ({n} bytes) not in llvm-dwarfdump")


def _fmt(ranges: Iterable[Range]) -> str:
    return " ".join(f"[{r.start:#x},{r.end:#x})" for r in ranges)
