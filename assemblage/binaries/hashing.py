"""Function hashes for deduplication: raw sha256 and a position-independent hash.

The position-independent hash (``pic_hash``) is the sha256 of the function's
disassembly (capstone, no detail mode: it is 5-10x faster than decoding
operand details through ctypes) with every operand that depends on where the
code or its data sits replaced by a placeholder:

* x86/x86-64: ``rip``-relative displacements (``[rip + 0x2f1a]`` becomes
  ``[rip+DISP]``); branch and call targets (relative to the start of the range
  when inside the same range, otherwise ``EXT``); any other number that falls
  inside the binary's mapped address space (absolute addresses in non-PIE code)
  becomes ``ADDR``.
* aarch64: targets of ``b``/``bl``/``b.cond``/``cbz``/``cbnz``/``tbz``/``tbnz``,
  ``adr``/``adrp`` pages, literal loads, and the ``:lo12:`` immediate of the
  instruction that consumes an ``adrp`` register.
* anything else (32-bit ARM/Thumb, other machines): no masking; ``pic_hash``
  equals ``sha256`` and ``pic_hash_method`` says ``"raw"``.

Bytes that do not disassemble (data in code) are hashed as they are.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .demangle import demangle
from .model import Range

__all__ = ["FunctionHasher", "hash_all", "hash_and_demangle"]

_HEX = re.compile(r"(?<![\w])(-?)0x([0-9a-f]+)")
_RIP = re.compile(r"rip [+-] 0x[0-9a-f]+")
_X86_BRANCH = re.compile(r"^(j\w+|call|loop\w*|xbegin)$")
_A64_BRANCH = frozenset({"b", "bl", "cbz", "cbnz", "tbz", "tbnz", "adr"})


class FunctionHasher:
    """Hashes functions of one binary.

    ``read(start, end)`` returns the bytes at those virtual addresses (or None
    when they are not in the file); ``is_address(v)`` says whether a number is
    an address inside the binary's mapped image.
    """

    def __init__(
        self,
        arch: str,
        read: Callable[[int, int], bytes | None],
        is_address: Callable[[int], bool] = lambda v: False,
    ) -> None:
        self.arch = arch
        self.read = read
        self.is_address = is_address
        self._md: Any = None  # a capstone.Cs (capstone ships no type information)
        self._extent_md: Any = None  # the decoder code_end uses (armhf: Thumb-2, though its hash stays raw)
        self.method = "raw"
        try:
            import capstone

            if arch == "armhf":  # Debian's armhf code is Thumb-2
                self._extent_md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB)

            if arch == "x86_64":
                self._md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
                self.method = "x86-masked"
            elif arch == "i686":
                self._md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
                self.method = "x86-masked"
            elif arch == "aarch64":
                self._md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
                self.method = "aarch64-masked"
        except (ImportError, AttributeError, OSError):  # capstone missing or without that arch
            self._md = None
            self.method = "raw"
        self._extent_md = self._extent_md or self._md
        self._masked: dict[str, str] = {}  # x86 operands -> masked (depends only on the binary's image bounds)

    def hash(self, ranges: Sequence[Range]) -> tuple[str | None, str | None, str | None]:
        """(sha256, pic_hash, method) of the function made of ``ranges`` (address order)."""
        chunks = []
        for r in sorted(ranges, key=lambda r: r.start):
            b = self.read(r.start, r.end)
            if b is None:
                return None, None, None
            chunks.append((r, b))
        raw = hashlib.sha256()
        for _, b in chunks:
            raw.update(b)
        sha = raw.hexdigest()
        if self._md is None:
            return sha, sha, "raw"
        import capstone

        pic = hashlib.sha256()
        try:
            for r, b in chunks:
                if self.method == "x86-masked":
                    self._x86(pic, r, b)
                else:
                    self._a64(pic, r, b)
        except capstone.CsError:  # capstone failing on odd bytes: say so, keep the raw hash
            return sha, sha, "raw"
        return sha, pic.hexdigest(), self.method

    def code_end(self, start: int, limit: int) -> int:
        """Where the code from ``start`` really ends before ``limit``: padding (nops, int3, zeros) trimmed.

        For symbols that carry no size (crt start-up code). Decodes forward and keeps
        the end of the last instruction that is not padding; where the bytes cannot be
        decoded only trailing zeros are trimmed, and without a decoder the whole gap is kept.
        """
        code = self.read(start, limit)
        if not code:
            return start
        if self._extent_md is None:  # no decoder: the whole gap, padding included
            return limit
        end = start
        offset = 0
        try:
            for addr, size, mnem, _ops in self._extent_md.disasm_lite(code, start):
                raw = code[offset : offset + size]
                offset += size
                # zero bytes pad sections on x86 and AArch64; in Thumb code they end literal pools
                if mnem not in _PADDING and (raw.strip(b"\0") or self.arch == "armhf"):
                    end = addr + size
        except Exception:  # noqa: BLE001 - capstone failing on odd bytes: keep what the zeros say
            return start + len(code.rstrip(b"\0"))
        rest = code[offset:]
        if rest.strip(b"\0") or (rest and self.arch == "armhf"):  # bytes it could not decode: not padding
            return start + len(code.rstrip(b"\0")) if self.arch != "armhf" else limit
        return end

    def _mask(self, ops: str) -> str:
        """x86 operands without their ``rip`` displacement and with the numbers that are addresses masked."""
        if "rip" in ops:
            ops = _RIP.sub("rip+DISP", ops)
        if "0x" in ops:
            ops = _HEX.sub(self._number, ops)
        return ops

    def _number(self, m: re.Match[str]) -> str:
        v = int(m.group(2), 16)
        if v >= 0x1000 and self.is_address(v):
            return "ADDR"
        return m.group(0)

    def _insns(self, code: bytes, address: int) -> Iterator[tuple[int, int, str, str, bytes]]:
        """(address, size, mnemonic, op_str, raw bytes) of each instruction, stopping at undecodable bytes."""
        off = 0
        for addr, size, mnem, ops in self._md.disasm_lite(code, address):
            yield addr, size, mnem, ops, code[off : off + size]
            off += size

    def _x86(self, h: hashlib._Hash, r: Range, code: bytes) -> None:
        done = 0
        out: list[str] = []
        append = out.append
        start, end = r.start, r.end
        masked = self._masked
        for _addr, size, mnem, ops in self._md.disasm_lite(code, start):
            if "0x" not in ops:
                append(code[done : done + size].hex())  # nothing that can be an address: the bytes themselves
                done += size
                continue
            done += size
            if "rip" not in ops and ops.startswith("0x") and _X86_BRANCH.match(mnem):
                target = int(ops, 16)
                ops = f"L{target - start}" if start <= target < end else "EXT"
            else:  # the same operands mask the same way throughout the binary: masked once
                m = masked.get(ops)
                if m is None:
                    m = masked[ops] = self._mask(ops)
                ops = m
            append(f"{mnem} {ops}")
        h.update("\n".join(out).encode())
        if done < len(code):
            h.update(b"\0RAW\0" + code[done:])

    def _a64(self, h: hashlib._Hash, r: Range, code: bytes) -> None:
        done = 0
        out = []
        page_regs: dict[str, int] = {}
        for i, (_addr, size, mnem, ops, _raw) in enumerate(self._insns(code, r.start)):
            done += size
            if "#0x" in ops or "#" in ops:
                first = ops.split(",", 1)[0].strip()
                if mnem == "adrp":
                    ops = f"{first}, PAGE"
                    page_regs[first] = i
                elif mnem in _A64_BRANCH or mnem.startswith("b."):
                    head, _, last = ops.rpartition("#")
                    try:
                        target = int(last, 16)
                    except ValueError:
                        target = None
                    if target is not None:
                        rel = f"L{target - r.start}" if r.start <= target < r.end else "EXT"
                        ops = f"{head}{rel}"
                elif mnem.startswith("ldr") and "[" not in ops:  # literal load
                    ops = f"{first}, LIT"
                else:
                    used = [
                        reg for reg, at in page_regs.items() if i - at <= 8 and (f"[{reg}" in ops or f", {reg}," in ops)
                    ]
                    if used:
                        ops = re.sub(r"#(0x[0-9a-f]+|\d+)", "LO12", ops)
                        for reg in used:
                            page_regs.pop(reg, None)
            out.append(f"{mnem} {ops}")
        h.update("\n".join(out).encode())
        if done < len(code):
            h.update(b"\0RAW\0" + code[done:])


_PADDING = frozenset({"nop", "int3", "nopw", "nopl", "xchg ax, ax"})


def hash_all(
    hasher: FunctionHasher, ranges: Sequence[Sequence[Range]]
) -> list[tuple[str | None, str | None, str | None]]:
    """(sha256, pic_hash, method) for each function's ranges (empty ranges: no hash)."""
    return [hasher.hash(r) if r else (None, None, None) for r in ranges]


def hash_and_demangle(
    hasher: FunctionHasher, ranges: Sequence[Sequence[Range]], names: Sequence[str | None]
) -> tuple[list[tuple[str | None, str | None, str | None]], list[str | None]]:
    """Hashes and demangled linkage names: the ELF backend's worker job."""
    return hash_all(hasher, ranges), [demangle(n) for n in names]
