"""Compiler wrappers: the configuration's flags always win, whatever the build system does.

Makefiles hard-code ``CFLAGS = -O3``, CMake's build types append ``-O2``,
``configure`` scripts add ``-g -O2``: passing our level in CFLAGS is not
enough, and the published Assemblage data carried wrong optimisation labels
because of exactly this. Each build therefore gets a private ``bin`` folder,
first on PATH, with a small POSIX sh wrapper under every common compiler name
(``cc``, ``gcc``, ``clang``, ``c++``, the target-prefixed names...). A wrapper
drops every ``-O*``, ``-g0`` and ``-s`` the project passes (and ``-Werror``,
``-Werror=...``, ``-pedantic-errors``, which change no code but stop a build
with the compiler the project was not tried with: Debian's
xdg-desktop-portal-wlr fails under clang 19 on ``-Wgnu-folding-constant``) and
appends the configuration's flags last, then runs the real compiler of the
configuration. When ``ASSEMBLAGE_COMPILER_FAILURES`` names a file, a wrapper
whose compiler failed appends one line to it (exit status, folder, arguments),
and one whose compiler succeeded the output it made: a Makefile that ignores
errors (``-$(CC) ...``, ``|| true``) still ends with that record, which the
engine reads (see :mod:`assemblage.builds.failures`). The wrapper text is made only from our own configuration (never
from repository data) and passes the project's arguments through ``"$@"``, so
no argument is ever re-parsed by a shell.

``strip`` (and ``<triple>-strip``, ``llvm-strip``) are wrapped too: a Makefile
that runs ``strip prog`` itself (Debian's aribas does, whatever
``DEB_BUILD_OPTIONS=nostrip`` says) would take the debug information and the
symbols every label is read from (aribas kept 3 functions of its hundreds and
no ``DW_AT_producer``). The wrapper leaves the file as it is (with ``-o OUT``
it copies it there); the pipeline makes its own stripped copy of every binary
after collecting it.
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

from assemblage._spawn import write_executable
from assemblage.errors import BuildError
from assemblage.toolchains.base import LINUX_TRIPLES, CompilerSet

__all__ = ["write_wrappers"]

_STRIP = """#!/bin/sh
# Written by assemblage: the project's own strip would take the debug information and symbols the
# labels are read from; the file is left as it is (copied to -o OUT when asked). The pipeline strips
# its own copy of every binary after collecting it.
out=
prev=
last=
for arg do
  case "$prev" in -o) out=$arg; prev=; continue ;; esac
  case "$arg" in
    -o) ;;
    -o?*) out=${arg#-o} ;;
    --output-file=*) out=${arg#--output-file=} ;;
    -*) ;;
    *) last=$arg ;;
  esac
  prev=$arg
done
if [ -n "$out" ] && [ -n "$last" ] && [ "$out" != "$last" ]; then
  exec cp -- "$last" "$out"
