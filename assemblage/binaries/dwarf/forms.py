"""DWARF attribute forms: sizes, LEB128, skipping, and decoding values of one DIE.

Split from :mod:`.units` (which walks units and DIEs); :class:`Unit`, the unit
header the values are decoded against, lives here. A *decode plan*
is a DIE's attribute list compiled once per abbreviation: unwanted fixed-size
attributes merged into one jump, wanted ones tagged with how to finish their
value (references made absolute, strings looked up, address indexes
resolved). Every read of the section bytes is bounds-checked: explicitly, or,
in the hot primitives (LEB128, skips), by a ``try`` around the one subscript
of the input that turns its ``IndexError`` into :class:`DwarfError`. No other
``IndexError``/``KeyError`` is caught anywhere in the reader: one is a bug.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ByteOrder",
    "CONSTANT_FORMS",
    "F_IMPLICIT_CONST",
    "VARIABLE_FORMS",
    "AttributeReader",
    "DwarfError",
    "DwarfSections",
    "Unit",
    "cstring_end",
    "decode_plan",
    "fixed_size",
    "read_sleb",
    "read_uleb",
    "run_plan",
    "skip_attributes",
]


ByteOrder = Literal["little", "big"]  # int.from_bytes's byteorder


class DwarfError(ValueError):
    """Malformed DWARF; the message says what and where."""


@dataclass(slots=True)
class DwarfSections:
    """The raw bytes of the DWARF sections of one binary (missing ones empty)."""

    info: bytes = b""
    abbrev: bytes = b""
    str: bytes = b""
    line_str: bytes = b""
    line: bytes = b""
    ranges: bytes = b""
    rnglists: bytes = b""
    addr: bytes = b""
    str_offsets: bytes = b""
    little_endian: bool = True
    default_address_size: int = 8

    @classmethod
    def of(cls, get: Callable[[builtins.str], bytes], *, little_endian: bool, address_size: int) -> DwarfSections:
        """The sections ``get`` returns by short name (``"info"`` for ``.debug_info``; b"" when absent)."""
        return cls(
            **{name: get(name) for name in SECTION_NAMES},
            little_endian=little_endian,
            default_address_size=address_size,
        )


SECTION_NAMES = ("info", "abbrev", "str", "line_str", "line", "ranges", "rnglists", "addr", "str_offsets")


# Forms (DWARF 5, section 7.5.6) and the GNU extensions seen in the wild.
F_ADDR, F_BLOCK2, F_BLOCK4, F_DATA2, F_DATA4, F_DATA8 = 0x01, 0x03, 0x04, 0x05, 0x06, 0x07
F_STRING, F_BLOCK, F_BLOCK1, F_DATA1, F_FLAG, F_SDATA = 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D
F_STRP, F_UDATA, F_REF_ADDR, F_REF1, F_REF2, F_REF4, F_REF8 = 0x0E, 0x0F, 0x10, 0x11, 0x12, 0x13, 0x14
F_REF_UDATA, F_INDIRECT, F_SEC_OFFSET, F_EXPRLOC, F_FLAG_PRESENT = 0x15, 0x16, 0x17, 0x18, 0x19
F_STRX, F_ADDRX, F_REF_SUP4, F_STRP_SUP, F_DATA16, F_LINE_STRP = 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F
F_REF_SIG8, F_IMPLICIT_CONST, F_LOCLISTX, F_RNGLISTX, F_REF_SUP8 = 0x20, 0x21, 0x22, 0x23, 0x24
F_STRX1, F_STRX2, F_STRX3, F_STRX4 = 0x25, 0x26, 0x27, 0x28
F_ADDRX1, F_ADDRX2, F_ADDRX3, F_ADDRX4 = 0x29, 0x2A, 0x2B, 0x2C
F_GNU_ADDR_INDEX, F_GNU_STR_INDEX, F_GNU_REF_ALT, F_GNU_STRP_ALT = 0x1F01, 0x1F02, 0x1F20, 0x1F21

CONSTANT_FORMS = frozenset({F_DATA1, F_DATA2, F_DATA4, F_DATA8, F_UDATA, F_SDATA, F_IMPLICIT_CONST})

# Skip codes for variable-size forms (fixed sizes are positive ints).
_SK_LEB, _SK_CSTR, _SK_BLOCK, _SK_BLOCK1, _SK_BLOCK2, _SK_BLOCK4, _SK_INDIRECT = -1, -2, -3, -4, -5, -6, -7
VARIABLE_FORMS = {
    F_STRING: _SK_CSTR,
    F_BLOCK: _SK_BLOCK,
    F_EXPRLOC: _SK_BLOCK,
    F_BLOCK1: _SK_BLOCK1,
    F_BLOCK2: _SK_BLOCK2,
    F_BLOCK4: _SK_BLOCK4,
    F_SDATA: _SK_LEB,
    F_UDATA: _SK_LEB,
    F_REF_UDATA: _SK_LEB,
    F_STRX: _SK_LEB,
    F_ADDRX: _SK_LEB,
    F_LOCLISTX: _SK_LEB,
    F_RNGLISTX: _SK_LEB,
    F_GNU_ADDR_INDEX: _SK_LEB,
    F_GNU_STR_INDEX: _SK_LEB,
    F_INDIRECT: _SK_INDIRECT,
}


def fixed_size(form: int, offset_size: int, address_size: int, version: int) -> int | None:
    """Byte size of a fixed-size form, or None for a variable-size one."""
    if form in (F_FLAG_PRESENT, F_IMPLICIT_CONST):
        return 0
    if form in (F_DATA1, F_REF1, F_FLAG, F_STRX1, F_ADDRX1):
        return 1
    if form in (F_DATA2, F_REF2, F_STRX2, F_ADDRX2):
        return 2
    if form in (F_STRX3, F_ADDRX3):
        return 3
    if form in (F_DATA4, F_REF4, F_REF_SUP4, F_STRX4, F_ADDRX4):
        return 4
    if form in (F_DATA8, F_REF8, F_REF_SIG8, F_REF_SUP8):
        return 8
    if form == F_DATA16:
        return 16
    if form == F_ADDR:
        return address_size
    if form == F_REF_ADDR:
        return address_size if version <= 2 else offset_size
    if form in (F_STRP, F_SEC_OFFSET, F_LINE_STRP, F_STRP_SUP, F_GNU_REF_ALT, F_GNU_STRP_ALT):
        return offset_size
    return None


def _past_end(pos: int) -> DwarfError:
    return DwarfError(f"data at {pos:#x} runs past the end of its section")


def cstring_end(data: bytes, pos: int) -> int:
    """The position of the NUL that ends the string at ``pos`` (DwarfError when there is none)."""
    end = data.find(b"\0", pos)
    if end < 0 or pos >= len(data):
        raise DwarfError(f"unterminated string at {pos:#x}")
    return end


def read_uleb(data: bytes, pos: int) -> tuple[int, int]:
    """Decode an unsigned LEB128 at ``pos``; return (value, next position)."""
    try:  # the only subscripts here are of the input: an IndexError is the input ending early
        b = data[pos]
        if b < 0x80:
            return b, pos + 1
        result = b & 0x7F
        shift = 7
        pos += 1
        while True:
            b = data[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result, pos
            shift += 7
            if shift > 70:
                raise DwarfError(f"LEB128 number longer than 10 bytes at offset {pos:#x}")
    except IndexError:
        raise _past_end(pos) from None


def read_sleb(data: bytes, pos: int) -> tuple[int, int]:
    """Decode a signed LEB128 at ``pos``; return (value, next position)."""
    result = 0
    shift = 0
    try:  # as in read_uleb
        while True:
            b = data[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                if b & 0x40:
                    result -= 1 << shift
                return result, pos
            if shift > 70:
                raise DwarfError(f"LEB128 number longer than 10 bytes at offset {pos:#x}")
    except IndexError:
        raise _past_end(pos) from None


# Post-processing codes of decode-plan steps.
_P_SKIP, _P_SKIPVAR, _P_INT, _P_REF, _P_STRP, _P_LSTRP, _P_STRX, _P_ADDRX = 0, 1, 2, 3, 4, 5, 6, 7
_P_CONST, _P_TRUE, _P_NONE, _P_CSTR, _P_ULEB, _P_ULEB_REF, _P_ULEB_STRX, _P_ULEB_ADDRX, _P_SLEB, _P_GENERIC = range(
    8, 18
)
_FIXED_POST = {
    F_REF1: _P_REF,
    F_REF2: _P_REF,
    F_REF4: _P_REF,
    F_REF8: _P_REF,
    F_STRP: _P_STRP,
    F_LINE_STRP: _P_LSTRP,
    F_STRX1: _P_STRX,
    F_STRX2: _P_STRX,
    F_STRX3: _P_STRX,
    F_STRX4: _P_STRX,
    F_ADDRX1: _P_ADDRX,
    F_ADDRX2: _P_ADDRX,
    F_ADDRX3: _P_ADDRX,
    F_ADDRX4: _P_ADDRX,
    F_IMPLICIT_CONST: _P_CONST,
    F_FLAG_PRESENT: _P_TRUE,
    F_REF_SIG8: _P_NONE,
    F_GNU_REF_ALT: _P_NONE,
    F_GNU_STRP_ALT: _P_NONE,
    F_REF_SUP4: _P_NONE,
    F_REF_SUP8: _P_NONE,
    F_STRP_SUP: _P_NONE,
}
_VAR_POST = {
    F_STRING: _P_CSTR,
    F_UDATA: _P_ULEB,
    F_LOCLISTX: _P_ULEB,
    F_RNGLISTX: _P_ULEB,
    F_REF_UDATA: _P_ULEB_REF,
    F_STRX: _P_ULEB_STRX,
    F_GNU_STR_INDEX: _P_ULEB_STRX,
    F_ADDRX: _P_ULEB_ADDRX,
    F_GNU_ADDR_INDEX: _P_ULEB_ADDRX,
    F_SDATA: _P_SLEB,
}


def decode_plan(
    specs: list[tuple[int, int, int]], wanted: frozenset[int], osz: int, asz: int, ver: int
) -> list[tuple[int, int, int, int, int]]:
    """Steps (code, attribute, form, size, constant); unwanted fixed runs merged into one skip."""
    plan: list[tuple[int, int, int, int, int]] = []
    for attr, form, const in specs:
        size = fixed_size(form, osz, asz, ver)
        if attr not in wanted:
            if size is None:
                plan.append((_P_SKIPVAR, 0, form, VARIABLE_FORMS[form], 0))
            elif plan and plan[-1][0] == _P_SKIP:
                plan[-1] = (_P_SKIP, 0, 0, plan[-1][3] + size, 0)
            elif size:
                plan.append((_P_SKIP, 0, 0, size, 0))
            continue
        if size is not None:
            plan.append((_FIXED_POST.get(form, _P_INT), attr, form, size, const))
        else:
            plan.append((_VAR_POST.get(form, _P_GENERIC), attr, form, 0, const))
    return plan


def skip_attributes(
    plan: list[int],
    data: bytes,
    pos: int,
    offset_size: int,
    address_size: int,
    version: int,
    order: ByteOrder = "little",
) -> int:
    for step in plan:
        if step >= 0:
            pos += step
        elif step == _SK_LEB:
            try:  # the input's bytes: an IndexError is the input ending early
                while data[pos] & 0x80:
                    pos += 1
            except IndexError:
                raise _past_end(pos) from None
            pos += 1
        elif step == _SK_CSTR:
            pos = cstring_end(data, pos) + 1
        elif step == _SK_BLOCK:
            n, pos = read_uleb(data, pos)
            pos += n
        elif step == _SK_BLOCK1:
            if pos >= len(data):
                raise _past_end(pos)
            pos += 1 + data[pos]
        elif step == _SK_BLOCK2:
            pos += 2 + int.from_bytes(data[pos : pos + 2], order)
        elif step == _SK_BLOCK4:
            pos += 4 + int.from_bytes(data[pos : pos + 4], order)
        else:  # indirect: the form is in the data
            form, pos = read_uleb(data, pos)
            size = fixed_size(form, offset_size, address_size, version)
            if size is not None:
                pos += size
            else:
                sub = VARIABLE_FORMS.get(form)
                if sub is None or sub == _SK_INDIRECT:
                    raise DwarfError(f"bad indirect form {form:#x}")
                pos = skip_attributes([sub], data, pos, offset_size, address_size, version, order)
    return pos


@dataclass(slots=True)
class Unit:
    """One unit header plus the attributes of its root DIE."""

    index: int
    offset: int
    end: int
    version: int
    unit_type: int
    offset_size: int
    address_size: int
    abbrev_offset: int
    first_die: int
    tag: int = 0
    attrs: dict[int, tuple[int, Any]] = field(default_factory=dict)
    name: str | None = None
    comp_dir: str | None = None
    producer: str | None = None
    language: int | None = None
    low_pc: int = 0
    stmt_list: int | None = None
    str_offsets_base: int | None = None
    addr_base: int | None = None
    rnglists_base: int | None = None
    ranges_base: int = 0
    apple_flags: str | None = None
    reader: Any = None
    root_has_children: bool = False
    table: Any = None  # the unit's compiled abbreviations


class AttributeReader:
    """Decodes attribute values for interesting DIEs of one unit."""

    def __init__(self, sec: DwarfSections, unit: Unit) -> None:
        self.sec = sec
        self.unit = unit
        self.order: ByteOrder = "little" if sec.little_endian else "big"
        self._str_cache: dict[tuple[int, int], str] = {}

    def uint(self, data: bytes, pos: int, n: int) -> int:
        if pos + n > len(data):
            raise DwarfError(f"value at {pos:#x} runs past the end of its section")
        return int.from_bytes(data[pos : pos + n], self.order)

    def cstr(self, data: bytes, pos: int, which: int = 0) -> str:
        key = (which, pos)
        s = self._str_cache.get(key)
        if s is None:
            if pos >= len(data):
                raise DwarfError(f"string offset {pos:#x} outside its section")
            end = data.find(b"\0", pos)
            if end < 0:
                raise DwarfError(f"unterminated string at {pos:#x}")
            s = data[pos:end].decode("utf-8", "replace")
            self._str_cache[key] = s
        return s

    def strx(self, index: int) -> str:
        u = self.unit
        base = u.str_offsets_base if u.str_offsets_base is not None else 8
        off = self.uint(self.sec.str_offsets, base + index * u.offset_size, u.offset_size)
        return self.cstr(self.sec.str, off, 1)

    def addrx(self, index: int) -> int:
        u = self.unit
        base = u.addr_base if u.addr_base is not None else 8
        return self.uint(self.sec.addr, base + index * u.address_size, u.address_size)

    def value(self, data: bytes, pos: int, form: int, const: int) -> tuple[Any, int]:
        """Decode one attribute value; return (value, next position)."""
        u = self.unit
        size = fixed_size(form, u.offset_size, u.address_size, u.version)
        if size is not None:
            if form == F_IMPLICIT_CONST:
                return const, pos
            if form == F_FLAG_PRESENT:
                return True, pos
            v = self.uint(data, pos, size) if size else 0
            npos = pos + size
            if form in (F_REF1, F_REF2, F_REF4, F_REF8):
                return u.offset + v, npos
            if form == F_STRP:
                return self.cstr(self.sec.str, v, 1), npos
            if form == F_LINE_STRP:
                return self.cstr(self.sec.line_str, v, 2), npos
            if form in (F_STRX1, F_STRX2, F_STRX3, F_STRX4):
                return _Index("str", v), npos
            if form in (F_ADDRX1, F_ADDRX2, F_ADDRX3, F_ADDRX4):
                return _Index("addr", v), npos
            if form in (F_REF_SIG8, F_GNU_REF_ALT, F_GNU_STRP_ALT, F_REF_SUP4, F_REF_SUP8, F_STRP_SUP):
                return None, npos  # points into another file (type unit, dwz, supplementary)
            return v, npos
        if form == F_STRING:
            end = cstring_end(data, pos)
            return data[pos:end].decode("utf-8", "replace"), end + 1
        if form in (F_UDATA, F_REF_UDATA, F_STRX, F_ADDRX, F_LOCLISTX, F_RNGLISTX, F_GNU_ADDR_INDEX, F_GNU_STR_INDEX):
            v, npos = read_uleb(data, pos)
            if form == F_REF_UDATA:
                return u.offset + v, npos
            if form in (F_STRX, F_GNU_STR_INDEX):
                return _Index("str", v), npos
            if form in (F_ADDRX, F_GNU_ADDR_INDEX):
                return _Index("addr", v), npos
            return v, npos
        if form == F_SDATA:
            return read_sleb(data, pos)
        if form == F_INDIRECT:
            real, pos = read_uleb(data, pos)
            if real == F_INDIRECT:
                raise DwarfError("indirect form pointing to itself")
            return self.value(data, pos, real, const)
        skip = VARIABLE_FORMS.get(form)
        if skip is None:  # only reachable through DW_FORM_indirect: the abbreviations were checked
            raise DwarfError(f"unknown attribute form {form:#x} at {pos:#x}")
        npos = skip_attributes([skip], data, pos, u.offset_size, u.address_size, u.version, self.order)
        return None, npos  # blocks and expressions: not needed

    def resolve(self, v: Any) -> Any:
        if v.__class__ is _Index:
            return self.strx(v.index) if v.kind == "str" else self.addrx(v.index)
        return v


class _Index:
    __slots__ = ("kind", "index")

    def __init__(self, kind: str, index: int) -> None:
        self.kind = kind
        self.index = index


def run_plan(
    reader: AttributeReader, plan: list[tuple[int, int, int, int, int]], data: bytes, pos: int
) -> tuple[dict[int, tuple[int, Any]], int]:
    """Decode one DIE's wanted attributes with a precompiled plan; return (attrs, next position)."""
    u = reader.unit
    order = reader.order
    osz, asz, ver = u.offset_size, u.address_size, u.version
    attrs: dict[int, tuple[int, Any]] = {}
    for code, attr, form, size, const in plan:
        if code == _P_SKIP:
            pos += size
            continue
        if code == _P_SKIPVAR:
            if size == _SK_LEB:
                try:  # the input's bytes: an IndexError is the input ending early
                    while data[pos] & 0x80:
                        pos += 1
                except IndexError:
                    raise _past_end(pos) from None
                pos += 1
            elif size == _SK_CSTR:
                pos = cstring_end(data, pos) + 1
            else:
                pos = skip_attributes([size], data, pos, osz, asz, ver, order)
            continue
        if code <= _P_ADDRX:  # fixed size
            v: Any = int.from_bytes(data[pos : pos + size], order)
            pos += size
            if code == _P_REF:
                v += u.offset
            elif code == _P_STRP:
                v = reader.cstr(reader.sec.str, v, 1)
            elif code == _P_LSTRP:
                v = reader.cstr(reader.sec.line_str, v, 2)
            elif code == _P_STRX:
                v = reader.strx(v)
            elif code == _P_ADDRX:
                v = reader.addrx(v)
        elif code == _P_CONST:
            v = const
        elif code == _P_TRUE:
            v = True
        elif code == _P_NONE:
            v = None
            pos += size
        elif code == _P_CSTR:
            end = cstring_end(data, pos)
            v = data[pos:end].decode("utf-8", "replace")
            pos = end + 1
        elif code == _P_SLEB:
            v, pos = read_sleb(data, pos)
        elif code == _P_GENERIC:
            v, pos = reader.value(data, pos, form, const)
            v = reader.resolve(v)
        else:
            v, pos = read_uleb(data, pos)
            if code == _P_ULEB_REF:
                v += u.offset
            elif code == _P_ULEB_STRX:
                v = reader.strx(v)
            elif code == _P_ULEB_ADDRX:
                v = reader.addrx(v)
        attrs[attr] = (form, v)
    return attrs, pos
