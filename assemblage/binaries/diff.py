"""Two builds of one binary that are not bit-identical: which sections differ, and the likely cause.

``compare_files(a, b)`` splits both files into named regions (ELF: header,
program and section header tables, each section; PE: headers and each
section, long mingw names resolved; PDB and anything else: the whole file),
compares region by region, and names a cause for each differing region:

====================  =======================================================
cause                 recognised by
====================  =======================================================
``date_time``         differing strings that look like ``__DATE__``
                      (``Nov 14 2023``), ``__TIME__`` (``22:13:20``) or an
                      ISO date a build step wrote
``random_names``      differing names made at random: gcc's ``/tmp/ccXXXXXX``,
                      clang's temporary objects (``main-1a2b3c.o``, which lld
                      copies into PDBs), LTO's ``.lto_priv.N``/``ltrans``
                      names, ``_GLOBAL__`` names with a random suffix
``build_path``        differing strings that are paths (a build outside the
                      fixed ``/build``, e.g. without the sandbox)
``source_checksum``   DWARF 5 line tables whose file names agree but whose
                      MD5 of a source file differs (clang records them): a
                      file the build generated is not the same (it wrote the
                      date into a comment, say)
``ordering``          the same strings, or the same fixed-size records
                      (symbols, relocations), in another order
``timestamp``         the differing bytes are, in both files, 32-bit
                      little-endian times between 2000 and now
``pe_timestamp``      only the PE header's TimeDateStamp differs
``pe_debug_guid``     only the debug directory's CodeView GUID/age or time
                      stamp differ (they follow the PDB's content)
``pe_checksum``       only the PE checksum differs (it follows everything else)
``build_id``          ``.note.gnu.build-id``, a hash of the other contents
``layout``            offsets and sizes that moved because another region
                      changed (only given when another region has a cause)
``unknown``           none of the above
====================  =======================================================

The binary's causes are its regions' causes, primary ones (not
``build_id``/``layout``/``pe_checksum``, which follow from others) first.
Nothing here knows about the database; the pipeline's ``verify`` stores it.
"""

from __future__ import annotations

import io
import re
import struct
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["CAUSES", "DERIVED_CAUSES", "FileDiff", "SectionDiff", "compare_bytes", "compare_files"]

CAUSES = {
    "date_time": "__DATE__/__TIME__ or a date written by the build",
    "random_names": "randomised names (-frandom-seed, LTO or compiler temporary file names)",
    "build_path": "the build path",
    "source_checksum": "the MD5 of a source file in the line table (a generated source differs)",
    "ordering": "the same content in another order",
    "timestamp": "an embedded time stamp",
    "pe_timestamp": "the PE header's TimeDateStamp",
    "pe_debug_guid": "the PE debug directory's GUID/age (follows the PDB's content)",
    "pe_checksum": "the PE checksum (follows the other differences)",
    "build_id": "the ELF build ID (a hash of the other contents)",
    "layout": "offsets and sizes that follow from the other differences",
    "unknown": "not recognised",
}
DERIVED_CAUSES = frozenset({"build_id", "layout", "pe_checksum"})

_STRINGS = re.compile(rb"[\x20-\x7e]{4,}")
_DATE = re.compile(
    r"\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+\d{1,2}\s+\d{4}\b"
    r"|\b\d{2}:\d{2}:\d{2}\b|\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}"
)
_RANDOM = re.compile(
    r"/tmp/cc[A-Za-z0-9]{6}|\b[\w.+]+-[0-9a-f]{6}\.(?:o|obj)\b|\.lto_priv\.\d+|\bltrans\d*\b|\.ltrans"
    r"|_GLOBAL__\w*_[0-9a-fA-F]{8,}"
)
_PATH = re.compile(r"(?:^|[\s\"'=])/(?:[\w.+-]+/)+[\w.+-]*")
_MIN_TIME = 946684800  # 2000-01-01


@dataclass(frozen=True)
class SectionDiff:
    name: str
    cause: str
    detail: str = ""
    size_a: int = 0
    size_b: int = 0


