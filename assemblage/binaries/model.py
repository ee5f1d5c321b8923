"""What analysing one binary yields: plain data, no I/O, no database.

Every format backend (ELF, PE, PE+PDB) fills the same :class:`BinaryAnalysis`.
Addresses are integers: virtual addresses for ELF (what ``nm`` and
``llvm-dwarfdump`` print), RVAs for PE (what ``llvm-pdbutil`` resolves).
Every ``end`` is exclusive.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

__all__ = [
    "BinaryAnalysis",
    "Disagreement",
    "Function",
    "Inlining",
    "LineRow",
    "Producer",
    "Range",
    "Section",
]

Format = Literal["elf", "pe", "pdb"]
LabelSource = Literal["dwarf", "symtab", "both", "pdb", "pdata", "exports"]


@dataclass(frozen=True, slots=True)
class Range:
    start: int
    end: int  # exclusive

    def __reduce__(self) -> tuple[Any, ...]:  # compact, fast pickling (results cross a pipe)
        return (Range, (self.start, self.end))


@dataclass(slots=True)
class LineRow:
    """One row of a line table, attributed to a function."""

    address: int
    length: int
    source_file: str | None
    line: int

    def __reduce__(self) -> tuple[Any, ...]:
        return (LineRow, (self.address, self.length, self.source_file, self.line))


@dataclass(slots=True)
class Function:
    """A function with its boundaries and labels.

    ``start``/``end`` are the lowest/highest addresses over all ``ranges``;
    ``size`` is the sum of the ranges' lengths (so it differs from
    ``end - start`` for split functions such as gcc's ``.cold`` parts).
    """

    name: str
    start: int
    end: int
    size: int
    ranges: list[Range] = field(default_factory=list)
    linkage_name: str | None = None
    demangled: str | None = None
    source_file: str | None = None
    decl_line: int | None = None
    compilation_unit: str | None = None
    is_static: bool | None = None
    label_source: LabelSource = "dwarf"
    sha256: str | None = None  # of the function's bytes, ranges concatenated in address order
    pic_hash: str | None = None  # position-independent hash (addresses and displacements masked)
    prototype: str | None = None
    lines: list[LineRow] = field(default_factory=list)
    # Added by the ELF/DWARF backend (all optional, so other backends can ignore them):
    entry: int | None = None  # the entry address (DW_AT_low_pc / entry_pc / first range); not always ``start``
    aliases: list[str] = field(default_factory=list)  # other names for exactly the same code (symbols, DIEs)
    pic_hash_method: str | None = None  # how pic_hash was made: "x86-masked", "aarch64-masked", "raw"
    # the symbol said size 0 (crt start-up code such as _init, deregister_tm_clones): the extent is
    # the code from the symbol to the next function or the end of its section, padding trimmed
    size_inferred: bool = False

    def __reduce__(self) -> tuple[Any, ...]:
        # The line rows as four columns (plain ints and shared strings), not one object each: pickle
        # memoizes and reduces every object it writes, which for a binary's ~20k rows cost more than
        # the rest of its analysis result (the bounded analysis sends it through a pipe).
        rows = self.lines
        values = [getattr(self, f) for f in _FUNCTION_FIELDS]
        values[_LINES_AT] = (
            [r.address for r in rows],
            [r.length for r in rows],
            [r.source_file for r in rows],
            [r.line for r in rows],
        )
        return (_function, tuple(values))


def _function(*values: Any) -> Function:
    f = Function(*values)
    addresses, lengths, files, lines = values[_LINES_AT]  # the columns __reduce__ wrote
    f.lines = list(map(LineRow, addresses, lengths, files, lines))
    return f


_FUNCTION_FIELDS: tuple[str, ...] = ()  # filled below, in declaration order


@dataclass(frozen=True, slots=True)
class Inlining:
    """An inlined copy of ``callee`` inside ``caller`` at ``ranges``. Not a function."""

    callee: str
    caller: str | None
    ranges: tuple[Range, ...]
    call_file: str | None = None
    call_line: int | None = None
    function: str | None = None  # the out-of-line function whose code holds this copy

    def __reduce__(self) -> tuple[Any, ...]:
        return (Inlining, (self.callee, self.caller, self.ranges, self.call_file, self.call_line, self.function))


_FUNCTION_FIELDS = tuple(f.name for f in fields(Function))
_LINES_AT = _FUNCTION_FIELDS.index("lines")


@dataclass(frozen=True, slots=True)
class Producer:
    """A compiler record read back from the binary (DW_AT_producer, .comment, PDB compile record)."""

    raw: str
    compiler: str | None  # "gcc", "clang", "msvc"
    version: str | None
    flags: tuple[str, ...] = ()
    opt: str | None = None  # "O0".."O3", "Os", "Oz", "Og", "Ofast"; MSVC "Od", "O1", "O2", "Ox"
    source: str = "dwarf"  # where it was read: "dwarf", "comment", "pdb"


@dataclass(frozen=True, slots=True)
class Disagreement:
    """Where two label sources (e.g. DWARF and the symbol table) disagree."""

    kind: str  # "missing_in_symtab", "missing_in_dwarf", "size_differs", "name_differs", ...
    address: int
    detail: str


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    address: int
    size: int
    flags: str = ""


@dataclass(slots=True)
class BinaryAnalysis:
    """Everything we know about one binary file."""

    path: str
    sha256: str
    size: int
    format: Format
    arch: str  # "x86_64", "i686", "aarch64", "armhf"
    bits: int
    kind: str = "executable"  # "executable", "shared", "relocatable", "pdb"
    build_id: str | None = None
    text_sha256: str | None = None  # links a stripped copy to its unstripped original
    stripped: bool = False
    has_debug_info: bool = False
    sections: list[Section] = field(default_factory=list)
    functions: list[Function] = field(default_factory=list)
    inlinings: list[Inlining] = field(default_factory=list)
    producers: list[Producer] = field(default_factory=list)
    observed_opt: str | None = None
    observed_flags: tuple[str, ...] = ()
    disagreements: list[Disagreement] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)
    exports: list[str] = field(default_factory=list)
    pdb_path: str | None = None  # PE: the CodeView path; analysis with a PDB: the PDB used
    pdb_guid: str | None = None
    pdb_age: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, *, lines: bool = False) -> dict[str, Any]:
        """The ``assemblage analyze --json`` object (its shape: docs/cli.md, ``assemblage analyze``)."""
        out: dict[str, Any] = {
            "path": self.path,
            "sha256": self.sha256,
            "size": self.size,
            "format": self.format,
            "arch": self.arch,
            "bits": self.bits,
            "kind": self.kind,
            "build_id": self.build_id,
            "stripped": self.stripped,
            "observed_opt": self.observed_opt,
            "observed_flags": list(self.observed_flags),
            "text_sha256": self.text_sha256,
            "has_debug_info": self.has_debug_info,
            "producers": [asdict(p) for p in self.producers],
            "pdb_path": self.pdb_path,
            "functions": [],
            "inlinings": [asdict(i) for i in self.inlinings],
            "disagreements": [asdict(d) for d in self.disagreements],
        }
        for f in self.functions:
            item: dict[str, Any] = {
                "name": f.name,
                "start": f.start,
                "end": f.end,
                "size": f.size,
                "source_file": f.source_file,
                "decl_line": f.decl_line,
                "linkage_name": f.linkage_name,
                "demangled": f.demangled,
                "ranges": [[r.start, r.end] for r in f.ranges],
                "label_source": f.label_source,
                "sha256": f.sha256,
                "pic_hash": f.pic_hash,
                "pic_hash_method": f.pic_hash_method,
                "entry": f.entry,
                "aliases": list(f.aliases),
                "compilation_unit": f.compilation_unit,
                "is_static": f.is_static,
            }
            if lines:
                item["lines"] = [asdict(r) for r in f.lines]
            out["functions"].append(item)
        return out
