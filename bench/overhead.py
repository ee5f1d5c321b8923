"""What the pipeline costs on top of the bare builds, on real Debian packages.

The same sources x configurations, at the same parallelism (``--jobs``), built
by two sides:

* **bare**: a small Python process that copies each tree and runs the very
  commands the build-system planners produce, with the real compilers behind
  the same compiler wrappers that force the requested level (without them
  bzip2's Makefile compiles at its own ``-O2`` whatever level was asked, a
  different and costlier build), and nothing else: no sandbox, no
  reproducibility flags, no dependency check, no analysis, no storage;
* **assemblage**: ``assemblage build RECIPE --out DIR --jobs N`` as a user runs
  it (sandbox, compiler wrappers, the Debian dependency check, binary
  collection, analysis, stripped copies, object store, SQLite).

By default the sources are two small Debian C libraries that each ship a
command-line tool, ``lz4`` (liblz4 and ``lz4``) and ``bzip2`` (libbz2,
``bzip2`` and ``bzip2recover``), under gcc-12 and clang-19 at O0, O1 and O2:
12 builds. ``--no-debian`` builds the local samples instead.

How it is kept fair:

* Both sides are timed the same way: each is one child process, started and
  waited for by this script, so process start (the interpreter, imports) is
  inside both timings. The sources are fetched once beforehand into a cache
  both sides use (the assemblage side finds them in its dataset's source
  cache, so it only checks them), so no download is timed on either side.
* Both sides run each build step in a session of its own, as the sandbox
  does (``bwrap --new-session``): with the kernel's autogroup scheduling a
  session is a scheduling group, so on a shared machine steps in their own
  sessions get a bigger share of the processors than steps sharing one; the
  bare side doing otherwise made the pipeline look faster than bare builds.
* Rounds alternate which side runs first (the order rotates each round), so
  warming caches and machine drift do not favour one side.
* Wall time and CPU time are both reported, since our side moves work to a
  second core (analysis in forked children while a build runs) that wall time
  hides. CPU time is counted by a cpuacct (cgroup v1) or cpu (cgroup v2)
  control group per side that its child process enters before it starts, so it
  covers every descendant. ``RUSAGE_CHILDREN`` cannot be used: processes in
  the sandbox's PID namespace are never counted there (bubblewrap's builds
  showed ~0 s), which made the pipeline's CPU look a third of the bare
  builds'. Without a usable cgroup no CPU figure is printed.
* Each round gives one paired ratio (assemblage / bare, wall and CPU); the
  summary prints the median of those ratios with their spread (min-max), and
  the median of each side's times.
* A ratio is printed only when both sides built the same thing: the same set
  of (source, configuration) cells produced binaries, with the same binary
  paths, by the same build system (the bare side runs the build system the
  pipeline will choose: Debian's rules when their Build-Depends are installed,
  else the tree's first build system). Otherwise the difference is printed and
  no ratio.

The target is at most 1.15 (wall).

Measured on a quiet machine (``--rounds 3``, the defaults: lz4 and bzip2, gcc-12
and clang-19 at O0/O1/O2, 12 builds, 5,269 functions, ``--jobs 2``): paired
ratio assemblage/bare wall 1.141 (1.137-1.179), CPU 1.147 (1.140-1.167); bare
35.3 s wall and 63.9 s CPU, assemblage 40.7 s wall and 73.7 s CPU.

    .venv/bin/python bench/overhead.py [--jobs 2] [--rounds 3] [--no-debian] [--packages lz4,bzip2]
                                       [--opts O0,O1,O2] [--baseline DIR] [--candidate DIR]

``--baseline DIR`` adds a third side in every round: ``assemblage build`` with
``DIR`` first on ``PYTHONPATH`` (an unpacked older version of the package), so
before/after ratios come from the same rounds; ``--candidate DIR`` runs the
assemblage side itself from ``DIR`` (a snapshot, so the checkout can change
while the benchmark runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SAMPLES = REPO / "recipes" / "samples"
TOOLCHAINS = ("gcc-12", "clang-19")


# ------------------------------------------------------------------ the bare side (its own process)


def _planner(name: str, root: Path):
    from assemblage.builds.debian import DebianRulesPlanner
    from assemblage.builds.systems import build_system_candidates

    if name == "debian-rules":
        return DebianRulesPlanner()
    for p in build_system_candidates(root):
        if p.name == name:
            return p
    raise SystemExit(f"{root}: no build system {name!r}")


def bare_build(cell: dict) -> bool:
    """Copy the tree and run the chosen build system's steps with the level-forcing compiler wrappers."""
    from assemblage.builds.systems import BuildTools, compiler_env
    from assemblage.builds.wrappers import write_wrappers
    from assemblage.recipes.matrix import Config
    from assemblage.toolchains.registry import get_toolchain

    cfg = Config.parse(cell["config"])
    compilers = get_toolchain(cfg.toolchain).compilers(cfg.platform, cfg.arch, cfg.opt)
    root = Path(cell["work"])
    shutil.copytree(cell["tree"], root, symlinks=True)
    bin_dir = root.parent / f"{root.name}-bin"
    cc, cxx = (str(p) for p in write_wrappers(bin_dir, compilers, cfg.id))
    tools = BuildTools(cc=cc, cxx=cxx, src_dir=str(root), which=shutil.which)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        **compiler_env(compilers, cc, cxx),
    }
    for step in _planner(cell["system"], root).plan(root, compilers, tools, jobs=1):
        r = subprocess.run(
            step.argv,
            cwd=root / step.cwd,
            env={**env, **step.env},
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if r.returncode != 0:
            return False
    return True


def bare_side(spec_path: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    spec = json.loads(Path(spec_path).read_text())
    with ThreadPoolExecutor(spec["jobs"]) as pool:
        ok = list(pool.map(bare_build, spec["cells"]))
    Path(spec["result"]).write_text(json.dumps(ok))


# ------------------------------------------------------------------ timing


class CpuGroup:
    """A control group of our own that counts the CPU time of a child process and all its descendants."""

    def __init__(self, name: str) -> None:
        self.path: Path | None = None
        for root, usage in (
            ("/sys/fs/cgroup/cpuacct", "cpuacct.usage"),
            ("/sys/fs/cgroup/unified", "cpu.stat"),
            ("/sys/fs/cgroup", "cpu.stat"),
        ):
            path = Path(root) / f"{name}-{os.getpid()}"
            try:
                path.mkdir()
            except OSError:
                continue
            if (path / usage).exists() and (path / "cgroup.procs").exists():
                self.path, self.usage = path, usage
                break
            path.rmdir()

    def enter(self) -> None:  # in the child, before exec
        if self.path is not None:
            (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def seconds(self) -> float | None:
        if self.path is None:
            return None
        text = (self.path / self.usage).read_text()
        if self.usage == "cpuacct.usage":
            return int(text) / 1e9
        fields = dict(line.split() for line in text.splitlines() if line.strip())
        return int(fields["usage_usec"]) / 1e6

    def remove(self) -> None:
        if self.path is not None:
            for _ in range(50):  # the last processes may still be leaving it
                try:
                    self.path.rmdir()
                    return
                except OSError:
                    time.sleep(0.1)


def timed(
    argv: list[str], env: dict[str, str] | None = None, log: Path | None = None
) -> tuple[float, float | None, int]:
    """(wall s, CPU s of the child and every descendant or None, exit status) of one child process."""
    group = CpuGroup("bench-overhead")
    try:
        with open(log or os.devnull, "wb") as out:
            t0 = time.perf_counter()
            rc = subprocess.run(
                argv,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
                start_new_session=True,
                preexec_fn=group.enter,
            ).returncode
            wall = time.perf_counter() - t0
        return wall, group.seconds(), rc
    finally:
        group.remove()


# ------------------------------------------------------------------ what each side built


def expected_system(tree: Path, kind: str) -> str:
    """The build system the pipeline uses first for this tree (debian-rules only when its deps are here)."""
    from assemblage.builds.systems import build_system_candidates

    if kind == "debian":
        from assemblage.builds.aptindex import BinaryArchive
        from assemblage.builds.debian import build_depends, build_profiles, is_debian_tree
        from assemblage.builds.deps import Provisioner, install_allowed
        from assemblage.toolchains.registry import get_toolchain

        if is_debian_tree(tree):
            compilers = get_toolchain("gcc-12").compilers("linux", "x86_64", "O0")
            res = BinaryArchive.load().satisfy(
                build_depends(tree), host_arch="amd64", profiles=build_profiles(compilers)
            )
            if not res.unsatisfiable and (install_allowed() or not Provisioner("local").missing(res.packages)):
                return "debian-rules"
    return build_system_candidates(tree)[0].name


def bare_binaries(cells: list[dict], ok: list[bool]) -> dict[tuple[int, str], tuple[str, tuple[str, ...]]]:
    from assemblage.builds.collect import find_binaries, snapshot

    out = {}
    for cell, good in zip(cells, ok):
        if not good:
            continue
        found = find_binaries(Path(cell["work"]), snapshot(Path(cell["tree"])), kinds={"executable", "shared"})
        if found:
            out[(cell["position"], cell["config"])] = (cell["system"], tuple(sorted(b.relpath for b in found)))
    return out


def dataset_figures(db: Path) -> tuple[dict, dict]:
    con = sqlite3.connect(db)
    try:
        cells: dict[tuple[int, str], tuple[str, list[str]]] = {}
        for pos, cfg, system, relpath in con.execute(
            "select s.position, c.identifier, b.build_system, x.relpath from binaries x"
            " join builds b on x.build_id = b.id join sources s on b.source_id = s.id"
            " join configurations c on b.configuration_id = c.id"
        ):
            cells.setdefault((pos, cfg), (system, []))[1].append(relpath)
        built = {k: (s, tuple(sorted(r))) for k, (s, r) in cells.items()}
        steps, analysis = con.execute("select sum(duration), sum(analysis_duration) from builds").fetchone()
        statuses = dict(con.execute("select status, count(*) from builds group by status").fetchall())
        nfun = con.execute("select count(*) from functions").fetchone()[0]
        return built, {"statuses": statuses, "steps": steps or 0.0, "analysis": analysis or 0.0, "functions": nfun}
    finally:
        con.close()


def differences(bare: dict, asm: dict) -> list[str]:
    out = []
    for key in sorted(set(bare) | set(asm)):
        if bare.get(key) != asm.get(key):
            out.append(f"  source {key[0]} {key[1]}: bare {bare.get(key)} / assemblage {asm.get(key)}")
    return out


# ------------------------------------------------------------------ main


def spread(values: list[float | None]) -> str:
    if any(v is None for v in values):
        return "n/a (no usable control group to count CPU)"
    return f"{statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"


def fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a / b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-debian", action="store_true", help="the local samples instead of the Debian packages")
    ap.add_argument("--packages", default="lz4,bzip2", help="Debian source packages (comma-separated)")
    ap.add_argument("--opts", default="O0,O1,O2", help="optimisation levels (comma-separated)")
    ap.add_argument("--baseline", help="also time assemblage with this folder first on PYTHONPATH (an older version)")
    ap.add_argument("--candidate", help="run the assemblage side with this folder first on PYTHONPATH")
    ap.add_argument("--keep", type=Path, help="keep each round's datasets and logs under this folder")
    ap.add_argument("--bare-side", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare_side:
        bare_side(args.bare_side)
        return 0

    from assemblage.recipes import expand_matrix, parse_recipe
    from assemblage.sources import fetch_source

    if args.no_debian:
        sources = [{"path": str(SAMPLES / n)} for n in ("calc", "shapes", "wordfreq", "vecmath")]
    else:
        sources = [{"debian": name} for name in args.packages.split(",")]
    doc = {
        "name": "bench-overhead",
        "sources": sources,
        "matrix": {"toolchain": list(TOOLCHAINS), "opt": args.opts.split(",")},
        "outputs": {"stripped": True},
    }
    recipe = parse_recipe(doc)
    configs, _ = expand_matrix(recipe)

    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    cache = work / "sources"  # fetched once, outside the timings; both sides build from it
    fetched = [fetch_source(spec, base=REPO, cache=cache) for spec in recipe.sources]
    systems = [expected_system(f.path, f.kind) for f in fetched]
    recipe_path = work / "recipe.yaml"
    recipe_path.write_text(json.dumps(doc))  # JSON is YAML
    cells = [
        {"position": pos, "tree": str(f.path), "config": c.id, "system": systems[pos]}
        for pos, f in enumerate(fetched)
        for c in configs
    ]
    names = ", ".join(f"{f.name} {f.version or ''} [{s}]" for f, s in zip(fetched, systems))
    print(f"{len(fetched)} sources ({names}) x {len(configs)} configurations = {len(cells)} builds, jobs={args.jobs}")
    cli = Path(sys.executable).parent / "assemblage"

    def env_from(folder: str | None) -> dict[str, str]:
        if folder is None:
            return dict(os.environ)
        return {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(folder).resolve()), os.environ.get("PYTHONPATH")])),
        }

    envs = {"assemblage": env_from(args.candidate)}
    if args.candidate:
        print(f"assemblage: assemblage build from {args.candidate}")
    if args.baseline:
        envs["baseline"] = env_from(args.baseline)
        print(f"baseline: assemblage build from {args.baseline}")
    sides = ["bare", *envs]

    rounds: list[dict[str, tuple[float, float | None]]] = []
    invalid = 0
    for rnd in range(1, args.rounds + 1):
        res: dict[str, tuple[float, float | None]] = {}
        built: dict[str, dict] = {}
        order = sides[(rnd - 1) % len(sides) :] + sides[: (rnd - 1) % len(sides)]
        notes = []
        for side in order:
            if side == "bare":
                scratch = Path(tempfile.mkdtemp(prefix="bare-", dir=work))
                mine = [{**c, "work": str(scratch / f"{i}")} for i, c in enumerate(cells)]
                spec = scratch / "cells.json"
                spec.write_text(json.dumps({"jobs": args.jobs, "cells": mine, "result": str(scratch / "ok.json")}))
                wall, cpu, _ = timed([sys.executable, str(Path(__file__).resolve()), "--bare-side", str(spec)])
                ok = json.loads((scratch / "ok.json").read_text())
                built[side] = bare_binaries(mine, ok)
                notes.append(f"bare {wall:.2f}s wall {fmt(cpu)}s cpu ({len(built[side])} cells with binaries)")
                shutil.rmtree(scratch, ignore_errors=True)
            else:
                out = Path(tempfile.mkdtemp(prefix=f"{side}-", dir=work))
                (out / "sources").symlink_to(cache, target_is_directory=True)
                log = out / "cli.log"
                wall, cpu, rc = timed(
                    [
                        str(cli),
                        "build",
                        str(recipe_path),
                        "--out",
                        str(out),
                        "--jobs",
                        str(args.jobs),
                        "--json",
                        "--allow-failures",
                    ],
                    env=envs[side],
                    log=log,
                )
                if rc != 0:
                    print(log.read_text()[-3000:])
                    raise SystemExit(f"assemblage build ({side}) exited {rc}")
                built[side], figures = dataset_figures(out / "dataset.sqlite")
                notes.append(
                    f"{side} {wall:.2f}s wall {fmt(cpu)}s cpu ({figures['statuses']}, {len(built[side])} "
                    f"cells, {figures['functions']} functions; build steps {figures['steps']:.1f}s, "
                    f"analysis+storage {figures['analysis']:.1f}s summed over builds)"
                )
                if args.keep:
                    shutil.copytree(out, args.keep / f"round-{rnd}-{side}", symlinks=True, dirs_exist_ok=True)
                shutil.rmtree(out, ignore_errors=True)
            res[side] = (wall, cpu)
        ratios = " ".join(
            f"{side}/bare wall {res[side][0] / res['bare'][0]:.3f} cpu {fmt(ratio(res[side][1], res['bare'][1]))}"
            for side in envs
        )
        print(f"round {rnd} ({' > '.join(order)}): " + " | ".join(notes) + f" | {ratios}", flush=True)
        for side in envs:
            diff = differences(built["bare"], built[side])
            if diff:
                invalid += 1
                print(f"bare and {side} built different things:\n" + "\n".join(diff))
        rounds.append(res)
    shutil.rmtree(work, ignore_errors=True)
    if invalid:
        print(f"no ratio: in {invalid} comparison(s) the sides built different sets (see above)")
        return 1
    for side in sides:
        print(
            f"{side + ':':<12} wall {spread([r[side][0] for r in rounds])} s, cpu {spread([r[side][1] for r in rounds])} s"
        )
    for side in envs:
        print(
            f"ratio {side}/bare, paired by round: wall {spread([r[side][0] / r['bare'][0] for r in rounds])}, "
            f"cpu {spread([ratio(r[side][1], r['bare'][1]) for r in rounds])}  (target wall <= 1.15)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
