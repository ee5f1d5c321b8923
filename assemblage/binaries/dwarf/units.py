"""A fast, bounded walker over ``.debug_info``: unit headers, abbreviations, DIEs.

Why not pyelftools' DIE objects: they build a Python object (with an ordered
dict of attribute objects) for *every* DIE, about 30-60 us each. A C++ binary
with tens of thousands of functions has millions of DIEs, and almost all of
them (types, members, variables, parameters) are of no interest for labels.
This walker compiles each abbreviation once into a *skip plan* (runs of
fixed-size attributes merged into a single jump), so an uninteresting DIE
costs a dictionary lookup and one or two additions. Only DIEs with an
interesting tag (units, subprograms, inlined subroutines) are decoded, and
only the attributes we need.

Every number read from the file is checked before it is used (reads past a
section's end raise :class:`DwarfError`, see :mod:`.dwarf_forms`), LEB128
numbers longer than 10 bytes are rejected, and every loop advances, so a
hostile section cannot hang the walker or make it allocate without bound. No
``IndexError``/``KeyError`` is caught: one is a bug and reaches the tests.

Supports DWARF 2 to 5, 32- and 64-bit DWARF, little- and big-endian.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .forms import (
    CONSTANT_FORMS,
    F_IMPLICIT_CONST,
    VARIABLE_FORMS,
    AttributeReader,
    ByteOrder,
    DwarfError,
    DwarfSections,
    Unit,
    decode_plan,
    fixed_size,
    read_sleb,
    read_uleb,
    run_plan,
    skip_attributes,
)

__all__ = [
    "CONSTANT_FORMS",
    "decode_lazy",
    "die_at",
    "DwarfError",
    "DwarfSections",
    "Die",
    "Unit",
    "AT",
    "TAG",
    "read_uleb",
    "read_sleb",
    "walk_units",
]


class TAG:
    compile_unit = 0x11
    partial_unit = 0x3C
    skeleton_unit = 0x4A
    subprogram = 0x2E
    inlined_subroutine = 0x1D


class AT:
    sibling = 0x01
    name = 0x03
    stmt_list = 0x10
    low_pc = 0x11
    high_pc = 0x12
    language = 0x13
    comp_dir = 0x1B
    inline = 0x20
    producer = 0x25
    abstract_origin = 0x31
    artificial = 0x34
    decl_file = 0x3A
    decl_line = 0x3B
    declaration = 0x3C
    external = 0x3F
    specification = 0x47
    entry_pc = 0x52
    ranges = 0x55
    call_file = 0x58
    call_line = 0x59
    linkage_name = 0x6E
    str_offsets_base = 0x72
    addr_base = 0x73
    rnglists_base = 0x74
    mips_linkage_name = 0x2007
    gnu_ranges_base = 0x2132
    gnu_addr_base = 0x2133
    apple_flags = 0x3FE2


_UNIT_TAGS = frozenset({TAG.compile_unit, TAG.partial_unit, TAG.skeleton_unit})
_INTERESTING_TAGS = _UNIT_TAGS | {TAG.subprogram, TAG.inlined_subroutine}
# Subtrees are never skipped with DW_AT_sibling: local classes (and lambda
# closures) inside functions hold member functions *with code* (gcc -O0);
# verify-labels caught that when an earlier version skipped type subtrees.
_UNIT_ATTRS = frozenset(
    {
        AT.name,
        AT.stmt_list,
        AT.low_pc,
        AT.high_pc,
        AT.ranges,
        AT.language,
        AT.comp_dir,
        AT.producer,
        AT.str_offsets_base,
        AT.addr_base,
        AT.rnglists_base,
        AT.gnu_ranges_base,
        AT.gnu_addr_base,
        AT.apple_flags,
    }
)
_FUNC_ATTRS = frozenset(
    {
        AT.name,
        AT.low_pc,
        AT.high_pc,
        AT.ranges,
        AT.inline,
        AT.abstract_origin,
        AT.artificial,
        AT.decl_file,
        AT.decl_line,
        AT.declaration,
        AT.external,
        AT.specification,
        AT.entry_pc,
        AT.call_file,
        AT.call_line,
        AT.linkage_name,
        AT.mips_linkage_name,
    }
)


@dataclass(slots=True)
class Die:
    """An interesting DIE (subprogram or inlined subroutine) with its raw attributes.

    ``attrs`` maps attribute code to (form, value); references are already
    absolute ``.debug_info`` offsets, strings are decoded, address indexes are
    resolved. ``parent`` is the offset of the nearest enclosing subprogram or
    inlined subroutine (None at unit level).
    """

    offset: int
    tag: int
    unit: Unit
    attrs: dict[int, tuple[int, Any]] | None  # None until decoded (see ``decode_lazy``)
    parent: int | None
    abbrev: Any = None


class _Abbrev:
    __slots__ = ("tag", "children", "specs", "skip", "interesting", "lazy", "plan")

    def __init__(self, tag: int, children: bool, specs: list[tuple[int, int, int]]) -> None:
        self.tag = tag
        self.children = children
        self.specs = specs  # (attribute, form, implicit constant)
        self.interesting = tag in _INTERESTING_TAGS
        # A subprogram without code (a declaration or an abstract instance) is only
        # needed when a chain reaches it: remember where it is, decode it then.
        attrs = {a for a, _f, _c in specs}
        self.lazy = tag == TAG.subprogram and not attrs & {AT.low_pc, AT.ranges}
        self.skip: int | list[int] = 0
        self.plan: list[tuple[int, int, int, int, int]] = []


def _parse_abbrevs(data: bytes, offset: int) -> dict[int, tuple[int, bool, list[tuple[int, int, int]]]]:
    table: dict[int, tuple[int, bool, list[tuple[int, int, int]]]] = {}
    pos = offset
    while True:
        code, pos = read_uleb(data, pos)
        if code == 0:
            return table
        tag, pos = read_uleb(data, pos)
        if pos >= len(data):
            raise DwarfError(f"abbreviation {code} at {pos:#x} runs past the end of .debug_abbrev")
        children = data[pos] != 0
        pos += 1
        specs = []
        while True:
            attr, pos = read_uleb(data, pos)
            form, pos = read_uleb(data, pos)
            if attr == 0 and form == 0:
                break
            const = 0
            if form == F_IMPLICIT_CONST:
                const, pos = read_sleb(data, pos)
            specs.append((attr, form, const))
        table[code] = (tag, children, specs)


def _compile(raw: dict, offset_size: int, address_size: int, version: int) -> dict[int, _Abbrev]:
    out: dict[int, _Abbrev] = {}
    for code, (tag, children, specs) in raw.items():
        ab = _Abbrev(tag, children, specs)
        plan: list[int] = []
        for _attr, form, _const in specs:
            size = fixed_size(form, offset_size, address_size, version)
            if size is None:
                code_ = VARIABLE_FORMS.get(form)
                if code_ is None:
                    raise DwarfError(f"unknown attribute form {form:#x} in abbreviation {code}")
                plan.append(code_)
            elif plan and plan[-1] >= 0:
                plan[-1] += size
            else:
                plan.append(size)
        ab.skip = plan[0] if len(plan) == 1 and plan[0] >= 0 else (0 if not plan else plan)
        if ab.interesting:
            ab.plan = decode_plan(specs, _FUNC_ATTRS, offset_size, address_size, version)
        out[code] = ab
    return out


def _read_unit_header(data: bytes, pos: int, index: int, order: ByteOrder) -> Unit:
    size = len(data)
    if pos + 11 > size:
        raise DwarfError(f"unit header at {pos:#x} is truncated")
    length = int.from_bytes(data[pos : pos + 4], order)
    hdr = pos + 4
    offset_size = 4
    if length == 0xFFFFFFFF:
        length = int.from_bytes(data[hdr : hdr + 8], order)
        hdr += 8
        offset_size = 8
    elif length >= 0xFFFFFFF0:
        raise DwarfError(f"reserved unit length {length:#x} at {pos:#x}")
    end = hdr + length
    if end > size:
        raise DwarfError(f"unit at {pos:#x} claims {length} bytes, past the end of .debug_info")
    version = int.from_bytes(data[hdr : hdr + 2], order)
    p = hdr + 2
    unit_type = 1
    # the fixed part of the header: v5 unit_type, address_size, abbrev offset; v2-4 abbrev offset, address_size
    if p + 2 + offset_size > end:
        raise DwarfError(f"unit header at {pos:#x} is longer than the unit")
    if version >= 5:
        if version > 5:
            raise DwarfError(f"unsupported DWARF version {version} at {pos:#x}")
        unit_type = data[p]
        address_size = data[p + 1]
        abbrev_offset = int.from_bytes(data[p + 2 : p + 2 + offset_size], order)
        p += 2 + offset_size
        if unit_type in (4, 5):  # skeleton, split_compile: dwo_id
            p += 8
        elif unit_type in (2, 6):  # type units: signature and type offset
            p += 8 + offset_size
    elif version >= 2:
        abbrev_offset = int.from_bytes(data[p : p + offset_size], order)
        address_size = data[p + offset_size]
        p += offset_size + 1
    else:
        raise DwarfError(f"unsupported DWARF version {version} at {pos:#x}")
    if address_size not in (2, 4, 8):
        raise DwarfError(f"bad address size {address_size} in unit at {pos:#x}")
    if p > end:
        raise DwarfError(f"unit header at {pos:#x} is longer than the unit")
    return Unit(index, pos, end, version, unit_type, offset_size, address_size, abbrev_offset, p)


def _fill_unit(unit: Unit, reader: AttributeReader) -> None:
    a = unit.attrs
    get = lambda at: a[at][1] if at in a else None  # noqa: E731
    unit.str_offsets_base = get(AT.str_offsets_base)
    base = get(AT.addr_base)
    unit.addr_base = base if base is not None else get(AT.gnu_addr_base)
    unit.rnglists_base = get(AT.rnglists_base)
    unit.ranges_base = get(AT.gnu_ranges_base) or 0
    for at in list(a):
        form, v = a[at]
        a[at] = (form, reader.resolve(v))
    unit.name = _as_str(get(AT.name))
    unit.comp_dir = _as_str(get(AT.comp_dir))
    unit.producer = _as_str(get(AT.producer))
    unit.apple_flags = _as_str(get(AT.apple_flags))
    lang = get(AT.language)
    unit.language = lang if isinstance(lang, int) else None
    low = get(AT.low_pc)
    unit.low_pc = low if isinstance(low, int) else 0
    stmt = get(AT.stmt_list)
    unit.stmt_list = stmt if isinstance(stmt, int) else None


def _as_str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def walk_units(sec: DwarfSections, *, roots_only: bool = False) -> tuple[list[Unit], list[Die]]:
    """Walk every unit of ``.debug_info``; return the units and the interesting DIEs.

    With ``roots_only`` only the unit headers and root DIEs are read (fast).
    Raises :class:`DwarfError` on malformed input.
    """
    try:
        return _walk(sec, roots_only)
    except RecursionError:
        raise DwarfError("malformed .debug_info (nested too deeply)") from None


def _walk(sec: DwarfSections, roots_only: bool = False) -> tuple[list[Unit], list[Die]]:
    data = sec.info
    order: ByteOrder = "little" if sec.little_endian else "big"
    units: list[Unit] = []
    dies: list[Die] = []
    raw_cache: dict[int, dict] = {}
    compiled_cache: dict[tuple[int, int, int, int], dict[int, _Abbrev]] = {}
    pos = 0
    size = len(data)
    while pos < size:
        unit = _read_unit_header(data, pos, len(units), order)
        pos = unit.end
        if unit.unit_type not in (1, 3, 4):  # compile, partial, skeleton
            continue
        key = (unit.abbrev_offset, unit.offset_size, unit.address_size, unit.version)
        table = compiled_cache.get(key)
        if table is None:
            if unit.abbrev_offset >= len(sec.abbrev):
                raise DwarfError(f"unit at {unit.offset:#x} points past .debug_abbrev")
            raw = raw_cache.get(unit.abbrev_offset)
            if raw is None:
                raw = raw_cache[unit.abbrev_offset] = _parse_abbrevs(sec.abbrev, unit.abbrev_offset)
            table = compiled_cache[key] = _compile(raw, unit.offset_size, unit.address_size, unit.version)
        unit.table = table
        units.append(unit)
        if roots_only:
            _read_root(sec, unit, table, AttributeReader(sec, unit))
        else:
            _walk_unit(sec, unit, table, dies)
    return units, dies


def die_at(sec: DwarfSections, units: list[Unit], unit_offsets: list[int], offset: int) -> Die | None:
    """The subprogram DIE at ``offset`` (one the walk skipped), or None if there is none."""
    from bisect import bisect_right

    i = bisect_right(unit_offsets, offset) - 1
    if i < 0 or not units[i].first_die <= offset < units[i].end:
        return None
    unit = units[i]
    try:
        code, _ = read_uleb(sec.info, offset)
    except DwarfError:
        return None
    ab = unit.table.get(code) if unit.table is not None else None
    if ab is None or ab.tag != TAG.subprogram:
        return None
    return Die(offset, ab.tag, unit, None, None, ab)


def decode_lazy(sec: DwarfSections, die: Die) -> dict[int, tuple[int, Any]]:
    """Decode (once) the attributes of a DIE the walk only located."""
    if die.attrs is not None:
        return die.attrs
    _, pos = read_uleb(sec.info, die.offset)
    die.attrs, _ = run_plan(die.unit.reader, die.abbrev.plan, sec.info, pos)
    return die.attrs


def _read_root(sec: DwarfSections, unit: Unit, table: dict[int, _Abbrev], reader: AttributeReader) -> int:
    """Decode the unit's root DIE (with the generic reader: its bases come last); return the next position."""
    data = sec.info
    pos = unit.first_die
    if pos >= unit.end:
        return pos
    code, npos = read_uleb(data, pos)
    ab = table.get(code) if code else None
    if ab is None or ab.tag not in _UNIT_TAGS:
        return pos
    attrs: dict[int, tuple[int, Any]] = {}
    for attr, form, const in ab.specs:
        v, npos = reader.value(data, npos, form, const)
        if attr in _UNIT_ATTRS:
            attrs[attr] = (form, v)
    unit.tag = ab.tag
    unit.attrs = attrs
    unit.root_has_children = ab.children
    _fill_unit(unit, reader)
    return npos


