"""Cross builds with clang-19 + lld for Windows; our PE/PDB reading against
``llvm-pdbutil-19`` (the oracle) on the same files."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pefile
import pytest

from assemblage.binaries.pdb import read_pdb
from assemblage.binaries.pe import analyze_pe, classify_pdata, read_pdata
from assemblage.errors import InvalidBinaryError, PdbMismatchError
from tests.conftest import unavailable

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "windows"
TOOLS = ("clang-19", "clang++-19", "ld.lld-19", "llvm-pdbutil-19")
MINGW_ROOTS = ("/usr/x86_64-w64-mingw32", "/usr/i686-w64-mingw32")

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, scope="module")
def _tools() -> None:
    if any(shutil.which(t) is None for t in TOOLS) or not all(Path(r).is_dir() for r in MINGW_ROOTS):
        unavailable(
            "needs clang-19, lld-19, llvm-pdbutil-19 and mingw-w64 (apt-get install clang-19 lld-19 llvm-19 "
            "gcc-mingw-w64 g++-mingw-w64)"
        )


TRIPLES = {"x86_64": "x86_64-w64-mingw32", "i686": "i686-w64-mingw32"}

# (id, arch, language, kind, opt); "+col" adds -gcolumn-info (line blocks with a column table)
BUILDS = [
    ("c-x64-O2+col", "x86_64", "c", "exe", "O2"),
    ("c-x86-O0", "i686", "c", "exe", "O0"),
    ("cpp-x64-O1", "x86_64", "cpp", "exe", "O1"),
    ("cpp-x86-O2", "i686", "cpp", "exe", "O2"),
    ("dll-x64-Os", "x86_64", "dll", "dll", "Os"),
    ("dll-x86-O3", "i686", "dll", "dll", "O3"),
]


def cross_build(
    out_dir: Path, arch: str, lang: str, kind: str, opt: str, extra: tuple[str, ...] = ()
) -> tuple[Path, Path]:
    """Compile one fixture with clang-19 for Windows; return (PE, PDB)."""
    src_dir = FIXTURES / lang
    sources = sorted(src_dir.glob("*.c")) + sorted(src_dir.glob("*.cpp"))
    ext = "dll" if kind == "dll" else "exe"
    pe = out_dir / f"{lang}-{arch}-{opt}.{ext}"
    pdb = pe.with_suffix(".pdb")
    cc = "clang++-19" if lang == "cpp" else "clang-19"
    argv = [
        cc,
        f"--target={TRIPLES[arch]}",
        f"-{opt}",
        "-g",
        "-gcodeview",
        "-fuse-ld=lld-19",
        f"-Wl,--pdb={pdb}",
        *extra,
        *map(str, sources),
        "-o",
        str(pe),
    ]
    if kind == "dll":
        argv.insert(1, "-shared")
    subprocess.run(argv, check=True, cwd=out_dir, capture_output=True)
    return pe, pdb


@pytest.fixture(scope="module", params=BUILDS, ids=[b[0] for b in BUILDS])
def built(request, tmp_path_factory):
    _id, arch, lang, kind, opt = request.param
    d = tmp_path_factory.mktemp(_id)
    pe, pdb = cross_build(d, arch, lang, kind, opt, ("-gcolumn-info",) if _id.endswith("+col") else ())
    return {"pe": pe, "pdb": pdb, "arch": arch, "kind": kind, "opt": opt, "lang": lang}


# -- the oracle -------------------------------------------------------------
_MOD = re.compile(r"^\s*Mod (\d+) \| `(.*)`:")
_PROC = re.compile(r"^\s*\d+ \| S_([GL])PROC32(?:_ID)? \[size = \d+\] `(.*)`$")
_PROC_ADDR = re.compile(r"addr = ([0-9A-F]{4}):(\d+), code size = (\d+)")
_BLOCK = re.compile(r"^\s+([0-9A-F]{4}):([0-9A-F]{8})-([0-9A-F]{8}), line/(?:column/)?addr entries = (\d+)")
_ENTRY = re.compile(r"(\d+) ([0-9A-F]{8})")


def _pdbutil(pdb: Path, *args: str) -> list[str]:
    out = subprocess.run(["llvm-pdbutil-19", "dump", *args, str(pdb)], check=True, capture_output=True, text=True)
    return out.stdout.splitlines()


def _section_vas(pe_path: Path) -> list[int]:
    pe = pefile.PE(str(pe_path), fast_load=True)
    try:
        return [0] + [s.VirtualAddress for s in pe.sections]
    finally:
        pe.close()


def oracle_procedures(pdb: Path, pe: Path) -> set[tuple[str, int, int]]:
    """(name, rva, size) of every S_[GL]PROC32 that llvm-pdbutil prints."""
    vas = _section_vas(pe)
    out: set[tuple[str, int, int]] = set()
    lines = _pdbutil(pdb, "-symbols")
    for i, line in enumerate(lines):
        m = _PROC.match(line)
        if m:
            a = _PROC_ADDR.search(lines[i + 1])
            seg, off, size = int(a.group(1), 16), int(a.group(2)), int(a.group(3))
            if 0 < seg < len(vas):
                out.add((m.group(2), vas[seg] + off, size))
    return out


def oracle_lines(pdb: Path, pe: Path) -> tuple[set[tuple[str, int, int]], list[tuple[int, int]]]:
    """(file, line, rva) rows and the (start, end) RVA span of every line block.

    llvm-pdbutil 19 repeats the previous module's blocks under modules that
    have no line data, with "(unknown file name offset N)" for the file:
    those repeats are skipped.
    """
    vas = _section_vas(pe)
    rows: set[tuple[str, int, int]] = set()
    blocks: list[tuple[int, int]] = []
    file = None
    for line in _pdbutil(pdb, "-l"):
        if _MOD.match(line):
            file = None
            continue
        b = _BLOCK.match(line)
        if b:
            seg = int(b.group(1), 16)
            if file is not None:
                blocks.append((vas[seg] + int(b.group(2), 16), vas[seg] + int(b.group(3), 16)))
            continue
        if line.startswith("(unknown file name"):
            file = None
        elif line and not line.startswith(" ") and "(MD5:" in line or "(None)" in line:
            file = line.rsplit(" (", 1)[0]
        elif file is not None and line.startswith("  ") and _ENTRY.search(line):
            for ln, addr in _ENTRY.findall(line):
                rows.add((file, int(ln), vas[seg] + int(addr, 16)))
    return rows, blocks


_PUB = re.compile(r"^\s*\d+ \| S_PUB32 \[size = \d+\] `(.*)`$")
_PUB_ADDR = re.compile(r"flags = (.*), addr = ([0-9A-F]{4}):(\d+)")
_SITE = re.compile(r"^\s*\d+ \| S_INLINESITE2? \[size = \d+\]")
_SITE_CALLEE = re.compile(r"inlinee = 0x[0-9a-fA-F]+ \((.*)\), parent = \d+")


def oracle_publics(pdb: Path, pe: Path) -> set[tuple[str, int | None, bool]]:
    vas = _section_vas(pe)
    out = set()
    lines = _pdbutil(pdb, "-publics")
    for i, line in enumerate(lines):
        m = _PUB.match(line)
        if m:
            a = _PUB_ADDR.search(lines[i + 1])
            seg, off = int(a.group(2), 16), int(a.group(3))
            out.add((m.group(1), vas[seg] + off if 0 < seg < len(vas) else None, "function" in a.group(1)))
    return out


_CODE = re.compile(r"code (end )?0x([0-9A-F]+)(?: \(\+0x[0-9A-F]+\))?(?: length 0x([0-9A-F]+))?")


def oracle_inline_sites(pdb: Path) -> list[tuple[str, tuple[tuple[int, int], ...]]]:
    """(callee, merged ranges relative to the procedure) from llvm-pdbutil's
    decoded annotations: it prints the code offset after every opcode."""
    lines = _pdbutil(pdb, "-symbols")
    out = []
    for i, line in enumerate(lines):
        if not _SITE.match(line):
            continue
        callee = _SITE_CALLEE.search(lines[i + 1]).group(1)
        ranges: list[tuple[int, int]] = []
        open_at = None
        for ann in lines[i + 2 :]:
            if " | " in ann or not ann.strip() or ann.strip().startswith(("type", "register")):
                break
            m = _CODE.search(ann)
            if not m:
                continue
            at = int(m.group(2), 16)
            if m.group(1):  # code end
                ranges.append((open_at if open_at is not None else at, at))
                open_at = None
            else:
                if open_at is not None:
                    ranges.append((open_at, at))
                open_at = at
                if m.group(3):
                    ranges.append((at, at + int(m.group(3), 16)))
                    open_at = None
        merged: list[tuple[int, int]] = []
        for lo, hi in sorted(r for r in ranges if r[1] > r[0]):
            if merged and lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        out.append((callee, tuple(merged)))
    return sorted(out)


def oracle_identity(pdb: Path) -> tuple[str, int]:
    text = "\n".join(_pdbutil(pdb, "-summary"))
    guid = re.search(r"GUID: \{([0-9A-F-]+)\}", text).group(1)
    return guid, int(re.search(r"Age: (\d+)", text).group(1))


# -- the tests ----------------------------------------------------------------
def test_procedures_equal_llvm_pdbutil(built):
    pdb = read_pdb(built["pdb"])
    ours = sorted((p.name, p.rva, p.length) for p in pdb.procedures)
    assert len(ours) == len(set(ours)), "a procedure was read twice"
    assert set(ours) == oracle_procedures(built["pdb"], built["pe"])
    assert len(ours) >= 3


def test_functions_in_analysis_match_procedures(built):
    a = analyze_pe(built["pe"], pdb=built["pdb"])
    oracle = oracle_procedures(built["pdb"], built["pe"])
    assert {(f.name, f.start, f.size) for f in a.functions} == oracle
    for f in a.functions:
        assert f.label_source == "pdb"
        assert f.end == f.start + f.size  # no S_SEPCODE from clang: one range each
        assert f.sha256 is not None


def test_lines_equal_llvm_pdbutil(built):
    a = analyze_pe(built["pe"], pdb=built["pdb"])
    rows, blocks = oracle_lines(built["pdb"], built["pe"])
    ours = [(r.source_file, r.line, r.address) for f in a.functions for r in f.lines]
    assert set(ours) == rows
    # lengths: the rows of each line block tile it exactly, ending at the block's end
    all_rows = sorted((r.address, r.length) for f in a.functions for r in f.lines)
    for start, end in blocks:
        inside = [(addr, n) for addr, n in all_rows if start <= addr < end]
        assert inside and inside[0][0] == start
        assert max(addr + n for addr, n in inside) == end
        assert sum(n for _, n in inside) == end - start
    # every row sits inside its function
    for f in a.functions:
        for r in f.lines:
            assert f.start <= r.address and r.address + r.length <= f.end, (f.name, r)


def test_publics_equal_llvm_pdbutil(built):
    pdb = read_pdb(built["pdb"])
    ours = {(p.name, p.rva, p.is_function) for p in pdb.publics}
    assert ours == oracle_publics(built["pdb"], built["pe"])


def test_inline_sites_match_oracle_and_lie_in_their_caller(built):
    pdb = read_pdb(built["pdb"])
    ours = sorted(
        (s.callee, tuple((lo - s.procedure_rva, hi - s.procedure_rva) for lo, hi in s.ranges)) for s in pdb.inline_sites
    )
    assert ours == oracle_inline_sites(built["pdb"])
    procs = {p.rva: p for p in pdb.procedures}
    for s in pdb.inline_sites:
        parent = procs[s.procedure_rva]
        for lo, hi in s.ranges:
            assert parent.rva <= lo < hi <= parent.rva + parent.length, (s, parent)


def test_headers_identity_and_producers(built):
    a = analyze_pe(built["pe"], pdb=built["pdb"])
    assert a.format == "pe"
    assert (a.arch, a.bits) == ((built["arch"], 64) if built["arch"] == "x86_64" else ("i686", 32))
    assert a.kind == ("shared" if built["kind"] == "dll" else "executable")
    assert (a.pdb_guid, a.pdb_age) == oracle_identity(built["pdb"])
    assert a.observed_opt == built["opt"]
    assert all(p.compiler == "clang" and p.version.startswith("19.") for p in a.producers)
    assert {".text", ".rdata"} <= {s.name for s in a.sections}
    if built["kind"] == "dll":
        assert {"fnv1a", "count_char", "safe_len"} <= set(a.exports)
    assert any(i.lower().startswith(("msvcrt.dll!", "kernel32.dll!")) for i in a.imports)


def test_pdata_starts_are_all_explained(built):
    a = analyze_pe(built["pe"], pdb=built["pdb"])
    pe = pefile.PE(str(built["pe"]), fast_load=True)
    if built["arch"] != "x86_64":  # 32-bit images unwind without .pdata: none in the file, none read
        exc_dir = pe.OPTIONAL_HEADER.DATA_DIRECTORY[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_EXCEPTION"]]
        assert exc_dir.Size == 0 and "pdata" not in a.extra
        return
    entries = read_pdata(pe, pe.__data__)
    verdicts = dict.fromkeys(("function_start", "fragment", "no_debug_info", "unexplained"), 0)
    for _e, v in classify_pdata(entries, a.functions):
        verdicts[v] += 1
    if built["kind"] == "exe":  # the DLL's three functions are leaves: no unwind info
        assert verdicts["function_start"] >= 2
    assert a.extra["pdata"].get("unexplained", 0) == 0
    assert not [d for d in a.disagreements if d.kind == "pdata_not_a_function"]
    # without the "no debug info" explanation the CRT's starts are unexplained: the rule matters
    assert verdicts["unexplained"] > 0


def test_pdb_found_next_to_the_pe_by_codeview_basename(built, tmp_path):
    pe = tmp_path / built["pe"].name
    shutil.copy(built["pe"], pe)
    shutil.copy(built["pdb"], tmp_path / built["pdb"].name)
    a = analyze_pe(pe)
    assert a.pdb_path == str(tmp_path / built["pdb"].name)
    assert {f.label_source for f in a.functions} == {"pdb"}


def foreign_pdb(tmp_path: Path, arch: str) -> Path:
    """The PDB of another, unrelated program."""
    src = tmp_path / "other.c"
    src.write_text("int other(int x) { return x + 1; }\nint main(void) { return other(2); }\n")
    other_pe, other_pdb = tmp_path / "other.exe", tmp_path / "other.pdb"
    subprocess.run(
        [
            "clang-19",
            f"--target={TRIPLES[arch]}",
            "-g",
            "-gcodeview",
            "-fuse-ld=lld-19",
            f"-Wl,--pdb={other_pdb}",
            str(src),
            "-o",
            str(other_pe),
        ],
        check=True,
        capture_output=True,
    )
    return other_pdb


def test_foreign_pdb_is_refused(built, tmp_path):
    other_pdb = foreign_pdb(tmp_path, built["arch"])
    with pytest.raises(PdbMismatchError, match="does not belong to this PE"):
        analyze_pe(built["pe"], pdb=other_pdb)
    # a stale PDB found next to the PE is not used, and the reason is kept
    copy = tmp_path / built["pe"].name
    shutil.copy(built["pe"], copy)
    shutil.copy(other_pdb, copy.with_name(built["pdb"].name))
    a = analyze_pe(copy)
    assert "pdb_refused" in a.extra and a.pdb_path != str(other_pdb)
    # no label from the stale PDB: only the DWARF that mingw's runtime objects carry, none of the program's own
    assert {f.label_source for f in a.functions} == {"dwarf"}
    assert a.functions and not [
        f.name for f in a.functions if f.source_file and f.source_file.startswith(str(FIXTURES))
    ]


def test_truncated_pdb_is_an_invalid_binary(built, tmp_path):
    data = built["pdb"].read_bytes()
    bad = tmp_path / "cut.pdb"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidBinaryError):
        read_pdb(bad)
    with pytest.raises(InvalidBinaryError):
        analyze_pe(built["pe"], pdb=bad)


def test_analyze_cli_json(built, tmp_path):
    """The installed console script, as a user runs it (see also tests/integration/test_cli.py)."""
    exe = Path(sys.executable).parent / "assemblage"
    proc = subprocess.run(
        [str(exe), "analyze", str(built["pe"]), "--pdb", str(built["pdb"]), "--json"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout.splitlines()[0])
    assert doc["format"] == "pe" and doc["arch"] == built["arch"]
    oracle = oracle_procedures(built["pdb"], built["pe"])
    assert {(f["name"], f["start"], f["size"]) for f in doc["functions"]} == oracle
    assert doc["pdb_path"] == str(built["pdb"])
    # a foreign PDB is refused with the InvalidBinaryError exit code and a message saying why
    other = foreign_pdb(tmp_path, built["arch"])
    bad = subprocess.run(
        [str(exe), "analyze", str(built["pe"]), "--pdb", str(other), "--json"], capture_output=True, text=True
    )
    assert bad.returncode == 6, (bad.stdout, bad.stderr)
    assert "does not belong to this PE" in " ".join((bad.stderr + bad.stdout).split())
