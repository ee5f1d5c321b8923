"""CodeView pieces decoded from hand-made bytes: annotations, line blocks, IPI, producers."""

from __future__ import annotations

import struct

import pytest

from assemblage.binaries.pdb import CompileRecord
from assemblage.binaries.pdb.cv import IdStream, inline_site_ranges, parse_c13
from assemblage.binaries.pdb.msf import CorruptPdb
from assemblage.binaries.pdb.producers import opt_from_flags, producers_from_compiles, split_command_line


def test_inline_ranges_offset_then_length():
    # ChangeCodeOffset 0x12, ChangeCodeLength 0x2d (what clang writes for one contiguous site)
    assert inline_site_ranges(bytes([0x03, 0x12, 0x04, 0x2D])) == [(0x12, 0x3F)]


def test_inline_ranges_with_gap_and_combined_ops():
    ann = bytes(
        [
            0x03,
            0x10,  # code 0x10
            0x04,
            0x06,  # length 6 -> [0x10, 0x16), offset now 0x16
            0x0B,
            0x57,  # code +7 (0x1d), line -2: new range opens at 0x1d
            0x0B,
            0x26,  # code +6 (0x23), line +1: range continues
            0x04,
            0x07,  # length 7 -> closes at 0x2a
        ]
    )
    assert inline_site_ranges(ann) == [(0x10, 0x16), (0x1D, 0x2A)]


def test_inline_ranges_two_byte_compressed_and_length_and_offset():
    # 0x80 0x9F: two-byte form = 0x9F; then ChangeCodeLengthAndCodeOffset(len 4, delta 2)
    ann = bytes([0x03, 0x80, 0x9F, 0x04, 0x06, 0x0C, 0x04, 0x02])
    assert inline_site_ranges(ann) == [(0x9F, 0xA5), (0xA7, 0xAB)]


def test_inline_ranges_zero_length_site_and_garbage():
    assert inline_site_ranges(bytes([0x03, 0x82, 0xDA, 0x04, 0x00])) == []
    assert inline_site_ranges(bytes([0x03, 0xFF, 0xFF])) == []  # invalid compressed integer: stop, no crash
    assert inline_site_ranges(b"") == []


def _lines_subsection(base: int, code_size: int, blocks: list[tuple[int, list[tuple[int, int]]]]) -> bytes:
    body = struct.pack("<IHHI", base, 1, 0, code_size)
    for file_off, rows in blocks:
        entries = b"".join(struct.pack("<II", off, line | 0x80000000) for off, line in rows)
        body += struct.pack("<III", file_off, len(rows), 12 + len(entries)) + entries
    return struct.pack("<II", 0xF2, len(body)) + body


def test_line_lengths_run_to_the_next_row_and_the_fragment_end():
    checksums = struct.pack("<IBB", 1, 0, 0) + b"\x00\x00" + struct.pack("<IBB", 9, 0, 0) + b"\x00\x00"
    c13 = struct.pack("<II", 0xF4, len(checksums)) + checksums
    # two file blocks in one fragment (an #include'd inline body): lengths cross blocks in address order
    c13 += _lines_subsection(0x100, 0x40, [(0, [(0, 10), (0x20, 12)]), (8, [(0x10, 300)])])
    files, frags, _inl = parse_c13(c13)
    assert files == {0: 1, 8: 9}
    (frag,) = frags
    assert frag.rows == [(0x100, 0x10, 0, 10), (0x120, 0x20, 0, 12), (0x110, 0x10, 8, 300)]
    assert sum(r[1] for r in frag.rows) == 0x40


def test_line_block_larger_than_its_subsection_is_corrupt():
    body = struct.pack("<IHHI", 0, 1, 0, 4) + struct.pack("<III", 0, 1000, 8012)
    with pytest.raises(CorruptPdb):
        parse_c13(struct.pack("<II", 0xF2, len(body)) + body)


