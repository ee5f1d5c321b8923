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
* Rounds alternate which side runs first (bare first in odd rounds,
  assemblage first in even ones), so warming caches and machine drift do not
  favour one side.
* Wall time and CPU time are both reported. CPU time is the user + system time
  of the child and everything it waited for (the ``RUSAGE_CHILDREN`` delta
  around each side), so work our side moves to a second core (analysis in a
  forked child while a build runs) shows up even where wall time hides it.
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

    .venv/bin/python bench/overhead.py [--jobs 2] [--rounds 3] [--no-debian] [--packages lz4,bzip2]
                                       [--opts O0,O1,O2] [--pythonpath DIR]

``--pythonpath DIR`` runs the assemblage side with ``DIR`` first on ``PYTHONPATH``
(an unpacked older version of the package, for before/after figures).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
    tools = BuildTools(cc=cc, cxx=cxx, src_dir=str(root))
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           **compiler_env(compilers, cc, cxx)}
    for step in _planner(cell["system"], root).plan(root, compilers, tools, jobs=1):
        r = subprocess.run(step.argv, cwd=root / step.cwd, env={**env, **step.env},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


def timed(argv: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> tuple[float, float, int]:
    """(wall s, CPU s of the child and its descendants, exit status) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = open(log, "wb") if log else subprocess.DEVNULL
    try:
        t0 = time.perf_counter()
        rc = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
        wall = time.perf_counter() - t0
    finally:
        if log:
            out.close()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, rc


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
            res = BinaryArchive.load().satisfy(build_depends(tree), host_arch="amd64",
                                               profiles=build_profiles(compilers))
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
                " join configurations c on b.configuration_id = c.id"):
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


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-debian", action="store_true", help="the local samples instead of the Debian packages")
    ap.add_argument("--packages", default="lz4,bzip2", help="Debian source packages (comma-separated)")
    ap.add_argument("--opts", default="O0,O1,O2", help="optimisation levels (comma-separated)")
    ap.add_argument("--pythonpath", help="run the assemblage side with this folder first on PYTHONPATH")
    ap.add_argument("--keep", type=Path, help="keep each round's dataset and logs under this folder")
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
    doc = {"name": "bench-overhead", "sources": sources,
           "matrix": {"toolchain": list(TOOLCHAINS), "opt": args.opts.split(",")},
           "outputs": {"stripped": True}}
    recipe = parse_recipe(doc)
    configs, _ = expand_matrix(recipe)

    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    cache = work / "sources"  # fetched once, outside the timings; both sides build from it
    fetched = [fetch_source(spec, base=REPO, cache=cache) for spec in recipe.sources]
    systems = [expected_system(f.path, f.kind) for f in fetched]
    recipe_path = work / "recipe.yaml"
    recipe_path.write_text(json.dumps(doc))  # JSON is YAML
    cells = [{"position": pos, "tree": str(f.path), "config": c.id, "system": systems[pos]}
             for pos, f in enumerate(fetched) for c in configs]
    names = ", ".join(f"{f.name} {f.version or ''} [{s}]" for f, s in zip(fetched, systems))
    print(f"{len(fetched)} sources ({names}) x {len(configs)} configurations = {len(cells)} builds, jobs={args.jobs}")
    cli = Path(sys.executable).parent / "assemblage"
    asm_env = dict(os.environ)
    if args.pythonpath:
        asm_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(args.pythonpath).resolve()),
                                                              asm_env.get("PYTHONPATH")]))
        print(f"assemblage side from {args.pythonpath}")

    rounds, invalid = [], 0
    for rnd in range(1, args.rounds + 1):
        res: dict[str, tuple[float, float]] = {}
        order = ("bare", "assemblage") if rnd % 2 else ("assemblage", "bare")
        for side in order:
            if side == "bare":
                scratch = Path(tempfile.mkdtemp(prefix="bare-", dir=work))
                mine = [{**c, "work": str(scratch / f"{i}")} for i, c in enumerate(cells)]
                spec = scratch / "cells.json"
                spec.write_text(json.dumps({"jobs": args.jobs, "cells": mine, "result": str(scratch / "ok.json")}))
                wall, cpu, _ = timed([sys.executable, str(Path(__file__).resolve()), "--bare-side", str(spec)])
                ok = json.loads((scratch / "ok.json").read_text())
                bare_built = bare_binaries(mine, ok)
                shutil.rmtree(scratch, ignore_errors=True)
            else:
                out = Path(tempfile.mkdtemp(prefix="asm-", dir=work))
                (out / "sources").symlink_to(cache, target_is_directory=True)
                log = out / "cli.log"
                wall, cpu, rc = timed([str(cli), "build", str(recipe_path), "--out", str(out), "--jobs",
                                       str(args.jobs), "--json", "--allow-failures"], env=asm_env, log=log)
                if rc != 0:
                    print(log.read_text()[-3000:])
                    raise SystemExit(f"assemblage build exited {rc}")
                asm_built, figures = dataset_figures(out / "dataset.sqlite")
                if args.keep:
                    shutil.copytree(out, args.keep / f"round-{rnd}", symlinks=True, dirs_exist_ok=True)
                shutil.rmtree(out, ignore_errors=True)
            res[side] = (wall, cpu)
        diff = differences(bare_built, asm_built)
        (bw, bc), (aw, ac) = res["bare"], res["assemblage"]
        print(f"round {rnd} ({order[0]} first): bare {bw:.2f}s wall {bc:.2f}s cpu ({len(bare_built)} cells with "
              f"binaries) | assemblage {aw:.2f}s wall {ac:.2f}s cpu ({figures['statuses']}, {len(asm_built)} cells, "
              f"{figures['functions']} functions; build steps {figures['steps']:.1f}s, analysis+storage "
              f"{figures['analysis']:.1f}s summed over builds) | ratio wall {aw / bw:.3f} cpu {ac / bc:.3f}", flush=True)
        if diff:
            invalid += 1
            print("the two sides built different things:\n" + "\n".join(diff))
        rounds.append((bw, bc, aw, ac))
    shutil.rmtree(work, ignore_errors=True)
    if invalid:
        print(f"no ratio: in {invalid} round(s) the two sides built different sets (see above)")
        return 1
    print(f"bare:       wall {spread([r[0] for r in rounds])} s, cpu {spread([r[1] for r in rounds])} s")
    print(f"assemblage: wall {spread([r[2] for r in rounds])} s, cpu {spread([r[3] for r in rounds])} s")
    print(f"ratio assemblage/bare, paired by round: wall {spread([r[2] / r[0] for r in rounds])}, "
          f"cpu {spread([r[3] / r[1] for r in rounds])}  (target wall <= 1.15)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
