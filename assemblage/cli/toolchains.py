"""``assemblage toolchains``: what is installed, and installing with apt on Debian."""

from __future__ import annotations

import os
import shutil

from rich.console import Console
from rich.table import Table
from rich.text import Text

from assemblage import _spawn
from assemblage.errors import ToolchainError
from assemblage.toolchains.registry import TOOLCHAINS, get_toolchain


def toolchain_targets() -> list[dict]:
    """Every toolchain x target with whether it compiles and links here (a probe, not ``which``)."""
    from concurrent.futures import ThreadPoolExecutor

    from assemblage.toolchains.probe import probe_target

    local = [(tc.name, p, a) for tc in TOOLCHAINS.values() if not tc.remote_only for p, a in tc.targets]
    with ThreadPoolExecutor(max_workers=4) as pool:  # each probe is a compiler subprocess
        list(pool.map(lambda t: probe_target(*t), local))
    rows = []
    for tc in TOOLCHAINS.values():
        for platform, arch in tc.targets:
            if tc.remote_only:
                rows.append(
                    {
                        "toolchain": tc.name,
                        "target": f"{platform}-{arch}",
                        "installed": False,
                        "problem": "runs on Windows workers (queue msvc)",
                        "install": None,
                    }
                )
                continue
            result = probe_target(tc.name, platform, arch)
            rows.append(
                {
                    "toolchain": tc.name,
                    "target": f"{platform}-{arch}",
                    "installed": result.ok,
                    "problem": result.problem,
                    "install": None if result.ok else f"assemblage toolchains install {tc.name}:{platform}-{arch}",
                }
            )
    return rows


def list_toolchains(console: Console, *, as_json: bool = False) -> None:
    rows = toolchain_targets()
    if as_json:
        import json

        console.print_json(json.dumps(rows))
        return
    t = Table(title="Toolchains (installed = a C program compiles and links for the target)")
    t.add_column("toolchain")
    t.add_column("targets (✔ installed, ✘ missing)")
    t.add_column("opts")
    problems = []
    for tc in TOOLCHAINS.values():
        cells = []
        for row in (r for r in rows if r["toolchain"] == tc.name):
            if tc.remote_only:
                cells.append(f"[dim]{row['target']} (Windows workers)[/]")
            elif row["installed"]:
                cells.append(f"[green]✔ {row['target']}[/]")
            else:
                cells.append(f"[red]✘ {row['target']}[/]")
                problems.append(row)
        t.add_row(tc.name, "  ".join(cells), " ".join(tc.opts))
    console.print(t)
    for row in problems:
        console.print(
            Text.assemble(
                ("✘", "red"), f" {row['toolchain']} {row['target']}: {row['problem']} (fix: {row['install']})"
            ),
            highlight=False,
        )


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
    from assemblage.toolchains.probe import probe_target

    probe_target.cache_clear()
    list_toolchains(console)