def test_ipi_names_substrings_and_build_info():
    def rec(kind: int, payload: bytes) -> bytes:
        payload += b"\x00" * (-(len(payload) + 4) % 4)
        return struct.pack("<HH", len(payload) + 2, kind) + payload

    records = [
        rec(0x1605, struct.pack("<I", 0) + b"C:\\src\x00"),  # 0x1000
        rec(0x1605, struct.pack("<I", 0) + b"-c -Zi \x00"),  # 0x1001
        rec(0x1604, struct.pack("<II", 1, 0x1001)),  # 0x1002 substring list
        rec(0x1605, struct.pack("<I", 0x1002) + b"-O2 -GL\x00"),  # 0x1003 = "-c -Zi -O2 -GL"
        rec(0x1601, struct.pack("<II", 0, 0x1010) + b"helper\x00"),  # 0x1004
        rec(0x1603, struct.pack("<H5I", 5, 0x1000, 0, 0, 0, 0x1003)),  # 0x1005
    ]
    blob = b"".join(records)
    header = struct.pack("<IIIII", 20040203, 56, 0x1000, 0x1000 + len(records), len(blob)) + b"\x00" * 36
    ids = IdStream(header + blob)
    assert ids.name(0x1004) == "helper"
    assert ids.name(0x1003) == "-c -Zi -O2 -GL"
    assert ids.build_info(0x1005) == ["C:\\src", "", "", "", "-c -Zi -O2 -GL"]
    assert ids.name(0x9999) is None and ids.build_info(0x1004) is None


def test_command_line_splitting():
    assert split_command_line('"-cc1" "-triple" "x86_64-w64-windows-gnu" "-O2"') == [
        "-cc1",
        "-triple",
        "x86_64-w64-windows-gnu",
        "-O2",
    ]
    assert split_command_line('-c -I"C:\\Program Files\\x" -DNAME=\\"v\\" -O1') == [
        "-c",
        "-IC:\\Program Files\\x",
        '-DNAME="v"',
        "-O1",
    ]
    assert split_command_line('"" a') == ["", "a"]


@pytest.mark.parametrize(
    ("flags", "compiler", "opt"),
    [
        (["-cc1", "-O2"], "clang", "O2"),
        (["-O"], "clang", "O1"),
        (["-Os", "-Oz"], "clang", "Oz"),
        (["-Ofast"], "clang", "Ofast"),
        (["-c", "-Zi", "-O2", "-Oi"], "msvc", "O2"),
        (["/Ox"], "msvc", "Ox"),
        (["-c", "-Zi"], "msvc", "Od"),
        (["/O1", "/Od"], "msvc", "Od"),
    ],
)
def test_opt_from_flags(flags, compiler, opt):
    assert opt_from_flags(flags, compiler) == opt


def test_producers_collapse_per_file_arguments_and_skip_the_linker():
    def clang(src: str, opt: str) -> CompileRecord:
        line = f'"-cc1" "-triple" "x86_64-w64-windows-gnu" "-main-file-name" "{src}" "-{opt}" "-x" "c"'
        return CompileRecord(
            module=f"{src}.o",
            language="c",
            machine="x86_64",
            version="clang version 19.1.7",
            frontend=(19, 1, 7, 0),
            backend=(19017, 0, 0, 0),
            source=src,
            command_line=line,
        )

    msvc = CompileRecord(
        module="a.obj",
        language="c++",
        machine="x86_64",
        version="Microsoft (R) Optimizing Compiler",
        frontend=(19, 38, 33135, 0),
        backend=(19, 38, 33135, 0),
        source="a.cpp",
        command_line="-c -Zi -nologo -Ox -GL",
    )
    link = CompileRecord(
        module="* Linker *",
        language="link",
        machine="x86_64",
        version="LLVM Linker",
        frontend=(0, 0, 0, 0),
        backend=(14, 10, 25019, 0),
    )
    producers, opts = producers_from_compiles([clang("a.c", "O2"), clang("b.c", "O2"), clang("c.c", "O0"), msvc, link])
    assert opts == {"O2": 2, "O0": 1, "Ox": 1}
    by = {(p.compiler, p.opt) for p in producers}
    assert by == {("clang", "O2"), ("clang", "O0"), ("msvc", "Ox")}
    assert len(producers) == 3 and all(p.source == "pdb" for p in producers)
    ms = next(p for p in producers if p.compiler == "msvc")
    assert ms.version == "19.38.33135" and "-GL" in ms.flags
    cl = next(p for p in producers if p.opt == "O2")
    assert cl.version == "19.1.7" and "-main-file-name" not in cl.flags and "a.c" not in cl.flags