def _walk_unit(sec: DwarfSections, unit: Unit, table: dict[int, _Abbrev], dies: list[Die]) -> None:
    data = sec.info
    reader = AttributeReader(sec, unit)
    unit.reader = reader
    pos = unit.first_die
    end = unit.end
    osz, asz, ver = unit.offset_size, unit.address_size, unit.version
    order = reader.order
    stack: list[int | None] = []
    ctx: int | None = None
    append = dies.append
    pos = _read_root(sec, unit, table, reader)
    if unit.root_has_children:
        stack.append(ctx)
    while pos < end:
        die_offset = pos
        code = data[pos]
        pos += 1
        if code >= 0x80:
            code, pos = read_uleb(data, pos - 1)
        if code == 0:
            if stack:
                ctx = stack.pop()
            continue
        ab = table.get(code)
        if ab is None:
            raise DwarfError(f"DIE at {die_offset:#x} uses unknown abbreviation {code}")
        child_ctx = ctx
        if ab.interesting and ab.tag != TAG.compile_unit and ab.tag not in _UNIT_TAGS:
            if ab.lazy:
                append(Die(die_offset, ab.tag, unit, None, ctx, ab))
                skip = ab.skip
                if isinstance(skip, int):
                    pos += skip
                else:
                    pos = skip_attributes(skip, data, pos, osz, asz, ver, order)
            else:
                attrs, pos = run_plan(reader, ab.plan, data, pos)
                append(Die(die_offset, ab.tag, unit, attrs, ctx, ab))
            child_ctx = die_offset
        else:
            skip = ab.skip
            if isinstance(skip, int):
                pos += skip
            else:
                pos = skip_attributes(skip, data, pos, osz, asz, ver, order)
        if ab.children:
            stack.append(ctx)
            ctx = child_ctx
    if pos > end:
        raise DwarfError(f"last DIE of the unit at {unit.offset:#x} runs past the unit's end")
