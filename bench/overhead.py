"""What the pipeline costs on top of the bare builds.

The same sources x configurations, at the same parallelism, built twice in one
run: (1) a plain loop that copies each tree and runs the very commands the
build-system planners produce, with the real compilers and nothing else; (2)
``assemblage build`` (sandbox, compiler wrappers, binary collection, analysis,
stripped copies, object store, SQLite). Rounds alternate so that machine noise
hits both sides. Prints the ratio; the target is at most 1.15.

    .venv/bin/python bench/overhead.py [--jobs 2] [--rounds 2] [--no-debian]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from assemblage.builds.systems import BuildTools, build_system_candidates, compiler_env  # noqa: E402
from assemblage.pipeline.embedded import open_dataset, run_recipe  # noqa: E402
from assemblage.recipes import Config, expand_matrix, parse_recipe  # noqa: E402
from assemblage.toolchains.registry import get_toolchain  # noqa: E402

SAMPLES = REPO / "recipes" / "samples"


def recipe_doc(sources: list[dict]) -> dict:
    return {
        "name": "bench-overhead",
        "sources": sources,
        "matrix": {"toolchain": ["gcc-12", "clang-19"], "opt": ["O0", "O2"]},
        "outputs": {"stripped": True},
    }


def bare_build(tree: Path, cfg: Config) -> bool:
    tc = get_toolchain(cfg.toolchain)
    compilers = tc.compilers(cfg.platform, cfg.arch, cfg.opt)
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as tmp:
        root = Path(tmp) / "src"
        shutil.copytree(tree, root, symlinks=True)
        cc, cxx = shutil.which(compilers.cc), shutil.which(compilers.cxx)
        tools = BuildTools(cc=cc, cxx=cxx, src_dir=str(root))
        env = {**os.environ, **compiler_env(compilers, cc, cxx)}
        candidates = build_system_candidates(root)
        for i, planner in enumerate(candidates):
            if i:  # the same fallback the engine makes when a configure step fails
                shutil.rmtree(root)
                shutil.copytree(tree, root, symlinks=True)
            ok, phase = True, None
            for step in planner.plan(root, compilers, tools, jobs=1):
                r = subprocess.run(step.argv, cwd=root / step.cwd, env={**env, **step.env},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                if r.returncode != 0:
                    ok, phase = False, step.phase
                    break
            if ok or phase != "configure":
                return ok
    return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-debian", action="store_true", help="only the local samples")
    args = ap.parse_args()

    sources = [{"path": str(SAMPLES / n)} for n in ("calc", "shapes", "wordfreq", "vecmath")]
    if not args.no_debian:
        sources.append({"debian": "zlib", "suite": "bookworm"})
    recipe = parse_recipe(recipe_doc(sources))
    configs, _ = expand_matrix(recipe)

    # fetch once, outside the timings, into a cache both sides use
    from assemblage.sources import fetch_source

    cache = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    trees = [fetch_source(spec, base=REPO, cache=cache).path for spec in recipe.sources]
    cells = [(t, c) for t in trees for c in configs]
    print(f"{len(trees)} sources x {len(configs)} configurations = {len(cells)} builds, jobs={args.jobs}")

    bare_times, asm_times = [], []
    for rnd in range(args.rounds):
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.jobs) as pool:
            ok = list(pool.map(lambda tc: bare_build(*tc), cells))
        bare = time.perf_counter() - t0
        bare_times.append(bare)

        out = Path(tempfile.mkdtemp(prefix="bench-asm-"))
        dataset = open_dataset(out)
        dataset.context.cache_dir.mkdir(parents=True, exist_ok=True)
        # the same cache: no fetch inside the timing either
        dataset = replace(dataset, context=replace(dataset.context, cache_dir=cache))
        t0 = time.perf_counter()
        run_recipe(dataset, recipe, "bench", REPO, jobs=args.jobs)
        asm = time.perf_counter() - t0
        asm_times.append(asm)
        import sqlite3

        con = sqlite3.connect(dataset.db_path)
        nbin = con.execute("select count(*) from binaries").fetchone()[0]
        nfun = con.execute("select count(*) from functions").fetchone()[0]
        statuses = dict(con.execute("select status, count(*) from builds group by status").fetchall())
        compile_s, analysis_s = con.execute("select sum(duration), sum(analysis_duration) from builds").fetchone()
        con.close()
        shutil.rmtree(out, ignore_errors=True)
        print(f"round {rnd + 1}: bare {bare:.2f}s ({sum(ok)}/{len(ok)} ok)  assemblage {asm:.2f}s "
              f"({statuses}, {nbin} binaries, {nfun} functions; build steps {compile_s:.1f}s, "
              f"analysis+storage {analysis_s:.1f}s summed over builds)  ratio {asm / bare:.3f}")
    ratio = statistics.median(asm_times) / statistics.median(bare_times)
    print(f"overhead ratio (median assemblage / median bare): {ratio:.3f}  (target <= 1.15)")
    shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
