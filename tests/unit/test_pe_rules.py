"""PE rules on synthetic input: the .pdata explanation rule, PDB lookup paths, image reads."""

from __future__ import annotations

from pathlib import Path

from assemblage.binaries.model import Function, Range
from assemblage.binaries.pdb import pdb_path_candidates
from assemblage.binaries.pe import PdataEntry, classify_pdata


def _fn(name: str, *ranges: tuple[int, int]) -> Function:
    rs = [Range(a, b) for a, b in ranges]
    return Function(
        name=name, start=rs[0].start, end=rs[-1].end, size=sum(b - a for a, b in ranges), ranges=rs, label_source="pdb"
    )


def test_pdata_rule_in_order():
    funcs = [_fn("f", (0x1000, 0x1100)), _fn("split", (0x2000, 0x2040), (0x3000, 0x3010))]
    entries = [
        PdataEntry(0x1000, 0x1100, False),  # a function start
        PdataEntry(0x3000, 0x3010, False),  # the start of a function's second range
        PdataEntry(0x1040, 0x1100, False),  # inside a function: a fragment
        PdataEntry(0x5000, 0x5010, True),  # chained unwind info outside any function: still a fragment
        PdataEntry(0x6000, 0x6020, False),  # in an object without debug info
        PdataEntry(0x7000, 0x7020, False),  # nothing explains it
    ]
    verdicts = [v for _e, v in classify_pdata(entries, funcs, lambda rva: 0x6000 <= rva < 0x7000)]
    assert verdicts == ["function_start", "function_start", "fragment", "fragment", "no_debug_info", "unexplained"]


def test_pdata_without_any_labels_is_not_a_disagreement():
    verdicts = classify_pdata([PdataEntry(0x1000, 0x1010, False)], [])
    assert [v for _e, v in verdicts] == ["no_debug_info"]


def test_pdata_without_explanation_callback_is_unexplained():
    verdicts = classify_pdata([PdataEntry(0x9000, 0x9010, False)], [_fn("f", (0x1000, 0x1100))])
    assert [v for _e, v in verdicts] == ["unexplained"]


def test_pdb_candidates_use_the_codeview_basename_next_to_the_pe(tmp_path):
    pe = tmp_path / "bin" / "tool.exe"
    assert pdb_path_candidates(pe, "C:\\build\\out\\Release\\tool_x64.pdb") == [
        tmp_path / "bin" / "tool_x64.pdb",
        tmp_path / "bin" / "tool.pdb",
    ]
    assert pdb_path_candidates(pe, "/tmp/w/a.pdb")[0] == Path(tmp_path / "bin" / "a.pdb")
    assert pdb_path_candidates(pe, None) == [tmp_path / "bin" / "tool.pdb"]


def test_folded_procedures_become_one_function_with_aliases():
    """Identical-code folding: two procedure records, one code range -> one function."""
    from assemblage.binaries.model import BinaryAnalysis, LineRow
    from assemblage.binaries.pdb import PdbFile, PdbInlineSite, PdbProcedure
    from assemblage.binaries.pe.analysis import fill_from_pdb

    class Image:
        def read(self, start: int, end: int) -> bytes:
            return b"\x90" * (end - start)

        def is_va(self, v: int) -> bool:
            return False

    rows = [LineRow(0x1000, 4, "a.c", 3), LineRow(0x1004, 12, "a.c", 4)]
    procs = [
        PdbProcedure("seven_a", 0x1000, 16, True, "a.o", 1, 0, lines=rows),
        PdbProcedure("seven_b", 0x1000, 16, True, "b.o", 1, 0),
        PdbProcedure("other", 0x1010, 8, False, "a.o", 1, 0x10),
    ]
    site = PdbInlineSite("helper", "seven_a", 0x1000, ((0x1006, 0x100A),))
    pdb = PdbFile("x.pdb", "G", 1, "x86_64", 64, procs, [], [site], [], [], [])
    out = BinaryAnalysis(path="x.exe", sha256="", size=0, format="pe", arch="x86_64", bits=64)
    fill_from_pdb(out, pdb, Image(), True)
    assert [(f.name, f.aliases, f.start, f.size) for f in out.functions] == [
        ("seven_a", ["seven_b"], 0x1000, 16),
        ("other", [], 0x1010, 8),
    ]
    f = out.functions[0]
    assert (f.source_file, f.decl_line, f.entry, f.is_static) == ("a.c", 3, 0x1000, False)
    assert out.functions[1].is_static is True
    (inl,) = out.inlinings
    assert (inl.callee, inl.caller, inl.function, inl.call_line) == ("helper", "seven_a", "seven_a", 4)


def test_a_pdb_with_publics_but_no_procedures_is_flagged():
    from assemblage.binaries.model import BinaryAnalysis
    from assemblage.binaries.pdb import PdbFile, PdbPublic
    from assemblage.binaries.pe.analysis import fill_from_pdb

    class Image:
        def read(self, start: int, end: int) -> bytes:
            return b"\xc3" * (end - start)

        def is_va(self, v: int) -> bool:
            return False

    pdb = PdbFile("fast.pdb", "G", 1, "x86_64", 64, [], [PdbPublic("main", 0x1000, 1, 0, True)], [], [], [], [])
    out = BinaryAnalysis(path="x.exe", sha256="", size=0, format="pe", arch="x86_64", bits=64)
    fill_from_pdb(out, pdb, Image(), True)
    assert out.functions == []
    assert [d.kind for d in out.disagreements] == ["pdb_without_procedures"]
    assert "FASTLINK" in out.disagreements[0].detail
