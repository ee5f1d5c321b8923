"""Parsers of the oracle tools' text and the explanation rules of verify-labels."""

from __future__ import annotations

from assemblage.binaries.model import Range
from assemblage.binaries.verify import (
    is_discarded,
    parse_dwarfdump,
    parse_dwarfdump_lines,
    parse_readelf_sections,
    parse_readelf_symbols,
)

DUMP = """\
0x0000000c: DW_TAG_compile_unit
              DW_AT_producer\t("GNU C17 12.2.0 -O2")

0x0000004a:   DW_TAG_subprogram
                DW_AT_name\t("sum")
                DW_AT_inline\t(DW_INL_inlined)

0x000000c8:   DW_TAG_subprogram
                DW_AT_abstract_origin\t(0x0000004a "sum")
                DW_AT_low_pc\t(0x0000000000001280)
                DW_AT_high_pc\t(0x00000000000012ea)

0x000000f0:   DW_TAG_subprogram
                DW_AT_name\t("checked_div")
                DW_AT_linkage_name\t("_Z11checked_divii")
                DW_AT_ranges\t(0x0000000c
                   [0x00000000000011b0, 0x00000000000011ca)
                   [0x0000000000001077, 0x00000000000010a9))
                DW_AT_frame_base\t(DW_OP_call_frame_cfa)

0x00000120:   DW_TAG_subprogram
                DW_AT_name\t("printf")
                DW_AT_declaration\t(true)

0x00000130:   NULL
"""


def test_parse_dwarfdump_subprograms_names_and_ranges():
    fs = parse_dwarfdump(DUMP.splitlines())
    assert [(f.offset, f.name) for f in fs] == [(0xC8, "sum"), (0xF0, "_Z11checked_divii")]
    assert fs[0].ranges == [Range(0x1280, 0x12EA)]
    assert fs[1].ranges == [Range(0x11B0, 0x11CA), Range(0x1077, 0x10A9)]


def test_parse_dwarfdump_lines_lengths_within_sequences():
    text = """\
Address            Line   Column File   ISA Discriminator OpIndex Flags
------------------ ------ ------ ------ --- ------------- ------- -------------
0x0000000000001260     36     30      1   0             0       0  is_stmt
0x0000000000001260     37     32      1   0             0       0  is_stmt
0x0000000000001263     38     46      1   0             0       0
0x0000000000001266     38     46      1   0             0       0  is_stmt end_sequence
0x0000000000002000     10      1      1   0             0       0  is_stmt
0x0000000000002004     10      1      1   0             0       0  is_stmt end_sequence
"""
    assert parse_dwarfdump_lines(text.splitlines()) == [(0x1260, 37, 3), (0x1263, 38, 3), (0x2000, 10, 4)]


def test_parse_readelf_sections_and_symbols():
    sections = """\
  [Nr] Name              Type            Address          Off    Size   ES Flg Lk Inf Al
  [12] .init             PROGBITS        0000000000001000 001000 000017 00  AX  0   0  4
  [15] .text             PROGBITS        0000000000001070 001070 00056a 00  AX  0   0 16
  [17] .rodata           PROGBITS        0000000000002000 002000 000050 00   A  0   0 16
"""
    assert parse_readelf_sections(sections) == [(0x1000, 0x1017), (0x1070, 0x15DA)]
    symbols = """\
Symbol table '.dynsym' contains 2 entries:
   Num:    Value          Size Type    Bind   Vis      Ndx Name
     1: 0000000000001240    62 FUNC    GLOBAL DEFAULT   15 exported@@V1
Symbol table '.symtab' contains 4 entries:
   Num:    Value          Size Type    Bind   Vis      Ndx Name
     4: 0000000000001220     4 FUNC    LOCAL  DEFAULT   15 add
     5: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND printf@GLIBC_2.2.5
     6: 0000000000004010     4 OBJECT  GLOBAL DEFAULT   25 counter
     7: 0000000000001300 0x186a0 FUNC    GLOBAL DEFAULT   15 big
"""
    assert parse_readelf_symbols(symbols) == [("add", 0x1220, 4, "LOCAL"), ("big", 0x1300, 100000, "GLOBAL")]


