"""Ground truth on a real corpus, checked against llvm-dwarfdump-19, readelf and c++filt.

The corpus (C and C++ fixtures, gcc-11/12, clang-14/16/19, O0..Os, x86_64
plus aarch64/armhf cross builds) is compiled once per session into a temporary
folder. A compiler that is not installed skips its entries with the reason (a
failure in CI); an installed compiler that fails to build an entry fails it.
"""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from assemblage.binaries import analyze_file, analyze_file_bounded
from assemblage.binaries.verify import verify_binary
from tests.conftest import need, unavailable

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "elf"


C_SRC = ("labels.c",)
CPP_SRC = ("labels.cpp", "second.cpp")  # two units instantiating the same templates
GC = ["-ffunction-sections", "-Wl,--gc-sections"]  # drops unused_helper: its DWARF is then "discarded"


def _corpus() -> dict[str, tuple[str, tuple[str, ...], str, list[str]]]:
    """id -> (compiler, sources, opt, extra flags)."""
    out: dict[str, tuple[str, tuple[str, ...], str, list[str]]] = {}
    full = ["O0", "O1", "O2", "O3", "Os"]
    plan = [
        ("gcc-12", "g++-12", full, []),
        ("clang-19", "clang++-19", full, ["-grecord-gcc-switches"]),
        ("gcc-11", "g++-11", ["O0", "O2"], []),
        ("clang-14", "clang++-14", ["O0", "O2"], ["-grecord-gcc-switches"]),
        ("clang-16", "clang++-16", ["O1", "O3"], ["-grecord-gcc-switches"]),
        ("aarch64-linux-gnu-gcc-12", "aarch64-linux-gnu-g++-12", ["O0", "O2", "Os"], []),
    ]
    for cc, cxx, opts, extra in plan:
        for opt in opts:
            out[f"{cc}-{opt}-c"] = (cc, C_SRC, opt, extra)
            out[f"{cxx}-{opt}-cpp"] = (cxx, CPP_SRC, opt, extra)
    out["arm-linux-gnueabihf-gcc-12-O2-c"] = ("arm-linux-gnueabihf-gcc-12", C_SRC, "O2", [])
    out["gcc-12-O2-gc-c"] = ("gcc-12", C_SRC, "O2", GC)
    out["gcc-12-O2-dwarf4-c"] = ("gcc-12", C_SRC, "O2", ["-gdwarf-4"])  # .debug_ranges, DW_FORM_strp
    out["g++-12-O2-dwarf4-cpp"] = ("g++-12", CPP_SRC, "O2", ["-gdwarf-4"])
    out["clang++-19-O2-dwarf4-cpp"] = ("clang++-19", CPP_SRC, "O2", ["-gdwarf-4", "-grecord-gcc-switches"])
    out["clang++-19-O2-lld-gc-cpp"] = ("clang++-19", CPP_SRC, "O2", ["-grecord-gcc-switches", "-fuse-ld=lld", *GC])
    return out


CORPUS = _corpus()


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict[str, Path | tuple[str, str]]:
    """id -> compiled binary, or why it could not be built: ("missing" | "failed", reason)."""
    need("llvm-dwarfdump-19", "readelf")
    out_dir = tmp_path_factory.mktemp("labels")

    def build(item: tuple[str, tuple[str, tuple[str, ...], str, list[str]]]) -> tuple[str, Path | tuple[str, str]]:
        ident, (cc, srcs, opt, extra) = item
        if shutil.which(cc) is None:
            return ident, ("missing", f"not installed: {cc}")
        exe = out_dir / ident
        cmd = [cc, "-g", f"-{opt}", *extra, "-o", str(exe), *(str(FIXTURES / s) for s in srcs)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return ident, ("failed", f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-1500:]}")
        return ident, exe

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(build, CORPUS.items()))


def binary(corpus: dict[str, Path | tuple[str, str]], ident: str) -> Path:
    got = corpus[ident]
    if isinstance(got, tuple):
        kind, reason = got
        if kind == "missing":
            unavailable(reason)
        pytest.fail(f"an installed compiler failed to build {ident}: {reason}", pytrace=False)
    return got


@pytest.mark.parametrize("ident", list(CORPUS))
def test_labels_agree_with_independent_tools(corpus, ident):
    path = binary(corpus, ident)
    analysis = analyze_file(path)
    report = verify_binary(str(path), analysis)
    assert report.ok, "\n".join(report.unexplained)
    assert report.counts["dwarf_matched"] >= 5
    assert report.counts["lines_matched"] == report.counts["lines_oracle"] > 0
    if "-gc-" in ident:
        assert report.explained.get("discarded", 0) >= 1  # unused_helper was dropped by --gc-sections
        assert analysis.extra["dwarf_discarded_subprograms"] >= 1
        assert not any(f.name == "unused_helper" for f in analysis.functions)


@pytest.mark.parametrize("ident", list(CORPUS))
def test_observed_opt_is_the_requested_level(corpus, ident):
    path = binary(corpus, ident)
    a = analyze_file(path, lines=False)
    assert a.observed_opt == CORPUS[ident][2]
    assert f"-{CORPUS[ident][2]}" in a.observed_flags


def fn(analysis, name):
    found = [f for f in analysis.functions if f.name == name]
    assert found, f"{name} not found"
    return found[0]


