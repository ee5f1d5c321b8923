"""mingw-w64 gcc 12 builds for Windows: PE with DWARF inside, read by the
project's DWARF reader, checked against ``llvm-dwarfdump-19`` on the same file."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pefile
import pytest

from assemblage.binaries.pe import analyze_pe, classify_pdata, read_pdata
from tests.conftest import unavailable

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "windows"
GCC = {"x86_64": "x86_64-w64-mingw32-gcc", "i686": "i686-w64-mingw32-gcc"}
GXX = {"x86_64": "x86_64-w64-mingw32-g++", "i686": "i686-w64-mingw32-g++"}

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, scope="module")
def _tools() -> None:
    if any(shutil.which(t) is None for t in (*GCC.values(), *GXX.values(), "llvm-dwarfdump-19")):
        unavailable("needs mingw-w64 (apt-get install gcc-mingw-w64 g++-mingw-w64) and llvm-dwarfdump-19 (llvm-19)")


BUILDS = [
    ("c-x64-O2", "x86_64", "c", "exe", "O2"),
    ("c-x86-O0", "i686", "c", "exe", "O0"),
    ("cpp-x64-O1", "x86_64", "cpp", "exe", "O1"),
    ("dll-x86-Os", "i686", "dll", "dll", "Os"),
]


@pytest.fixture(scope="module", params=BUILDS, ids=[b[0] for b in BUILDS])
def built(request, tmp_path_factory):
    _id, arch, lang, kind, opt = request.param
    d = tmp_path_factory.mktemp(_id)
    src = FIXTURES / lang
    sources = sorted(src.glob("*.c")) + sorted(src.glob("*.cpp"))
    out = d / f"{lang}.{'dll' if kind == 'dll' else 'exe'}"
    cc = GXX[arch] if lang == "cpp" else GCC[arch]
    argv = [cc, f"-{opt}", "-g", "-grecord-gcc-switches", *map(str, sources), "-o", str(out)]
    if kind == "dll":
        argv.insert(1, "-shared")
    subprocess.run(argv, check=True, capture_output=True)
    return {"pe": out, "arch": arch, "kind": kind, "opt": opt, "lang": lang}


_DIE = re.compile(r"^(0x[0-9a-f]+):\s+(DW_TAG_\w+)")
_ATTR = re.compile(r"^\s+(DW_AT_\w+)\s+\((.*)$")
_PAIR = re.compile(r"\[0x([0-9a-f]+), 0x([0-9a-f]+)\)")
_REF = re.compile(r"^(0x[0-9a-f]+)")


def oracle_functions(pe_path: Path) -> set[tuple[str, int, int]]:
    """(name, lowest RVA, total size) of every concrete subprogram llvm-dwarfdump prints.

    Names are ``DW_AT_name``, else followed through ``DW_AT_abstract_origin`` /
    ``DW_AT_specification`` by DIE offset (llvm-dwarfdump shows the linkage
    name of a referenced DIE, so its quoted text is not used).
    """
    pe = pefile.PE(str(pe_path), fast_load=True)
    base = pe.OPTIONAL_HEADER.ImageBase
    text = subprocess.run(
        ["llvm-dwarfdump-19", "--debug-info", str(pe_path)], check=True, capture_output=True, text=True
    ).stdout
    dies: dict[int, dict] = {}
    cur: dict | None = None
    last = None
    for line in text.splitlines():
        m = _DIE.match(line)
        if m:
            cur, last = {"tag": m.group(2)}, None
            dies[int(m.group(1), 16)] = cur
            continue
        if cur is None:
            continue
        a = _ATTR.match(line)
        if a:
            last, val = a.group(1), a.group(2)
            if last == "DW_AT_name":
                cur["name"] = val.rstrip(")").strip('"')
            elif last in ("DW_AT_abstract_origin", "DW_AT_specification"):
                cur.setdefault("ref", int(_REF.match(val).group(1), 16))
            elif last == "DW_AT_low_pc":
                cur["low"] = int(val.rstrip(")"), 16)
            elif last == "DW_AT_high_pc":
                cur["high"] = int(val.rstrip(")"), 16)
            elif last == "DW_AT_ranges":
                cur["ranges"] = [(int(x, 16), int(y, 16)) for x, y in _PAIR.findall(val)]
        elif last == "DW_AT_ranges" and _PAIR.search(line):
            cur["ranges"] += [(int(x, 16), int(y, 16)) for x, y in _PAIR.findall(line)]

    def name_of(d: dict, hops: int = 0) -> str | None:
        if "name" in d or hops > 16:
            return d.get("name")
        ref = dies.get(d.get("ref", -1))
        return name_of(ref, hops + 1) if ref else None

    out = set()
    for d in dies.values():
        if d["tag"] != "DW_TAG_subprogram":
            continue
        ranges = d.get("ranges") or ([(d["low"], d["high"])] if "low" in d and "high" in d else [])
        ranges = [(lo, hi) for lo, hi in ranges if hi > lo and lo != 0]
        name = name_of(d)
        if ranges and name:
            out.add((name, min(lo for lo, _ in ranges) - base, sum(hi - lo for lo, hi in ranges)))
    return out


def test_long_section_names_are_resolved(built):
    a = analyze_pe(built["pe"])
    names = {s.name for s in a.sections}
    assert {".debug_info", ".debug_line", ".debug_abbrev"} <= names
    assert not any(re.fullmatch(r"/\d+", n) for n in names)


def test_functions_equal_llvm_dwarfdump(built):
    a = analyze_pe(built["pe"])
    assert a.format == "pe" and a.pdb_path is None
    assert {f.label_source for f in a.functions} == {"dwarf"}
    ours = {(f.name, f.start, f.size) for f in a.functions}
    oracle = oracle_functions(built["pe"])
    assert ours == oracle, (sorted(ours - oracle)[:10], sorted(oracle - ours)[:10])
    # the entry is an RVA like start and end (it was left a virtual address), inside the function's code
    outside = [
        (f.name, f.entry, f.ranges)
        for f in a.functions
        if f.entry is None or not any(r.start <= f.entry < r.end for r in f.ranges)
    ]
    assert not outside, outside[:5]


def test_fixture_functions_have_lines_inside_them(built):
    a = analyze_pe(built["pe"])
    src = str(FIXTURES / built["lang"])
    mine = [f for f in a.functions if f.source_file and f.source_file.startswith(src)]
    assert len(mine) >= 3
    for f in mine:
        assert f.lines, f.name
        for r in f.lines:
            assert any(rg.start <= r.address < rg.end for rg in f.ranges), (f.name, r)
        assert f.sha256 and f.pic_hash


def test_headers_and_producers(built):
    a = analyze_pe(built["pe"])
    assert (a.arch, a.bits) == (("x86_64", 64) if built["arch"] == "x86_64" else ("i686", 32))
    assert a.kind == ("shared" if built["kind"] == "dll" else "executable")
    assert a.observed_opt == built["opt"]
    assert any(p.compiler == "gcc" and p.version and p.version.startswith("12") for p in a.producers)
    if built["kind"] == "dll":
        assert {"fnv1a", "count_char", "safe_len"} <= set(a.exports)


def test_pdata_starts_are_explained(built):
    a = analyze_pe(built["pe"])
    pe = pefile.PE(str(built["pe"]), fast_load=True)
    if built["arch"] != "x86_64":  # 32-bit images unwind without .pdata: none in the file, none read
        exc_dir = pe.OPTIONAL_HEADER.DATA_DIRECTORY[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_EXCEPTION"]]
        assert exc_dir.Size == 0 and "pdata" not in a.extra
        return
    assert a.extra["pdata"].get("unexplained", 0) == 0, a.disagreements
    verdicts = [v for _e, v in classify_pdata(read_pdata(pe, pe.__data__), a.functions)]
    assert verdicts.count("function_start") >= len([f for f in a.functions if f.size > 1]) // 2
