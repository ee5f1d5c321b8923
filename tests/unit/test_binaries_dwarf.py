"""The DWARF reader on hand-built DWARF 4: chains, cycles, ranges, discard/alias rules, errors."""

from __future__ import annotations

import struct

import pytest

from assemblage.binaries.dwarf import DwarfError, DwarfSections, read_dwarf_sections
from assemblage.binaries.dwarf.units import read_sleb, read_uleb
from assemblage.binaries.model import Range

# Abbreviation codes of the little test language below.
CU, FUNC, CONCRETE, ABSTRACT, SPEC, RANGED, PARENT, INLINED = range(1, 9)

ABBREVS = {
    # code: (tag, children, [(attribute, form)])
    CU: (0x11, 1, [(0x03, 0x08), (0x25, 0x08), (0x11, 0x01)]),
    FUNC: (0x2E, 0, [(0x03, 0x08), (0x11, 0x01), (0x12, 0x06), (0x3F, 0x19)]),
    CONCRETE: (0x2E, 0, [(0x31, 0x13), (0x11, 0x01), (0x12, 0x06)]),
    ABSTRACT: (0x2E, 0, [(0x03, 0x08), (0x20, 0x0B)]),
    SPEC: (0x2E, 0, [(0x47, 0x13)]),
    RANGED: (0x2E, 0, [(0x03, 0x08), (0x55, 0x17)]),
    PARENT: (0x2E, 1, [(0x03, 0x08), (0x11, 0x01), (0x12, 0x06)]),
    INLINED: (0x1D, 0, [(0x31, 0x13), (0x11, 0x01), (0x12, 0x06)]),
}