def test_gcc_o2_c_facts(corpus):
    a = analyze_file(binary(corpus, "gcc-12-O2-c"))
    div = fn(a, "checked_div")
    assert len(div.ranges) == 2 and div.size == sum(r.end - r.start for r in div.ranges) < div.end - div.start
    assert any(d.kind == "split_part" and "checked_div.cold" in d.detail for d in a.disagreements)
    assert div.entry != div.start  # the cold part sits lower than the entry
    assert (fn(a, "add").is_static, fn(a, "main").is_static) == (True, False)
    assert fn(a, "main").label_source == "both" and fn(a, "_start").label_source == "symtab"
    assert any(d.kind == "missing_in_dwarf" and "_start" in d.detail for d in a.disagreements)
    assert any(i.callee == "square" and i.function == "sum_squares" for i in a.inlinings)
    assert not any(f.name == "square" for f in a.functions)  # always inlined: not a function
    main = fn(a, "main")
    assert main.source_file.endswith("labels.c") and main.decl_line > 0 and main.compilation_unit.endswith("labels.c")
    assert main.lines and all(main.start <= r.address < main.end for r in main.lines)
    assert main.sha256 and main.pic_hash_method == "x86-masked"
    assert a.producers[0].compiler == "gcc" and any(p.source == "comment" for p in a.producers)


def test_cpp_names(corpus):
    for ident in ("g++-12-O2-cpp", "clang++-19-O2-cpp"):
        a = analyze_file(binary(corpus, ident))
        area = [f for f in a.functions if f.linkage_name == "_ZNK6shapes6Square4areaEv"]
        assert area and area[0].name == "area" and area[0].demangled == "shapes::Square::area() const"
        assert any(f.demangled and f.demangled.startswith("int accumulate<int>(") for f in a.functions)


def test_stripped_copy_keeps_its_link(corpus, tmp_path):
    path = binary(corpus, "gcc-12-O2-c")
    stripped = tmp_path / "stripped"
    subprocess.run(["strip", "--strip-all", "-o", str(stripped), str(path)], check=True)
    full, bare = analyze_file(path), analyze_file(stripped)
    assert bare.stripped and not bare.has_debug_info and not full.stripped
    assert bare.sha256 != full.sha256 and bare.text_sha256 == full.text_sha256
    assert bare.build_id == full.build_id


def test_same_code_at_other_addresses_has_the_same_pic_hash(tmp_path):
    compilers = [("gcc-12", "x86-masked"), ("aarch64-linux-gnu-gcc-12", "aarch64-masked")]
    need(*(cc for cc, _ in compilers))
    for cc, method in compilers:
        exes = []
        for extra in ([], ["-DPAD"]):
            exe = tmp_path / f"{cc}{''.join(extra)}"
            subprocess.run([cc, "-g", "-O2", *extra, "-o", str(exe), str(FIXTURES / "labels.c")], check=True)
            exes.append(analyze_file(exe))
        plain, padded = ({f.name: f for f in a.functions} for a in exes)
        moved = [n for n in ("main", "fib", "checked_div") if plain[n].entry != padded[n].entry]
        assert "checked_div" in moved, "the padding did not move checked_div"
        for n in moved:
            assert plain[n].pic_hash == padded[n].pic_hash, n
            assert plain[n].pic_hash_method == method
        assert plain["checked_div"].sha256 != padded["checked_div"].sha256  # its displacements did change


def test_armhf_falls_back_to_raw_hash(corpus):
    a = analyze_file(binary(corpus, "arm-linux-gnueabihf-gcc-12-O2-c"))
    main = fn(a, "main")
    assert main.pic_hash_method == "raw" and main.pic_hash == main.sha256
    assert main.start % 2 == 0  # Thumb bit cleared


def test_bounded_gives_the_same_result_as_in_process(corpus):
    path = binary(corpus, "g++-12-O2-cpp")
    a, b = analyze_file(path), analyze_file_bounded(path, timeout=60)
    assert a.to_json(lines=True) == b.to_json(lines=True)


def test_read_dwarf_accepts_a_pyelftools_dwarfinfo(corpus):
    """The entry point the PE backend uses gives the same DWARF functions as the ELF fast path."""
    from elftools.elf.elffile import ELFFile

    from assemblage.binaries.dwarf import read_dwarf

    path = binary(corpus, "clang++-19-O2-cpp")
    with open(path, "rb") as fh:
        res = read_dwarf(ELFFile(fh).get_dwarf_info(), text_reader=lambda s, e: b"\x90" * (e - s), arch="x86_64")
    ours = [(f.name, f.start, f.end) for f in analyze_file(path).functions if f.label_source != "symtab"]
    assert [(f.name, f.start, f.end) for f in res.functions] == ours
    assert all(f.sha256 and f.pic_hash_method == "x86-masked" for f in res.functions)
    assert res.lines and res.inlinings


def test_relocatable_object_keeps_functions_at_offset_zero(tmp_path):
    need("gcc-12")
    obj = tmp_path / "labels.o"
    subprocess.run(["gcc-12", "-g", "-O2", "-c", "-o", str(obj), str(FIXTURES / "labels.c")], check=True)
    a = analyze_file(obj)
    assert a.kind == "relocatable" and a.observed_opt == "O2"
    assert {"main", "add", "report", "fib", "checked_div"} <= {f.name for f in a.functions}


def test_parallel_helpers_give_the_same_result_as_serial(corpus, monkeypatch):
    """Large binaries use forked helpers (line tables, hashes); force them on a small one."""
    import assemblage.binaries.elf.analysis as elf_mod

    path = binary(corpus, "g++-12-O2-cpp")
    serial = analyze_file(path).to_json(lines=True)
    monkeypatch.setattr(elf_mod, "_PARALLEL_DWARF_BYTES", 0)
    monkeypatch.setattr(elf_mod, "_PARALLEL_FUNCTIONS", 0)
    assert analyze_file(path).to_json(lines=True) == serial