@dataclass
class FileDiff:
    identical: bool
    format: str
    sections: list[SectionDiff] = field(default_factory=list)

    @property
    def causes(self) -> list[str]:
        """Distinct causes, primary ones first (a section's own cause, then those it names with "also")."""
        names = []
        for s in self.sections:
            names.append(s.cause)
            if "; also " in s.detail:
                names += [c.strip() for c in s.detail.rsplit("; also ", 1)[1].split(",") if c.strip() in CAUSES]
        seen = list(dict.fromkeys(names))
        return [c for c in seen if c not in DERIVED_CAUSES] + [c for c in seen if c in DERIVED_CAUSES]

    def to_dict(self) -> dict:
        return {
            "identical": self.identical,
            "format": self.format,
            "causes": self.causes,
            "sections": [asdict(s) for s in self.sections],
        }


@dataclass(frozen=True)
class _Region:
    name: str
    offset: int
    size: int
    entsize: int = 0


def _format(data: bytes) -> str:
    if data[:4] == b"\x7fELF":
        return "elf"
    if data[:2] == b"MZ":
        return "pe"
    if data[:24] == b"Microsoft C/C++ MSF 7.00":
        return "pdb"
    return "file"


def _elf_regions(data: bytes) -> list[_Region]:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        f = ELFFile(io.BytesIO(data))
        h = f.header
        regions = [
            _Region("ELF header", 0, h.e_ehsize),
            _Region("program headers", h.e_phoff, h.e_phnum * h.e_phentsize, h.e_phentsize),
            _Region("section headers", h.e_shoff, h.e_shnum * h.e_shentsize, h.e_shentsize),
        ]
        for sec in f.iter_sections():
            if sec["sh_type"] == "SHT_NOBITS" or not sec.name:
                continue
            regions.append(_Region(sec.name, sec["sh_offset"], sec["sh_size"], sec["sh_entsize"]))
    except (ELFError, ValueError, struct.error):
        return [_Region("file", 0, len(data))]
    return regions


def _pe_name(data: bytes, raw: bytes, symtab: int, nsyms: int) -> str:
    name = raw.rstrip(b"\0").decode("latin-1")
    if name.startswith("/") and name[1:].isdigit() and symtab:
        start = symtab + nsyms * 18 + int(name[1:])
        end = data.find(b"\0", start)
        if 0 <= start < len(data) and end > start:
            return data[start:end].decode("latin-1")
    return name


def _pe_regions(data: bytes) -> tuple[list[_Region], dict[str, list[tuple[int, int]]]]:
    """Regions, and the byte ranges of fields known to change (cause -> [(offset, size)])."""
    import pefile

    try:
        pe = pefile.PE(data=data, fast_load=True)
        pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_DEBUG"]])
    except (pefile.PEFormatError, struct.error, ValueError):
        return [_Region("file", 0, len(data))], {}
    fh, oh = pe.FILE_HEADER, pe.OPTIONAL_HEADER
    regions = [_Region("PE headers", 0, oh.SizeOfHeaders)]
    for s in pe.sections:
        name = _pe_name(data, s.Name, fh.PointerToSymbolTable, fh.NumberOfSymbols)
        regions.append(_Region(name, s.PointerToRawData, s.SizeOfRawData))
    known: dict[str, list[tuple[int, int]]] = {
        "pe_timestamp": [(fh.get_field_absolute_offset("TimeDateStamp"), 4)],
        "pe_checksum": [(oh.get_field_absolute_offset("CheckSum"), 4)],
        "pe_debug_guid": [],
    }
    for entry in getattr(pe, "DIRECTORY_ENTRY_DEBUG", []):
        known["pe_debug_guid"].append((entry.struct.get_field_absolute_offset("TimeDateStamp"), 4))
        cv = getattr(entry, "entry", None)
        if cv is not None and getattr(cv, "CvSignature", None) == b"RSDS":
            known["pe_debug_guid"].append((cv.get_file_offset() + 4, 20))  # GUID (16) + age (4)
    pe.close()
    return regions, known


