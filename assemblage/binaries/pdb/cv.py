"""CodeView pieces inside PDB streams: C13 line subsections, inline-site
binary annotations, the IPI (id) stream, and small string helpers.

Every function here takes ``bytes`` that came out of an untrusted file. They
check lengths before unpacking and raise :class:`~.msf.CorruptPdb` for
impossible numbers; an odd-but-harmless record is skipped rather than fatal.

References: https://llvm.org/docs/PDB/ModiStream.html,
https://llvm.org/docs/PDB/CodeViewSymbols.html, https://llvm.org/docs/PDB/TpiStream.html
and the ``DEBUG_S_*`` / ``BinaryAnnotationsOpCode`` layouts of Microsoft's
``cvinfo.h`` (public).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .msf import CorruptPdb

__all__ = [
    "IdStream",
    "LineFragment",
    "NameTable",
    "cstring",
    "inline_site_ranges",
    "parse_c13",
]

DEBUG_S_IGNORE = 0x80000000
DEBUG_S_LINES = 0xF2
DEBUG_S_FILECHECKSUMS = 0xF4
DEBUG_S_INLINEELINES = 0xF6
_LF_HAVE_COLUMNS = 0x1

LF_FUNC_ID = 0x1601
LF_MFUNC_ID = 0x1602
LF_BUILDINFO = 0x1603
LF_SUBSTR_LIST = 0x1604
LF_STRING_ID = 0x1605

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_II = struct.Struct("<II")
_III = struct.Struct("<III")
_FRAGMENT = struct.Struct("<IHHI")  # RelocOffset RelocSegment Flags CodeSize


def cstring(buf: bytes, pos: int, end: int | None = None) -> tuple[str, int]:
    """The NUL-terminated string at ``pos`` (bounded by ``end``) and the position after it."""
    stop = len(buf) if end is None else end
    nul = buf.find(b"\x00", pos, stop)
    if nul < 0:
        nul = stop
    return buf[pos:nul].decode("utf-8", "replace"), nul + 1


class NameTable:
    """The ``/names`` stream: file names referred to by byte offset."""

    __slots__ = ("_buf", "_cache")

    def __init__(self, data: bytes) -> None:
        self._cache: dict[int, str] = {}
        if len(data) < 12:
            self._buf = b""
            return
        sig, _ver, size = _III.unpack_from(data, 0)
        if sig != 0xEFFEEFFE or size > len(data) - 12:
            raise CorruptPdb("invalid /names string table header")
        self._buf = data[12 : 12 + size]

    def get(self, offset: int) -> str | None:
        hit = self._cache.get(offset)
        if hit is None:
            if not 0 <= offset < len(self._buf):
                return None
            hit = self._cache[offset] = cstring(self._buf, offset)[0]
        return hit


@dataclass(slots=True)
class LineFragment:
    """One ``DEBUG_S_LINES`` subsection: the lines of one contiguous code range.

    ``rows`` are ``(offset, length, file_checksum_offset, line)`` with the
    offset relative to the section; a row's length runs to the next row's
    offset (in address order) and the last one to ``code_size``.
    """

    segment: int
    offset: int
    code_size: int
    rows: list[tuple[int, int, int, int]]


def _parse_lines(p: bytes) -> LineFragment | None:
    if len(p) < _FRAGMENT.size:
        return None
    base, seg, flags, code_size = _FRAGMENT.unpack_from(p, 0)
    pos = _FRAGMENT.size
    raw: list[tuple[int, int, int]] = []  # (offset, file, line) in record order
    entry = 12 if flags & _LF_HAVE_COLUMNS else 8
    while pos + 12 <= len(p):
        file_off, nlines, block_size = _III.unpack_from(p, pos)
        if block_size < 12 or nlines * entry > block_size - 12 or pos + block_size > len(p):
            raise CorruptPdb(f"line block of {nlines} lines does not fit its {block_size} bytes")
        for off, word in struct.iter_unpack("<II", p[pos + 12 : pos + 12 + 8 * nlines]):
            raw.append((off, file_off, word & 0xFFFFFF))
        pos += block_size
    order = sorted(range(len(raw)), key=lambda i: raw[i][0])
    rows: list[tuple[int, int, int, int]] = [(0, 0, 0, 0)] * len(raw)
    for k, i in enumerate(order):
        off, f, line = raw[i]
        nxt = raw[order[k + 1]][0] if k + 1 < len(order) else code_size
        rows[i] = (base + off, max(nxt - off, 0), f, line)
    return LineFragment(seg, base, code_size, rows)


def parse_c13(data: bytes) -> tuple[dict[int, int], list[LineFragment], dict[int, tuple[int, int]]]:
    """Decode a module's C13 region.

    Returns (file checksum offset -> ``/names`` offset, line fragments,
    inlinee item id -> (file checksum offset, declaration line)).
    """
    files: dict[int, int] = {}
    fragments: list[LineFragment] = []
    inlinees: dict[int, tuple[int, int]] = {}
    pos, end = 0, len(data)
    while pos + 8 <= end:
        kind, length = _II.unpack_from(data, pos)
        pos += 8
        if length > end - pos:
            raise CorruptPdb(f"C13 subsection {kind:#x} of {length} bytes runs past its module stream")
        p = data[pos : pos + length]
        pos += length + (-length % 4)
        if kind & DEBUG_S_IGNORE:
            continue
        if kind == DEBUG_S_FILECHECKSUMS:
            q = 0
            while q + 6 <= len(p):
                name_off, csize = struct.unpack_from("<IB", p, q)
                files[q] = name_off
                q += 6 + csize
                q += -q % 4
        elif kind == DEBUG_S_LINES:
            frag = _parse_lines(p)
            if frag is not None:
                fragments.append(frag)
        elif kind == DEBUG_S_INLINEELINES and len(p) >= 4:
            (sig,) = _U32.unpack_from(p, 0)
            q = 4
            while q + 12 <= len(p):
                item, file_off, line = _III.unpack_from(p, q)
                inlinees[item] = (file_off, line)
                q += 12
                if sig == 1 and q + 4 <= len(p):  # extended form: extra file ids follow
                    (extra,) = _U32.unpack_from(p, q)
                    q += 4 + 4 * extra
    return files, fragments, inlinees


class _BadAnnotation(Exception):
    """The annotations end inside a number, or hold an invalid one: the walk stops there."""


def _uncompress(a: bytes, i: int) -> tuple[int, int]:
    """One compressed unsigned integer of a binary annotation; (value, next index)."""
    try:  # the only subscripts are of the annotation bytes: an IndexError is their end
        b = a[i]
        if b & 0x80 == 0:
            return b, i + 1
        if b & 0xC0 == 0x80:
            return ((b & 0x3F) << 8) | a[i + 1], i + 2
        if b & 0xE0 == 0xC0:
            return ((b & 0x1F) << 24) | (a[i + 1] << 16) | (a[i + 2] << 8) | a[i + 3], i + 4
    except IndexError:
        raise _BadAnnotation(f"annotation number at {i} is cut short") from None
    raise _BadAnnotation(f"invalid compressed integer at {i}")


def inline_site_ranges(ann: bytes) -> list[tuple[int, int]]:
    """The code ranges of an ``S_INLINESITE`` from its binary annotations.

    Offsets are relative to the start of the enclosing procedure. Each
    code-offset change starts a range; a range without an explicit length
    runs to the next start; ``ChangeCodeLength`` closes the open range and
    advances the offset. Adjacent ranges are merged. Malformed annotations end
    the walk (what was decoded so far is kept).
    """
    out: list[list[int]] = []
    off = 0
    open_start: int | None = None
    i, n = 0, len(ann)
    try:
        while i < n:
            op, i = _uncompress(ann, i)
            if op == 0:
                break
            if op in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13):
                v, i = _uncompress(ann, i)
                if op in (1, 3):  # CodeOffset, ChangeCodeOffset
                    off = v if op == 1 else off + v
                    if open_start is not None:
                        out.append([open_start, off])
                    open_start = off
                elif op == 4:  # ChangeCodeLength
                    start = off if open_start is None else open_start
                    out.append([start, off + v])
                    off += v
                    open_start = None
            elif op == 11:  # ChangeCodeOffsetAndLineOffset
                v, i = _uncompress(ann, i)
                off += v & 0xF
                if open_start is not None:
                    out.append([open_start, off])
                open_start = off
            elif op == 12:  # ChangeCodeLengthAndCodeOffset
                length, i = _uncompress(ann, i)
                delta, i = _uncompress(ann, i)
                off += delta
                if open_start is not None:
                    out.append([open_start, off])
                out.append([off, off + length])
                off += length
                open_start = None
            else:
                break
    except _BadAnnotation:
        pass
    merged: list[tuple[int, int]] = []
    for s, e in sorted(out):
        if e <= s:
            continue
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return merged


_IPI_HEADER = struct.Struct("<IIIII")  # Version HeaderSize TypeIndexBegin TypeIndexEnd TypeRecordBytes


class IdStream:
    """The IPI stream (stream 4), decoded on demand by item id.

    Only the offsets of records are collected up front; names, strings and
    build-info records are decoded when asked for.
    """

    __slots__ = ("_data", "_begin", "_offsets", "_cache")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._begin = 0x1000
        self._offsets: list[int] = []
        self._cache: dict[int, str | None] = {}
        if len(data) < 56:
            return
        _ver, hsize, begin, _end, nbytes = _IPI_HEADER.unpack_from(data, 0)
        if hsize < 56 or hsize > len(data):
            raise CorruptPdb("invalid IPI stream header")
        self._begin = begin
        pos, stop = hsize, min(len(data), hsize + nbytes)
        offsets = self._offsets
        unpack = _U16.unpack_from
        while pos + 4 <= stop:
            (rlen,) = unpack(data, pos)
            if rlen < 2 or pos + 2 + rlen > stop:
                break
            offsets.append(pos)
            pos += 2 + rlen

    def _record(self, item: int) -> tuple[int, bytes] | None:
        k = item - self._begin
        if not 0 <= k < len(self._offsets):
            return None
        pos = self._offsets[k]
        rlen, kind = struct.unpack_from("<HH", self._data, pos)
        return kind, self._data[pos + 4 : pos + 2 + rlen]

    def name(self, item: int) -> str | None:
        """The name of an ``LF_FUNC_ID``/``LF_MFUNC_ID`` or the text of an ``LF_STRING_ID``."""
        if item in self._cache:
            return self._cache[item]
        self._cache[item] = None  # guards against reference cycles in hostile files
        rec = self._record(item)
        out: str | None = None
        if rec is not None:
            kind, p = rec
            if kind in (LF_FUNC_ID, LF_MFUNC_ID) and len(p) >= 8:
                out = cstring(p, 8)[0]
            elif kind == LF_STRING_ID and len(p) >= 4:
                (sub,) = _U32.unpack_from(p, 0)
                prefix = self._substrings(sub) if sub else ""
                out = prefix + cstring(p, 4)[0]
        self._cache[item] = out
        return out

    def _substrings(self, item: int) -> str:
        rec = self._record(item)
        if rec is None or rec[0] != LF_SUBSTR_LIST or len(rec[1]) < 4:
            return ""
        (count,) = _U32.unpack_from(rec[1], 0)
        count = min(count, (len(rec[1]) - 4) // 4)
        ids = struct.unpack_from(f"<{count}I", rec[1], 4)
        return "".join(self.name(i) or "" for i in ids)

    def build_info(self, item: int) -> list[str] | None:
        """The arguments of an ``LF_BUILDINFO``: [cwd, tool, source, pdb, command line, ...]."""
        rec = self._record(item)
        if rec is None or rec[0] != LF_BUILDINFO or len(rec[1]) < 2:
            return None
        (count,) = _U16.unpack_from(rec[1], 0)
        count = min(count, (len(rec[1]) - 2) // 4)
        ids = struct.unpack_from(f"<{count}I", rec[1], 2)
        return [(self.name(i) or "") if i else "" for i in ids]
