"""Position-independent hashes: same code at other addresses hashes the same."""

from __future__ import annotations

import struct

from assemblage.binaries.hashing import FunctionHasher
from assemblage.binaries.model import Range


def x86_func(disp: int, rel: int, imm: int = 5) -> bytes:
    # mov rax, [rip+disp]; call rel32; add eax, imm; jmp short +0; ret
    return (
        b"\x48\x8b\x05"
        + struct.pack("<i", disp)
        + b"\xe8"
        + struct.pack("<i", rel)
        + b"\x83\xc0"
        + bytes([imm])
        + b"\xeb\x00\xc3"
    )


def hasher(code_at: dict[int, bytes], arch: str = "x86_64") -> FunctionHasher:
    def read(start: int, end: int) -> bytes | None:
        for base, code in code_at.items():
            if base <= start and end <= base + len(code):
                return code[start - base : end - base]
        return None

    return FunctionHasher(arch, read, lambda v: 0x400000 <= v < 0x500000)


def test_x86_same_code_at_two_addresses_has_same_pic_hash_and_different_sha():
    a, b = x86_func(0x2F00, 0x100), x86_func(0x1F00, -0x80)
    h = hasher({0x1000: a, 0x8000: b})
    sa, pa, ma = h.hash([Range(0x1000, 0x1000 + len(a))])
    sb, pb, _ = h.hash([Range(0x8000, 0x8000 + len(b))])
    assert ma == "x86-masked"
    assert sa != sb and pa == pb


def test_x86_different_immediate_changes_pic_hash():
    a, b = x86_func(0x2F00, 0x100, imm=5), x86_func(0x2F00, 0x100, imm=6)
    h = hasher({0x1000: a, 0x8000: b})
    assert h.hash([Range(0x1000, 0x1000 + len(a))])[1] != h.hash([Range(0x8000, 0x8000 + len(b))])[1]


def test_x86_absolute_address_immediates_are_masked():
    # mov eax, imm32 (an address in the image) ; ret
    a = b"\xb8" + struct.pack("<I", 0x401000) + b"\xc3"
    b = b"\xb8" + struct.pack("<I", 0x402000) + b"\xc3"
    c = b"\xb8" + struct.pack("<I", 0x10) + b"\xc3"
    h = hasher({0x1000: a, 0x2000: b, 0x3000: c})
    ha, hb, hc = (h.hash([Range(base, base + 6)])[1] for base in (0x1000, 0x2000, 0x3000))
    assert ha == hb != hc


def test_unsupported_arch_falls_back_to_raw_and_says_so():
    code = b"\x00\xbf\x70\x47"
    h = hasher({0x1000: code}, arch="armhf")
    sha, pic, method = h.hash([Range(0x1000, 0x1004)])
    assert method == "raw" and sha == pic


def test_aarch64_branch_and_adrp_are_masked():
    # adrp x0, page ; add x0, x0, #lo12 ; bl target ; ret
    def func(page: int, lo12: int, bl: int) -> bytes:
        adrp = 0x90000000 | ((page & 3) << 29) | (((page >> 2) & 0x7FFFF) << 5)
        add = 0x91000000 | (lo12 << 10)
        blw = 0x94000000 | (bl & 0x3FFFFFF)
        return struct.pack("<4I", adrp, add, blw, 0xD65F03C0)

    a, b = func(1, 0x18, 0x40), func(3, 0x28, 0x123)
    h = hasher({0x1000: a, 0x8000: b}, arch="aarch64")
    ra, rb = h.hash([Range(0x1000, 0x1010)]), h.hash([Range(0x8000, 0x8010)])
    assert ra[2] == "aarch64-masked" and ra[0] != rb[0] and ra[1] == rb[1]


def test_unreadable_range_gives_no_hash():
    assert hasher({}).hash([Range(0x10, 0x20)]) == (None, None, None)
