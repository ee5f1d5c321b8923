"""Compiler provenance read back from a binary: DW_AT_producer, ``.comment``.

gcc records its code-generation switches in DW_AT_producer by default
(``-grecord-gcc-switches``, on since gcc 4.8):
``GNU C17 12.2.0 -mtune=generic -march=x86-64 -g -O2``. clang records its
whole command line only with ``-grecord-gcc-switches``/``-grecord-command-line``:
``Debian clang version 19.1.7 (3~deb12u1) /usr/lib/llvm-19/bin/clang -g -O2 ...``;
without it the producer carries no flags and the level is unknown (None).

The *observed* level of a compilation is the last ``-O`` switch; when flags
were recorded but no ``-O`` is among them the compiler's default, ``O0``,
applies.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from .model import Producer

__all__ = ["opt_from_flags", "parse_comment", "parse_producer", "observed_opt"]

_GCC = re.compile(
    r"^GNU (?:C|C\+\+|Fortran|Objective-C|Objective-C\+\+|D|Go|Ada|GIMPLE|Modula-2|Rust)\S*\s+(\d+(?:\.\d+)*)\S*\s*(.*)$",
    re.S,
)
_GAS = re.compile(r"^GNU AS\s+(\S+)")
_CLANG = re.compile(r"clang version (\d+(?:\.\d+)*)")
_OPT = re.compile(r"^-O(\d+|s|z|g|fast|)$")
# Switches that say nothing about code generation (and the argument they take).
_NOISE_WITH_ARG = frozenset({"-o", "-dumpdir", "-dumpbase", "-MF", "-MT", "-MQ", "-main-file-name", "-x"})
_NOISE = frozenset({"-c", "-MD", "-MMD", "-MP", "-S", "-E", "-pipe", "-v"})


def opt_from_flags(flags: Sequence[str]) -> str | None:
    """The effective optimisation level of a switch list (last ``-O`` wins)."""
    level = None
    for f in flags:
        m = _OPT.match(f)
        if not m:
            continue
        v = m.group(1)
        if v == "":
            level = "O1"
        elif v.isdigit():
            level = f"O{min(int(v), 3)}"
        else:
            level = f"O{v}"
    return level


# Switches whose value may follow as the next word (``-D FOO=1``, ``-I /usr/include``): kept with it.
_JOINED = frozenset({"-D", "-U", "-I", "-L", "-l"})  # written back as one word: -DFOO=1
_WITH_VALUE = frozenset(
    {
        "-include",
        "-imacros",
        "-isystem",
        "-iquote",
        "-idirafter",
        "-isysroot",
        "-iprefix",
        "-iwithprefix",
        "-iwithprefixbefore",
        "--sysroot",
        "-Xclang",
        "-mllvm",
        "-Xlinker",
        "-Xassembler",
        "-Xpreprocessor",
        "-target",
        "-arch",
        "-aux-info",
        "-wrapper",
    }
)


def _clean(tokens: Iterable[str]) -> tuple[str, ...]:
    """The code-generation switches of a command line: values kept with their switch, each switch once.

    A switch given twice keeps its last place (``-g -O2 -g`` -> ``-O2 -g``), so that "the
    last ``-O`` wins" reads the same on the cleaned list.
    """
    out: list[str] = []
    items = list(tokens)
    i = 0
    while i < len(items):
        t = items[i]
        i += 1
        if t in _NOISE_WITH_ARG:
            i += 1
            continue
        if not t.startswith("-") or t in _NOISE or t.startswith("--driver-mode"):
            continue
        if (t in _JOINED or t in _WITH_VALUE) and i < len(items):
            value = items[i]
            i += 1
            t = f"{t}{value}" if t in _JOINED else f"{t} {value}"
        out.append(t)
    seen: set[str] = set()
    kept: list[str] = []
    for t in reversed(out):
        if t not in seen:
            seen.add(t)
            kept.append(t)
    return tuple(reversed(kept))


def parse_producer(raw: str, *, source: str = "dwarf") -> Producer:
    """Parse one DW_AT_producer (or ``.comment`` entry) into compiler, version, flags, level."""
    s = raw.strip()
    m = _GCC.match(s)
    if m:
        flags = _clean(m.group(2).split())
        opt = opt_from_flags(flags)
        if opt is None and flags:
            opt = "O0"
        return Producer(raw, "gcc", m.group(1), flags, opt, source=source)
    m = _GAS.match(s)
    if m:
        return Producer(raw, "gas", m.group(1), (), None, source=source)
    m = _CLANG.search(s)
    if m:
        rest = s[m.end() :].split()
        flags = _clean(rest)
        opt = opt_from_flags(flags)
        if opt is None and flags:
            opt = "O0"
        return Producer(raw, "clang", m.group(1), flags, opt, source=source)
    return Producer(raw, None, None, (), None, source=source)


def parse_comment(data: bytes) -> list[Producer]:
    """Producers from a ``.comment`` section (NUL-separated strings, deduplicated)."""
    out: list[Producer] = []
    seen: set[str] = set()
    for chunk in data.split(b"\0"):
        text = chunk.decode("utf-8", "replace").strip()
        if not text or text in seen:
            continue
        seen.add(text)
        gcc = re.match(r"^GCC: \(([^)]*)\)\s*(\S+)", text)
        if gcc:
            out.append(Producer(text, "gcc", gcc.group(2), (), None, source="comment"))
        elif text.startswith("Linker: "):
            m = re.search(r"(\d+(?:\.\d+)+)", text)
            out.append(
                Producer(text, text[8:].split()[0].lower(), m.group(1) if m else None, (), None, source="comment")
            )
        else:
            out.append(parse_producer(text, source="comment"))
    return out


def observed_opt(units: Sequence[tuple[Producer | None, int]]) -> tuple[str | None, tuple[str, ...]]:
    """The level (and flags) of the user's code, from (producer, function count) per unit.

    The rule: units whose producer is not a C/C++ compiler (the assembler,
    unknown producers) or whose level cannot be read are ignored. Among the
    rest, units that contain at least one function vote (falling back to all
    of them if none has a function, e.g. a stripped-down DWARF); the level
    held by most units wins, ties going to the level with more functions,
    then to the level seen first. The flags are the most common flag list
    among the winning units.
    """
    usable = [(p, n) for p, n in units if p is not None and p.compiler in ("gcc", "clang") and p.opt]
    voters = [(p, n) for p, n in usable if n > 0] or usable
    if not voters:
        return None, ()
    count: Counter[str] = Counter()
    funcs: Counter[str] = Counter()
    first: dict[str, int] = {}
    for i, (p, n) in enumerate(voters):
        assert p.opt is not None
        count[p.opt] += 1
        funcs[p.opt] += n
        first.setdefault(p.opt, i)
    best = max(count, key=lambda lvl: (count[lvl], funcs[lvl], -first[lvl]))
    flags = Counter(p.flags for p, _ in voters if p.opt == best).most_common(1)[0][0]
    return best, flags
