"""Compiler and linker commands that failed while the build went on.

A Makefile can ignore errors (``-$(CC) -c bad.c``, ``$(CC) ... || true``,
``make -k``) and still exit 0: the build then looks like a success, or like
one with no binaries. The compiler wrappers (:mod:`assemblage.builds.wrappers`)
append one line per failed invocation to the file named by
``ASSEMBLAGE_COMPILER_FAILURES`` (exit status, folder, arguments); the engine
sets it for every build-phase step (not for configure steps, whose probes fail
on purpose) and reads it here.

Build systems also probe inside their build step (a Debian ``debian/rules``
runs ``configure`` from ``build-arch``; CMake re-runs its checks): failures in
autoconf's ``conftest``, CMake's ``CMakeFiles``/``CMakeScratch``/``TryCompile``,
Meson's ``meson-private``, waf's ``.conf_check`` folders, from standard input,
of preprocess-only commands, and commands with no source or object file
(``-qversion``, ``--help``) are probes and are ignored.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FAILURES_FILE", "CompilerFailure", "read_failures"]

FAILURES_FILE = "compiler-failures.log"  # in the scratch root, outside the source tree

_PROBE_PLACE = re.compile(
    r"conftest|CMakeFiles|CMakeScratch|TryCompile|meson-private|\.conf_check|"
    r"config\.log|/_configs\.sed|scons_conf|\.sconf_temp"
)
_PROBE_ARGS = {
    "-E",
    "-M",
    "-MM",
    "--version",
    "-v",
    "-V",
    "-dumpversion",
    "-dumpmachine",
    "-dumpfullversion",
    "-print-search-dirs",
    "-print-libgcc-file-name",
    "-fsyntax-only",
    "-",
    "/dev/null",
    "-###",
}


@dataclass(frozen=True)
class CompilerFailure:
    status: int
    folder: str
    arguments: str

    @property
    def links(self) -> bool:
        """A link (no ``-c``/``-S``): a failure there is a link error."""
        args = self.arguments.split()
        return "-c" not in args and "-S" not in args

    def __str__(self) -> str:
        return f"{self.arguments[:300]} (in {self.folder}, exit {self.status})"


_INPUT = re.compile(r"\.(?:c|cc|cp|cpp|cxx|c\+\+|C|m|mm|s|S|sx|o|lo|a|so)$")


def _is_probe(folder: str, arguments: str) -> bool:
    if _PROBE_PLACE.search(folder) or _PROBE_PLACE.search(arguments):
        return True
    args = arguments.split()
    if not any(_INPUT.search(a) for a in args if not a.startswith("-")):
        return True  # no source or object file: a version query or a feature probe (-qversion, --help)
    return bool(_PROBE_ARGS.intersection(args)) or any(a.startswith("-print-") for a in args)


def _output(arguments: str) -> str | None:
    args = arguments.split()
    for i, a in enumerate(args[:-1]):
        if a == "-o":
            return args[i + 1]
    return None


def read_failures(path: Path, *, limit: int = 1000) -> list[CompilerFailure]:
    """The failed compiler/linker commands recorded in ``path`` that were not probes.

    A failed command whose output (``-o FILE``, in the same folder) another
    command of the build then made is a probe too: rsync's Makefile compiles
    ``rounding.c`` with ``-DEXTRA_ROUNDING=0``, then ``1``, then ``3`` until one
    compiles. The wrappers record every successful command's output as an
    ``ok`` line for this.
    """
    try:  # written by the wrappers inside the build: never through a link, a regular file, capped
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return []
        text = fh.read(16 << 20).decode("utf-8", "replace")
    made: set[tuple[str, str]] = set()
    failed: list[CompilerFailure] = []
    for line in text.splitlines():
        status, _, rest = line.partition("\t")
        folder, _, arguments = rest.partition("\t")
        if status == "ok":
            made.add((folder, arguments))
        elif status.isdigit() and not _is_probe(folder, arguments):
            failed.append(CompilerFailure(int(status), folder, arguments))
    return [f for f in failed if (f.folder, _output(f.arguments)) not in made][:limit]