fi
exit 0
"""

_TEMPLATE = """#!/bin/sh
# Written by assemblage for {config}: drops the project's optimisation flags
# and appends the configuration's, so the label matches the binary.{seed_note}
out=
prev=
for arg do
  shift
  [ "$prev" = "-o" ] && out=$arg
  prev=$arg
  case "$arg" in
    -O*|-g0|-s|-Werror|-Werror=*|-pedantic-errors) ;;
    -o?*) out=${{arg#-o}}; set -- "$@" "$arg" ;;
    *) set -- "$@" "$arg" ;;
  esac
done
if [ -n "${{ASSEMBLAGE_COMPILER_LENIENT:-}}" ]; then
  set -- "$@" {lenient}
fi
{real} "$@" {flags}{seed}
rc=$?
if [ -n "${{ASSEMBLAGE_COMPILER_FAILURES:-}}" ]; then
  if [ "$rc" -ne 0 ]; then
    printf '%s\t%s\t%s\n' "$rc" "$PWD" "$*" >> "$ASSEMBLAGE_COMPILER_FAILURES" 2>/dev/null
  elif [ -n "$out" ]; then
    printf 'ok\t%s\t%s\n' "$PWD" "$out" >> "$ASSEMBLAGE_COMPILER_FAILURES" 2>/dev/null
  fi
fi
exit "$rc"
"""
# gcc also gets -frandom-seed=<the output file> (see assemblage.builds.reproducible)
_SEED = ' ${{out:+"-frandom-seed=$out"}}'
_SEED_NOTE = "\n# Seeds gcc's random names with the output file, so they are the same every build."

# Diagnostics that clang makes errors by default where gcc, the compiler Debian builds with, only
# warns: kept as warnings when a step sets ASSEMBLAGE_COMPILER_LENIENT (the Debian path does). They
# change no code generated. Through the wrapper because many rules files ignore DEB_CFLAGS_SET
# (st's config.mk, pbzip2's Makefile). Seen here: nagios-plugins-contrib (implicit int), st
# (implicit declaration of _getshort), pbzip2 (a macro glued to a string literal), libbraiding (register).
CLANG_LENIENCE = (
    "-Wno-error=implicit-int",
    "-Wno-error=implicit-function-declaration",
    "-Wno-error=int-conversion",
    "-Wno-error=incompatible-function-pointer-types",
    "-Wno-error=reserved-user-defined-literal",
    "-Wno-error=c++11-narrowing",
    "-Wno-error=register",
    "-Wno-error=enum-constexpr-conversion",
)


def _names(compilers: CompilerSet, lang: str) -> list[str]:
    c = lang == "c"
    names = ["cc", "gcc", "clang"] if c else ["c++", "g++", "clang++", "cpp++"]
    names.append(compilers.cc if c else compilers.cxx)
    if compilers.platform == "linux" and not compilers.host_triple:
        # Debian's rules and buildtools.mk may name the native compiler by its triplet
        t = LINUX_TRIPLES.get(compilers.arch)
        if t:
            names += [f"{t}-gcc", f"{t}-cc"] if c else [f"{t}-g++", f"{t}-c++"]
    if compilers.host_triple:
        t = compilers.host_triple
        if compilers.platform == "windows" and Path(compilers.cc).name.startswith("clang"):
            # clang targeting MinGW finds its headers and libraries through the first
            # `<triple>-gcc` on PATH (../<triple>/include, ../lib/gcc/<triple>): a wrapper
            # of that name in the build's bin/ would leave it without stdio.h
            names += [f"{t}-clang"] if c else [f"{t}-clang++"]
        else:
            names += [f"{t}-gcc", f"{t}-cc", f"{t}-clang"] if c else [f"{t}-g++", f"{t}-c++", f"{t}-clang++"]
    return sorted({Path(n).name for n in names})


def write_wrappers(
    bin_dir: Path,
    compilers: CompilerSet,
    config_id: str,
    which: Callable[[str], str | None] = shutil.which,
    *,
    extra_flags: tuple[str, ...] = (),
    random_seed: bool = False,
) -> tuple[Path, Path]:
    """Write the wrappers; return the paths of the C and C++ wrappers to use as CC/CXX.

    ``which`` finds the real compilers where the build runs (the host, or a runner's image).
    ``extra_flags`` go last on every call (the reproducibility flags); ``random_seed`` adds
    ``-frandom-seed=<output file>`` to calls that name their output.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    flags = shlex.join([*compilers.cflags, *(f for f in compilers.ldflags if f not in compilers.cflags), *extra_flags])
    lenient = shlex.join(CLANG_LENIENCE) if Path(compilers.cc).name.startswith("clang") else ""
    out: dict[str, Path] = {}
    for lang, real_name in (("c", compilers.cc), ("c++", compilers.cxx)):
        real = which(real_name) or real_name
        if Path(real).resolve().parent == bin_dir.resolve():
            raise BuildError(f"the compiler {real_name!r} would be replaced by its own wrapper")
        text = _TEMPLATE.format(
            config=config_id,
            real=shlex.quote(real),
            flags=flags,
            lenient=lenient,
            seed=_SEED.format() if random_seed else "",
            seed_note=_SEED_NOTE if random_seed else "",
        )
        for name in _names(compilers, lang):
            p = bin_dir / name
            write_executable(p, text)
        out[lang] = bin_dir / ("cc" if lang == "c" else "c++")
    triples = {t for t in (compilers.host_triple, LINUX_TRIPLES.get(compilers.arch)) if t}
    for name in ("strip", "llvm-strip", *(f"{t}-strip" for t in sorted(triples))):
        write_executable(bin_dir / name, _STRIP)
    return out["c"], out["c++"]