def _diff_positions(a: bytes, b: bytes, limit: int = 100_000) -> list[int]:
    """Offsets where a and b differ (over the common length), at most ``limit``."""
    out: list[int] = []
    n = min(len(a), len(b))
    step = 4096
    for start in range(0, n, step):
        ca, cb = a[start : start + step], b[start : start + step]
        if ca == cb:
            continue
        out.extend(start + i for i, (x, y) in enumerate(zip(ca, cb)) if x != y)
        if len(out) >= limit:
            break
    return out[:limit]


def _strings(data: bytes) -> Counter:
    return Counter(m.decode("ascii") for m in _STRINGS.findall(data))


def _example(only_a: list[str], only_b: list[str], pattern: re.Pattern | None = None) -> str:
    def pick(xs: list[str]) -> str:
        for x in xs:
            if pattern is None or pattern.search(x):
                return x[:120]
        return xs[0][:120] if xs else ""

    return f"{pick(only_a)!r} vs {pick(only_b)!r}"


def _timestamps(a: bytes, b: bytes, positions: list[int]) -> bool:
    if not positions:
        return False
    now = time.time() + 2 * 86400
    for pos in positions:
        base = pos - pos % 4
        if base + 4 > min(len(a), len(b)):
            return False
        ta, tb = struct.unpack_from("<I", a, base)[0], struct.unpack_from("<I", b, base)[0]
        if not (_MIN_TIME <= ta <= now and _MIN_TIME <= tb <= now):
            return False
    return True


def _classify(region: _Region, a: bytes, b: bytes, known: dict[str, list[tuple[int, int]]]) -> tuple[str | None, str]:
    """(cause or None when not recognised, detail) for one differing region."""
    if region.name == ".note.gnu.build-id":
        return "build_id", ""
    positions = _diff_positions(a, b)
    if len(a) == len(b) and positions and known:
        for cause, spans in known.items():
            if spans and all(any(o <= region.offset + p < o + n for o, n in spans) for p in positions):
                return cause, ""
        # several known fields at once (time stamp + GUID + checksum in the headers)
        every = [r for ranges in known.values() for r in ranges]
        if every and all(any(o <= region.offset + p < o + n for o, n in every) for p in positions):
            hit = [
                c
                for c, ranges in known.items()
                if any(any(o <= region.offset + p < o + n for o, n in ranges) for p in positions)
            ]
            primary = [c for c in hit if c not in DERIVED_CAUSES] or hit
            return primary[0], "also " + ", ".join(c for c in hit if c != primary[0]) if len(hit) > 1 else ""
    sa, sb = _strings(a), _strings(b)
    only_a, only_b = sorted((sa - sb).keys()), sorted((sb - sa).keys())
    changed = only_a + only_b
    if changed:
        found: dict[str, re.Pattern] = {}
        for x in changed:  # each string counts for its most telling cause
            for cause, pattern in (("date_time", _DATE), ("random_names", _RANDOM), ("build_path", _PATH)):
                if pattern.search(x) or (cause == "build_path" and "asm-build-" in x):
                    found.setdefault(cause, pattern)
                    break
        ordered = [c for c in ("date_time", "random_names", "build_path") if c in found]
        if ordered:
            first = ordered[0]
            detail = _example(only_a, only_b, found[first])
            if len(ordered) > 1:
                detail += "; also " + ", ".join(ordered[1:])
            return first, detail
    elif len(a) == len(b) and sorted(a) == sorted(b):
        return "ordering", "the same bytes in another order"
    if region.entsize and len(a) == len(b) and len(a) % region.entsize == 0:
        e = region.entsize
        if Counter(a[i : i + e] for i in range(0, len(a), e)) == Counter(b[i : i + e] for i in range(0, len(b), e)):
            return "ordering", f"the same {len(a) // e} records of {e} bytes in another order"
    if (
        not changed
        and sa
        and sa == sb
        and len(a) == len(b)
        and region.name.startswith((".debug_str", ".strtab", ".dynstr", ".shstrtab"))
    ):
        return "ordering", "the same strings in another order"
    if len(a) == len(b) and _timestamps(a, b, positions):
        return "timestamp", f"{len(positions)} byte(s) that read as times in both files"
    return None, f"{len(positions)} byte(s) differ" if len(a) == len(b) else f"size {len(a)} vs {len(b)}"


