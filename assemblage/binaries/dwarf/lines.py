"""``.debug_line``: line-program headers (file tables) and the line state machine.

Own code rather than pyelftools' ``LineProgram`` for speed: pyelftools builds a
``LineProgramEntry`` and a ``LineState`` copy per opcode; here a row is a
3-tuple and special opcodes (the vast majority) take a few integer operations.
DWARF 2 to 5; ``max_ops_per_inst`` > 1 (VLIW) is treated as 1.

Every read is bounds-checked and raises
:class:`~assemblage.binaries.dwarf.forms.DwarfError` when the table runs past
its end; no ``IndexError``/``KeyError``/``ValueError`` is caught (one is a bug).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from .forms import ByteOrder, DwarfError, DwarfSections, cstring_end, read_sleb, read_uleb

__all__ = ["LineProgram", "read_line_program"]

# DW_LNCT content types and the forms the header uses.
_LNCT_PATH, _LNCT_DIR = 1, 2


@dataclass(slots=True)
class LineProgram:
    """One line program: its file names and its rows.

    ``rows`` holds ``(address, file_index, line, end_sequence)`` in program
    order; a row's length is the next row's address minus its own within one
    sequence.
    """

    offset: int
    version: int
    files: dict[int, str] = field(default_factory=dict)
    rows: list[tuple[int, int, int, bool]] = field(default_factory=list)

    def file_name(self, index: int | None) -> str | None:
        if index is None:
            return None
        return self.files.get(index)


def _uint(data: bytes, pos: int, n: int, order: ByteOrder) -> int:
    if pos + n > len(data):
        raise DwarfError(f".debug_line value at {pos:#x} runs past the section end")
    return int.from_bytes(data[pos : pos + n], order)


def _byte(data: bytes, pos: int) -> int:
    if pos >= len(data):
        raise DwarfError(f".debug_line byte at {pos:#x} is past the section end")
    return data[pos]


def _cstr(data: bytes, pos: int) -> tuple[str, int]:
    end = cstring_end(data, pos)
    return data[pos:end].decode("utf-8", "replace"), end + 1


def _strp(sec_data: bytes, off: int) -> str:
    if off >= len(sec_data):
        raise DwarfError(f"string offset {off:#x} outside its section")
    end = cstring_end(sec_data, off)
    return sec_data[off:end].decode("utf-8", "replace")


def _v5_entries(
    data: bytes, pos: int, sec: DwarfSections, offset_size: int, order: ByteOrder, strx: object
) -> tuple[list[dict[int, object]], int]:
    fmt_count = _byte(data, pos)
    pos += 1
    fmts = []
    for _ in range(fmt_count):
        ct, pos = read_uleb(data, pos)
        form, pos = read_uleb(data, pos)
        fmts.append((ct, form))
    count, pos = read_uleb(data, pos)
    if count > len(data):
        raise DwarfError(f"line header claims {count} entries")
    out = []
    for _ in range(count):
        entry: dict[int, object] = {}
        v: object
        for ct, form in fmts:
            if form == 0x08:  # string
                v, pos = _cstr(data, pos)
            elif form == 0x1F:  # line_strp
                v = _strp(sec.line_str, _uint(data, pos, offset_size, order))
                pos += offset_size
            elif form == 0x0E:  # strp
                v = _strp(sec.str, _uint(data, pos, offset_size, order))
                pos += offset_size
            elif form in (0x0F, 0x1A):  # udata, strx (strx unusable without a unit: kept as index)
                v, pos = read_uleb(data, pos)
            elif form in (0x0B, 0x25):
                v = _byte(data, pos)
                pos += 1
            elif form in (0x05, 0x26):
                v = _uint(data, pos, 2, order)
                pos += 2
            elif form in (0x06, 0x28):
                v = _uint(data, pos, 4, order)
                pos += 4
            elif form == 0x07:
                v = _uint(data, pos, 8, order)
                pos += 8
            elif form == 0x1E:  # data16 (MD5)
                v = None
                pos += 16
            elif form == 0x09:  # block
                n, pos = read_uleb(data, pos)
                v = None
                pos += n
            else:
                raise DwarfError(f"unsupported form {form:#x} in a line table header")
            entry[ct] = v
        out.append(entry)
    return out, pos


def _join(comp_dir: str | None, directory: str | None, name: str) -> str:
    if name.startswith("/"):
        return name
    if directory:
        if not directory.startswith("/") and comp_dir:
            directory = posixpath.join(comp_dir, directory)
        return posixpath.join(directory, name)
    return posixpath.join(comp_dir, name) if comp_dir else name


def read_line_program(
    sec: DwarfSections, offset: int, *, comp_dir: str | None, cu_name: str | None, rows: bool = True
) -> LineProgram:
    """Read the line program at ``offset`` of ``.debug_line``.

    File names are made absolute the way ``llvm-dwarfdump`` prints them
    (directory joined with name, relative directories joined to ``comp_dir``).
    With ``rows=False`` only the header is read.
    """
    return _read(sec, offset, comp_dir, cu_name, rows)


def _read(sec: DwarfSections, offset: int, comp_dir: str | None, cu_name: str | None, want_rows: bool) -> LineProgram:
    data = sec.line
    order: ByteOrder = "little" if sec.little_endian else "big"
    if offset + 4 > len(data):
        raise DwarfError(f"line program offset {offset:#x} is outside .debug_line")
    length = _uint(data, offset, 4, order)
    pos = offset + 4
    offset_size = 4
    if length == 0xFFFFFFFF:
        length = _uint(data, pos, 8, order)
        pos += 8
        offset_size = 8
    end = pos + length
    if end > len(data):
        raise DwarfError(f"line program at {offset:#x} runs past the end of .debug_line")
    version = _uint(data, pos, 2, order)
    pos += 2
    if not 2 <= version <= 5:
        raise DwarfError(f"unsupported line table version {version} at {offset:#x}")
    address_size = sec.default_address_size
    if version >= 5:
        address_size = _byte(data, pos)
        pos += 2  # address_size, segment_selector_size
    header_length = _uint(data, pos, offset_size, order)
    pos += offset_size
    program_start = pos + header_length
    if pos + 6 > end:  # min_inst, [max_ops,] default_is_stmt, line_base, line_range, opcode_base
        raise DwarfError(f"line program header at {offset:#x} is truncated")
    min_inst = data[pos]
    pos += 1
    if version >= 4:
        pos += 1  # maximum_operations_per_instruction
    default_is_stmt = data[pos]
    line_base = data[pos + 1] - 256 if data[pos + 1] >= 128 else data[pos + 1]
    line_range = data[pos + 2]
    opcode_base = data[pos + 3]
    pos += 4
    std_lengths = list(data[pos : pos + max(opcode_base - 1, 0)])
    pos += max(opcode_base - 1, 0)
    if line_range == 0:
        raise DwarfError(f"line program at {offset:#x} has line_range 0")
    del default_is_stmt
    prog = LineProgram(offset, version)
    if version >= 5:
        dirs_raw, pos = _v5_entries(data, pos, sec, offset_size, order, None)
        files_raw, pos = _v5_entries(data, pos, sec, offset_size, order, None)
        dirs = [p if isinstance(p := d.get(_LNCT_PATH), str) else None for d in dirs_raw]
        base_dir = dirs[0] if dirs else comp_dir
        for i, f in enumerate(files_raw):
            name = f.get(_LNCT_PATH)
            if not isinstance(name, str):
                continue
            di = f.get(_LNCT_DIR, 0)
            d = dirs[di] if isinstance(di, int) and di < len(dirs) else None
            prog.files[i] = _join(base_dir, d, name)
    else:
        dirs = [comp_dir]
        while _byte(data, pos) != 0:
            d, pos = _cstr(data, pos)
            dirs.append(d)
        pos += 1
        i = 1
        while _byte(data, pos) != 0:
            name, pos = _cstr(data, pos)
            di, pos = read_uleb(data, pos)
            _, pos = read_uleb(data, pos)
            _, pos = read_uleb(data, pos)
            d = dirs[di] if di < len(dirs) else None
            prog.files[i] = _join(comp_dir, d, name)
            i += 1
        if cu_name is not None and 0 not in prog.files:
            prog.files[0] = _join(comp_dir, None, cu_name)
    if want_rows:
        _run(
            data,
            program_start,
            end,
            prog,
            min_inst,
            line_base,
            line_range,
            opcode_base,
            std_lengths,
            address_size,
            order,
            version,
        )
    return prog


def _run(
    data: bytes,
    pos: int,
    end: int,
    prog: LineProgram,
    min_inst: int,
    line_base: int,
    line_range: int,
    opcode_base: int,
    std_lengths: list[int],
    address_size: int,
    order: ByteOrder,
    version: int,
) -> None:
    rows = prog.rows
    append = rows.append
    # Special opcodes precomputed: address and line advance per opcode value.
    addr_adv = [0] * 256
    line_adv = [0] * 256
    for op in range(opcode_base, 256):
        adj = op - opcode_base
        addr_adv[op] = (adj // line_range) * min_inst
        line_adv[op] = line_base + adj % line_range
    address = 0
    file = 1
    line = 1
    while pos < end:
        op = data[pos]
        pos += 1
        if op >= opcode_base:
            address += addr_adv[op]
            line += line_adv[op]
            append((address, file, line, False))
        elif op == 0:
            n, pos = read_uleb(data, pos)
            if n == 0:
                continue
            sub = _byte(data, pos)
            nxt = pos + n
            if sub == 1:  # end_sequence
                append((address, file, line, True))
                address, file, line = 0, 1, 1
            elif sub == 2:  # set_address
                address = _uint(data, pos + 1, n - 1, order)
            pos = nxt
        elif op == 1:  # copy
            append((address, file, line, False))
        elif op == 2:  # advance_pc
            v, pos = read_uleb(data, pos)
            address += v * min_inst
        elif op == 3:  # advance_line
            v, pos = read_sleb(data, pos)
            line += v
        elif op == 4:  # set_file
            file, pos = read_uleb(data, pos)
        elif op == 8:  # const_add_pc
            address += ((255 - opcode_base) // line_range) * min_inst
        elif op == 9:  # fixed_advance_pc
            address += _uint(data, pos, 2, order)
            pos += 2
        else:  # opcodes with LEB operands we do not need (set_column, set_isa, unknown ones)
            nargs = std_lengths[op - 1] if op - 1 < len(std_lengths) else 0
            for _ in range(nargs):
                _, pos = read_uleb(data, pos)
