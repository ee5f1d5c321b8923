"""Compiler records of a PDB turned into :class:`~assemblage.binaries.model.Producer`.

clang writes the ``-cc1`` command line into ``LF_BUILDINFO`` (quoted
arguments); MSVC writes its own command line (``-c -Zi -O2 ...``, Windows
quoting, long lines split into ``LF_SUBSTR_LIST`` pieces that
:mod:`.cv` joins). The optimisation level is read from these flags, not
from the configuration that asked for it.
"""

from __future__ import annotations

import re
from collections import Counter

from ..model import Producer
from .reader import CompileRecord

__all__ = ["majority_opt", "opt_from_flags", "producers_from_compiles", "split_command_line"]

# Arguments whose value names one file of one compile: dropped so that the
# producers of a project's many files collapse into a few.
_PER_FILE = frozenset(
    {
        "-main-file-name",
        "-o",
        "-dumpdir",
        "-MT",
        "-dependency-file",
        "-coverage-notes-file",
        "-coverage-data-file",
        "-stack-usage-file",
        "-split-dwarf-file",
        "-split-dwarf-output",
    }
)
_CLANG_OPT = re.compile(r"^-O([0-3sz]|fast|g)?$")
_MSVC_OPT = re.compile(r"^[-/]O([d12x])$")
_LINKERS = ("LLVM Linker", "Microsoft (R) LINK", "Microsoft (R) CVTRES")


def split_command_line(line: str) -> list[str]:
    """Split a command line the way both producers quote it: whitespace
    separates, double quotes group, a backslash escapes a quote."""
    out: list[str] = []
    cur: list[str] = []
    in_quote = started = False
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c == "\\" and i + 1 < n and line[i + 1] == '"':
            cur.append('"')
            started = True
            i += 2
            continue
        if c == '"':
            in_quote = not in_quote
            started = True
        elif c.isspace() and not in_quote:
            if started:
                out.append("".join(cur))
                cur, started = [], False
        else:
            cur.append(c)
            started = True
        i += 1
    if started:
        out.append("".join(cur))
    return out


def opt_from_flags(flags: tuple[str, ...] | list[str], compiler: str | None) -> str | None:
    """The optimisation level the flags select (the last one wins, as in the compilers)."""
    found: str | None = None
    for f in flags:
        if compiler == "msvc":
            m = _MSVC_OPT.match(f)
            if m:
                found = "O" + m.group(1)
        else:
            m = _CLANG_OPT.match(f)
            if m:
                found = "O" + (m.group(1) or "1")
    if compiler == "msvc" and found is None and flags:
        return "Od"  # cl's default
    return found


def _compiler(version: str) -> str | None:
    v = version.lower()
    if "clang" in v:
        return "clang"
    if "microsoft" in v or "optimizing compiler" in v:
        return "msvc"
    if "rustc" in v:
        return "rustc"
    return None


def producers_from_compiles(compiles: list[CompileRecord]) -> tuple[list[Producer], Counter[str]]:
    """Distinct producers of the compiled modules (linker records left out) and
    how many modules each optimisation level was seen in."""
    seen: dict[tuple, Producer] = {}
    opts: Counter[str] = Counter()
    for c in compiles:
        if c.language in ("link", "cvtres") or c.version.startswith(_LINKERS):
            continue
        compiler = _compiler(c.version)
        args = split_command_line(c.command_line or "")
        flags: list[str] = []
        skip = False
        for a in args:
            if skip:
                skip = False
                continue
            if a in _PER_FILE:
                skip = True
                continue
            flags.append(a)
        if c.source and flags and flags[-1] == c.source:
            flags.pop()  # the input file, when the command line names it
        if compiler == "msvc":
            version = ".".join(str(x) for x in c.frontend[:3])
        else:
            m = re.search(r"version (\d+(?:\.\d+)*)", c.version)
            version = m.group(1) if m else ".".join(str(x) for x in c.frontend[:3])
        opt = opt_from_flags(flags, compiler) if args else None
        if compiler == "clang" and args and opt is None:
            opt = "O0"  # cc1 without -O compiles at -O0
        if opt:
            opts[opt] += 1
        raw = c.version + (f" {c.command_line}" if c.command_line else "")
        key = (compiler, version, tuple(flags))
        seen.setdefault(
            key, Producer(raw=raw, compiler=compiler, version=version, flags=tuple(flags), opt=opt, source="pdb")
        )
    return list(seen.values()), opts


def majority_opt(opts: Counter[str]) -> str | None:
    """The level most modules were compiled at (ties: the first seen)."""
    return opts.most_common(1)[0][0] if opts else None