def compare_bytes(a: bytes, b: bytes) -> FileDiff:
    """Compare two builds of one file (see the module's docstring)."""
    fmt = _format(a)
    if a == b:
        return FileDiff(identical=True, format=fmt)
    known_a: dict[str, list[tuple[int, int]]] = {}
    if fmt == "elf":
        regions_a, regions_b = _elf_regions(a), _elf_regions(b)
    elif fmt == "pe":
        (regions_a, known_a), (regions_b, _) = _pe_regions(a), _pe_regions(b)
    else:
        regions_a, regions_b = [_Region(fmt, 0, len(a))], [_Region(fmt, 0, len(b))]
    by_name_b = _by_name(regions_b)
    out: list[SectionDiff] = []
    pending: list[tuple[str, str, int, int]] = []  # unrecognised: (name, detail, sizes)
    seen = set()
    for name, ra in _by_name(regions_a).items():
        seen.add(name)
        rb = by_name_b.get(name)
        if rb is None:
            pending.append((name, "only in the first file", ra.size, 0))
            continue
        da, db = a[ra.offset : ra.offset + ra.size], b[rb.offset : rb.offset + rb.size]
        if da == db:
            continue
        cause, detail = _classify(ra, da, db, known_a if ra.offset == rb.offset else {})
        if cause is None and fmt == "elf" and name == ".debug_line":
            cause, detail = _line_checksums(a, b) or (None, detail)
        if cause is None:
            pending.append((name, detail, len(da), len(db)))
        else:
            out.append(SectionDiff(name, cause, detail, len(da), len(db)))
    for name, rb in by_name_b.items():
        if name not in seen:
            pending.append((name, "only in the second file", 0, rb.size))
    fallback = "layout" if any(s.cause not in DERIVED_CAUSES for s in out) else "unknown"
    out += [SectionDiff(name, fallback, detail, sa, sb) for name, detail, sa, sb in pending]
    if not out:  # bytes outside every region (padding between sections)
        out.append(
            SectionDiff("(between sections)", "unknown", f"{len(_diff_positions(a, b))} byte(s) differ", len(a), len(b))
        )
    return FileDiff(identical=False, format=fmt, sections=out)


def _file_checksums(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """(path, MD5) of every DWARF 5 line-table file entry that has a checksum; None if unreadable."""
    from elftools.common.exceptions import DWARFError, ELFError
    from elftools.elf.elffile import ELFFile

    try:
        dwarf = ELFFile(io.BytesIO(data)).get_dwarf_info()
        out = []
        for cu in dwarf.iter_CUs():
            program = dwarf.line_program_for_CU(cu)
            for entry in (program.header.get("file_names") or []) if program else []:
                md5 = entry.get("DW_LNCT_MD5")
                if md5 is not None:
                    out.append((bytes(entry.get("DW_LNCT_path") or b""), bytes(md5)))
        return out
    except (DWARFError, ELFError, ValueError, KeyError, struct.error):
        return None


def _line_checksums(a: bytes, b: bytes) -> tuple[str, str] | None:
    """``source_checksum`` when the line tables name the same files but some file's MD5 differs."""
    ca, cb = _file_checksums(a), _file_checksums(b)
    if not ca or not cb or len(ca) != len(cb) or [p for p, _ in ca] != [p for p, _ in cb]:
        return None
    changed = sorted({p.decode("utf-8", "replace") for (p, x), (_, y) in zip(ca, cb) if x != y})
    if not changed:
        return None
    return "source_checksum", "MD5 of " + ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else "")


def _by_name(regions: list[_Region]) -> dict[str, _Region]:
    out: dict[str, _Region] = {}
    for r in regions:
        name, n = r.name, 2
        while name in out:
            name, n = f"{r.name}#{n}", n + 1
        out[name] = r
    return out


def compare_files(a: Path, b: Path) -> FileDiff:
    return compare_bytes(Path(a).read_bytes(), Path(b).read_bytes())
