"""Find the binaries a build produced, by magic bytes, never by file name."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FoundBinary", "classify", "find_binaries", "snapshot"]

# Trees that hold the build system's own probes, not the project's outputs.
_IGNORED_DIRS = {"CMakeFiles", "meson-private", "meson-logs", ".git", "conftest.dir", "autom4te.cache"}


@dataclass(frozen=True, slots=True)
class FoundBinary:
    path: Path
    relpath: str
    format: str  # "elf" | "pe" | "ar"
    kind: str  # "executable" | "shared" | "object" | "static"


def classify(path: Path) -> tuple[str, str] | None:
    """(format, kind) of a file from its first bytes, or None when it is not a binary we collect."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
            if head[:4] == b"\x7fELF" and len(head) >= 18:
                little = head[5] == 1
                (e_type,) = struct.unpack("<H" if little else ">H", head[16:18])
                kind = {1: "object", 2: "executable", 3: "shared"}.get(e_type)
                if kind == "shared" and _elf_is_pie_executable(fh, head):
                    kind = "executable"
                return ("elf", kind) if kind else None
            if head[:2] == b"MZ" and len(head) >= 64:
                (pe_off,) = struct.unpack("<I", head[60:64])
                fh.seek(pe_off)
                sig = fh.read(24)
                if sig[:4] != b"PE\0\0" or len(sig) < 24:
                    return None
                (characteristics,) = struct.unpack("<H", sig[22:24])
                return ("pe", "shared" if characteristics & 0x2000 else "executable")
            if head[:8] == b"!<arch>\n":
                return ("ar", "static")
    except OSError:
        return None
    return None


def _elf_is_pie_executable(fh, head: bytes) -> bool:
    """A PIE executable is ET_DYN too: it has a PT_INTERP program header."""
    is64 = head[4] == 2
    end = "<" if head[5] == 1 else ">"
    try:
        if is64:
            fh.seek(0)
            hdr = fh.read(64)
            phoff, = struct.unpack(end + "Q", hdr[32:40])
            phentsize, phnum = struct.unpack(end + "HH", hdr[54:58])
        else:
            fh.seek(0)
            hdr = fh.read(52)
            phoff, = struct.unpack(end + "I", hdr[28:32])
            phentsize, phnum = struct.unpack(end + "HH", hdr[42:46])
        for i in range(min(phnum, 256)):
            fh.seek(phoff + i * phentsize)
            (p_type,) = struct.unpack(end + "I", fh.read(4))
            if p_type == 3:  # PT_INTERP
                return True
    except (struct.error, OSError):
        return False
    return False


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every regular file, to tell afterwards what the build made."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for fn in filenames:
            p = os.path.join(dirpath, fn)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns)
    return out


def find_binaries(root: Path, before: dict[str, tuple[int, int]], *, kinds: set[str]) -> list[FoundBinary]:
    """Binaries under ``root`` that are new or changed since ``before``, of the wanted kinds."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _IGNORED_DIRS)
        for fn in sorted(filenames):
            p = Path(dirpath, fn)
            if p.is_symlink() or not p.is_file():
                continue
            rel = os.path.relpath(p, root)
            st = p.stat()
            if before.get(rel) == (st.st_size, st.st_mtime_ns):
                continue
            c = classify(p)
            if c and c[1] in kinds:
                found.append(FoundBinary(path=p, relpath=rel, format=c[0], kind=c[1]))
    return found