def uleb(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def abbrev_section() -> bytes:
    out = bytearray()
    for code, (tag, children, attrs) in ABBREVS.items():
        out += uleb(code) + uleb(tag) + bytes([children])
        for at, form in attrs:
            out += uleb(at) + uleb(form)
        out += b"\0\0"
    return bytes(out + b"\0")


def encode(form: int, value: object, labels: dict[str, int]) -> bytes:
    if form == 0x08:
        return str(value).encode() + b"\0"
    if form == 0x01:
        return struct.pack("<Q", value)
    if form in (0x06, 0x17):
        return struct.pack("<I", value)
    if form == 0x13:
        return struct.pack("<I", labels.get(str(value), 0))
    if form == 0x0B:
        return bytes([value])  # type: ignore[list-item]
    if form == 0x19:
        return b""
    raise AssertionError(form)


def info_section(dies: list[tuple[str | None, int | None, list[object]]]) -> bytes:
    """DIEs as (label, abbrev code or None for a null entry, values); one DWARF 4 unit."""
    labels: dict[str, int] = {}
    for _ in range(2):  # first pass finds the offsets, second resolves references
        body = bytearray()
        for label, code, values in dies:
            off = 11 + len(body)
            if label:
                labels[label] = off
            if code is None:
                body += b"\0"
                continue
            body += uleb(code)
            for (_, form), v in zip(ABBREVS[code][2], values, strict=True):
                body += encode(form, v, labels)
    header = struct.pack("<IHIB", 7 + len(body), 4, 0, 8)
    return header + bytes(body)


def read(dies, ranges: bytes = b"", **kw):
    sec = DwarfSections(info=info_section(dies), abbrev=abbrev_section(), ranges=ranges)
    return read_dwarf_sections(sec, lines=False, **kw)


ROOT = ("cu", CU, ["t.c", "GNU C17 12.2.0 -O2", 0])


def test_plain_function_has_name_range_and_external_flag():
    res = read([ROOT, (None, FUNC, ["main", 0x1000, 0x20, True]), (None, None, [])])
    (f,) = res.functions
    assert (f.name, f.start, f.end, f.size, f.is_static) == ("main", 0x1000, 0x1020, 0x20, False)
    assert f.compilation_unit == "t.c"
    assert res.units[0].producer.opt == "O2" and res.units[0].functions == 1


def test_name_comes_through_abstract_origin_and_specification():
    res = read(
        [
            ROOT,
            ("decl", ABSTRACT, ["helper", 1]),
            ("spec", SPEC, ["decl"]),
            (None, CONCRETE, ["spec", 0x2000, 0x10]),
            (None, None, []),
        ]
    )
    (f,) = res.functions  # the abstract instance and the specification are not functions
    assert f.name == "helper" and f.start == 0x2000


def test_reference_cycle_terminates_and_falls_back_to_address_name():
    res = read([ROOT, ("a", SPEC, ["b"]), ("b", SPEC, ["a"]), (None, CONCRETE, ["a", 0x3000, 4]), (None, None, [])])
    (f,) = res.functions
    assert f.name == "sub_3000"


def test_discarded_code_at_zero_or_outside_code_is_not_a_function():
    dies = [
        ROOT,
        (None, FUNC, ["gone", 0, 0x10, True]),
        (None, FUNC, ["elsewhere", 0x9000, 8, True]),
        (None, FUNC, ["kept", 0x1000, 8, True]),
        (None, None, []),
    ]
    res = read(dies, code_ranges=[(0x1000, 0x2000)])
    assert [f.name for f in res.functions] == ["kept"]
    assert res.discarded == 2


def test_ranges_with_base_address_selection_make_one_split_function():
    top = (1 << 64) - 1
    ranges = struct.pack("<8Q", top, 0x4000, 0x100, 0x120, 0x10, 0x18, 0, 0)
    res = read([ROOT, (None, RANGED, ["split", 0]), (None, None, [])], ranges=ranges)
    (f,) = res.functions
    assert f.ranges == [Range(0x4010, 0x4018), Range(0x4100, 0x4120)]
    assert (f.start, f.end, f.size) == (0x4010, 0x4120, 0x28)
    assert f.entry == 0x4100  # the first range listed is the entry, not the lowest


def test_identical_ranges_give_one_function_with_an_alias():
    res = read([ROOT, (None, FUNC, ["one", 0x1000, 8, True]), (None, FUNC, ["two", 0x1000, 8, True]), (None, None, [])])
    (f,) = res.functions
    assert f.name == "one" and f.aliases == ["two"]


def test_inlined_subroutine_is_a_fact_not_a_function():
    res = read(
        [
            ROOT,
            ("sq", ABSTRACT, ["square", 3]),
            (None, PARENT, ["outer", 0x1000, 0x40]),
            (None, INLINED, ["sq", 0x1008, 0x8]),
            (None, None, []),
            (None, None, []),
        ]
    )
    assert [f.name for f in res.functions] == ["outer"]
    (inl,) = res.inlinings
    assert (inl.callee, inl.caller, inl.function, inl.ranges) == ("square", "outer", "outer", (Range(0x1008, 0x1010),))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda info: info[:20], "past the end"),
        (lambda info: info[:11] + b"\x7f" + info[12:], "unknown abbreviation"),
        (lambda info: info[:4] + b"\x09\x00" + info[6:], "unsupported DWARF version"),
    ],
)
def test_malformed_info_raises_dwarf_error(mutate, message):
    info = info_section([ROOT, (None, FUNC, ["main", 0x1000, 0x20, True]), (None, None, [])])
    sec = DwarfSections(info=mutate(info), abbrev=abbrev_section())
    with pytest.raises(DwarfError, match=message):
        read_dwarf_sections(sec, lines=False)


def test_leb128_limits():
    assert read_uleb(b"\xe5\x8e\x26", 0) == (624485, 3)
    assert read_sleb(b"\x7f", 0) == (-1, 1)
    with pytest.raises(DwarfError, match="longer than 10 bytes"):
        read_uleb(b"\xff" * 64 + b"\x01", 0)
    with pytest.raises(DwarfError, match="past the end"):  # a truncated number is a DWARF error, not an IndexError
        read_uleb(b"\x80\x80", 0)
    with pytest.raises(DwarfError, match="past the end"):
        read_sleb(b"\xff", 0)
