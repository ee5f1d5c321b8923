"""Can a toolchain really build for a target here? A tiny compile and link, not just ``which``.

Finding ``clang-19`` on PATH says nothing about its Windows sysroot: without the
MinGW-w64 headers and libraries every ``windows-*-clang-19`` build fails with
``'stdio.h' file not found``, which used to be recorded as the project's own
``compile_error``. So a target counts as installed only when a C program that
includes ``<stdio.h>`` compiles and links with the configuration's own flags
(the same ``cflags``/``ldflags`` the builds get). One probe per (toolchain,
platform, arch) per process; about 0.1-0.3 s each.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from assemblage import _spawn
from assemblage.toolchains.base import CompilerSet

__all__ = ["ProbeResult", "probe_compilers", "probe_target"]

_PROGRAM = '#include <stdio.h>\nint main(void) { puts("assemblage"); return 0; }\n'


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    problem: str | None = None  # what is missing, in one line (``None`` when ``ok``)


def probe_compilers(compilers: CompilerSet, *, timeout: float = 60) -> ProbeResult:
    """Compile and link a C program with ``compilers`` on this machine."""
    missing = compilers.missing()
    if missing:
        return ProbeResult(False, f"missing {', '.join(missing)}")
    exe = "probe.exe" if compilers.platform == "windows" else "probe"
    with tempfile.TemporaryDirectory(prefix="asm-probe-") as tmp:
        src = Path(tmp) / "probe.c"
        src.write_text(_PROGRAM)
        # a PDB-writing link needs the flag's value (the engine's wrapper adds it per output)
        ldflags = [f"{f}probe.pdb" if f == "-Wl,--pdb=" else f for f in compilers.ldflags]
        argv = [shutil.which(compilers.cc) or compilers.cc, *compilers.cflags, *ldflags, "probe.c", "-o", exe]
        try:
            r = _spawn.run(argv, cwd=tmp, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.SubprocessError) as exc:
            return ProbeResult(False, f"{compilers.cc} could not run: {exc}")
        if r.returncode != 0 or not (Path(tmp) / exe).is_file():
            first = next((ln.strip() for ln in (r.stderr or "").splitlines() if "error" in ln.lower()), None)
            return ProbeResult(
                False,
                f"{compilers.cc} cannot compile and link for "
                f"{compilers.platform}-{compilers.arch}: {first or f'exit {r.returncode}'}",
            )
    return ProbeResult(True)


@functools.cache
def probe_target(toolchain: str, platform: str, arch: str) -> ProbeResult:
    """:func:`probe_compilers` for a toolchain's target at -O0, cached for the process."""
    from assemblage.toolchains.registry import get_toolchain

    tc = get_toolchain(toolchain)
    if tc.remote_only:
        return ProbeResult(False, f"{toolchain} runs only on Windows workers")
    if not tc.can_target(platform, arch):
        return ProbeResult(False, f"{toolchain} cannot target {platform}-{arch}")
    return probe_compilers(tc.compilers(platform, arch, "O0"))
