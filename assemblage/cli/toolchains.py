"""``assemblage toolchains``: what is installed, and installing with apt on Debian."""

from __future__ import annotations

import os
import shutil

from rich.console import Console
from rich.table import Table

from assemblage import _spawn
from assemblage.errors import ToolchainError
from assemblage.toolchains.registry import TOOLCHAINS, get_toolchain


def list_toolchains(console: Console) -> None:
    t = Table(title="Toolchains")
    t.add_column("toolchain")
    t.add_column("targets (✔ installed, ✘ missing)")
    t.add_column("opts")
    for tc in TOOLCHAINS.values():
        cells = []
        for platform, arch in tc.targets:
            if tc.remote_only:
                cells.append(f"[dim]{platform}-{arch} (Windows workers)[/]")
            else:
                ok = tc.available(platform, arch)
                cells.append(f"[green]✔ {platform}-{arch}[/]" if ok else f"[red]✘ {platform}-{arch}[/]")
        t.add_row(tc.name, "  ".join(cells), " ".join(tc.opts))
    console.print(t)


def install(console: Console, names: list[str]) -> None:
    if not names:
        raise ToolchainError("name the toolchains to install, e.g. assemblage toolchains install gcc-11 clang-19")
    packages: list[str] = []
    for spec in names:
        # NAME installs every target; NAME:PLATFORM-ARCH just one (e.g. clang-19:linux-x86_64)
        name, _, target = spec.partition(":")
        tc = get_toolchain(name)
        if tc.remote_only:
            raise ToolchainError(f"{name} is MSVC: it is installed on Windows workers (see workers/windows/)")
        targets = tc.targets
        if target:
            platform, _, arch = target.partition("-")
            if not tc.can_target(platform, arch):
                known = ", ".join(f"{p}-{a}" for p, a in tc.targets)
                raise ToolchainError(f"{name} cannot target {target!r}; it targets {known}")
            targets = ((platform, arch),)
        for platform, arch in targets:
            packages += [p for p in tc.packages(platform, arch) if p not in packages]
    if not shutil.which("apt-get"):
        raise ToolchainError(f"apt-get not found: install these packages by hand: {' '.join(packages)}")
    argv = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    if os.geteuid() != 0:
        argv = ["sudo", *argv]
    console.print(f"$ {' '.join(argv)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    r = _spawn.run(argv, env=env)
    if r.returncode != 0:
        raise ToolchainError(f"apt-get failed with exit code {r.returncode} (try apt-get update first)")
    list_toolchains(console)