def test_discard_rule():
    code = [(0x1000, 0x2000)]
    assert is_discarded([Range(0, 0x20)], code) == []  # COMDAT copy resolved to 0
    assert is_discarded([Range((1 << 64) - 2, (1 << 64) - 1)], code) == []  # lld tombstone
    assert is_discarded([Range(0x1100, 0x1100)], code) == []  # empty
    assert is_discarded([Range(0x3000, 0x3010)], code) == []  # outside the executable sections
    assert is_discarded([Range(0x1100, 0x1110), Range(0, 8)], code) == [Range(0x1100, 0x1110)]


def _analysis():
    from assemblage.binaries.model import BinaryAnalysis, Disagreement, Function

    def fn(name, ranges, entry=None, **kw):
        rs = [Range(a, b) for a, b in ranges]
        return Function(
            name,
            min(r.start for r in rs),
            max(r.end for r in rs),
            sum(r.end - r.start for r in rs),
            rs,
            entry=entry or rs[0].start,
            label_source="both",
            **kw,
        )

    return BinaryAnalysis(
        path="bin",
        sha256="0",
        size=1,
        format="elf",
        arch="x86_64",
        bits=64,
        has_debug_info=True,
        functions=[
            fn("main", [(0x1000, 0x1040)]),
            fn("foo", [(0x1100, 0x1120), (0x1050, 0x1060)], entry=0x1100),
            fn("bar", [(0x1200, 0x1210)], aliases=["bar_alias"]),
            fn("baz", [(0x1300, 0x1310)]),
            fn("f", [(0x1500, 0x1508)], linkage_name="_ZN1A1fEv", demangled="A::f()"),
        ],
        disagreements=[Disagreement("split_part", 0x1050, "foo.cold"), Disagreement("size_differs", 0x1300, "baz")],
    )


def _die(off, name, ranges):
    rs = "".join(f"\n                   [{a:#018x}, {b:#018x})" for a, b in ranges)
    return f'0x{off:08x}:   DW_TAG_subprogram\n                DW_AT_name\t("{name}")\n                DW_AT_ranges\t(0x0{rs})\n'


def test_verify_rules_explain_known_differences_and_flag_the_rest(monkeypatch):
    import assemblage.binaries.verify as v

    dies = [
        _die(0x10, "main", [(0x1000, 0x1040)]),
        _die(0x20, "foo", [(0x1100, 0x1120), (0x1050, 0x1060)]),
        _die(0x30, "bar", [(0x1200, 0x1210)]),
        _die(0x40, "bar_alias", [(0x1200, 0x1210)]),  # rule alias
        _die(0x50, "baz", [(0x1300, 0x1310)]),
        _die(0x58, "_ZN1A1fEv", [(0x1500, 0x1508)]),
        _die(0x60, "gone", [(0, 0x10)]),  # rule discarded
        _die(0x70, "missing", [(0x1400, 0x1410)]),  # not explained
    ]
    outputs = {
        (
            "readelf",
            "-SW",
        ): "  [15] .text             PROGBITS        0000000000001000 001000 001000 00  AX  0   0 16\n",
        (v.DUMP_TOOL, "--debug-info"): "\n".join(dies),
        (v.DUMP_TOOL, "--debug-line"): "",
        ("readelf", "-sW"): (
            "Symbol table '.symtab' contains 5 entries:\n"
            "     1: 0000000000001000    64 FUNC    GLOBAL DEFAULT   15 main\n"
            "     2: 0000000000001100    32 FUNC    GLOBAL DEFAULT   15 foo\n"
            "     3: 0000000000001050    16 FUNC    LOCAL  DEFAULT   15 foo.cold\n"
            "     4: 0000000000001200    16 FUNC    GLOBAL DEFAULT   15 bar_alias\n"
            "     5: 0000000000001300    32 FUNC    GLOBAL DEFAULT   15 baz\n"
        ),
        ("c++filt",): "A::f ()\n",
    }
    monkeypatch.setattr(
        v, "_run", lambda args, input_text=None: outputs[tuple(args[:2]) if args[0] != "c++filt" else ("c++filt",)]
    )
    monkeypatch.setattr(v.shutil, "which", lambda name: "/usr/bin/" + name)
    rep = v.verify_binary("bin", _analysis())
    assert rep.explained == {
        "alias": 1,
        "discarded": 1,
        "split_part": 1,
        "recorded_disagreement": 1,
        "demangler_variant": 1,
    }
    assert rep.counts["dwarf_matched"] == 5 and rep.counts["symtab_matched"] == 3
    assert not rep.ok and len(rep.unexplained) == 1 and "missing" in rep.unexplained[0]
