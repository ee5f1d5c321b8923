"""What cutting the source text of every function costs, next to the analysis it follows.

Builds the demo recipe's sources (the local samples and Debian's zlib) at the
overhead bench's four configurations once, then, for every build, times in the
same process and in alternating order: (1) the analysis of its binaries (what the
pipeline runs in a forked child per binary), and (2) cutting the source text of
their functions with one ``SourceTree`` per build (what the pipeline adds: every
source file read and lexed once, then every function and line row cut). Prints
medians, spreads and the ratio cut / analysis, and the cut's share of the whole
pipeline's wall time for the run.

    .venv/bin/python bench/source_text.py [--rounds 5] [--no-debian]
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from assemblage.binaries import analyze_file  # noqa: E402
from assemblage.builds.runner import SANDBOX_ROOT  # noqa: E402
from assemblage.pipeline.embedded import open_dataset, run_recipe  # noqa: E402
from assemblage.recipes import parse_recipe  # noqa: E402
from assemblage.sources.text import SourceTree  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from overhead import SAMPLES, recipe_doc  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-debian", action="store_true")
    args = ap.parse_args()

    sources = [{"path": str(SAMPLES / n)} for n in ("calc", "shapes", "wordfreq", "vecmath")]
    if not args.no_debian:
        sources.append({"debian": "zlib", "suite": "bookworm"})
    recipe = parse_recipe(recipe_doc(sources))
    out = Path(tempfile.mkdtemp(prefix="bench-text-"))
    try:
        dataset = open_dataset(out)
        t0 = time.perf_counter()
        run_recipe(dataset, recipe, "bench", REPO, jobs=2)
        wall = time.perf_counter() - t0
        con = sqlite3.connect(dataset.db_path)
        builds: dict[int, tuple[str, list[Path]]] = defaultdict(lambda: ("", []))
        for build_id, checkout, path, sandboxed in con.execute(
            "SELECT b.build_id, s.checkout, b.path, bu.sandboxed FROM binaries b JOIN builds bu ON b.build_id = bu.id"
            " JOIN sources s ON bu.source_id = s.id WHERE b.format IN ('elf', 'pe')"
        ):
            if not sandboxed:
                sys.exit("builds ran without the sandbox: their debug paths name scratch folders that are gone")
            builds[build_id][1].append(out / path)
            builds[build_id] = (checkout, builds[build_id][1])
        con.close()
        analyses = {p: analyze_file(p, lines=True) for _, paths in builds.values() for p in paths}
        nfunc = sum(len(a.functions) for a in analyses.values())
        nlines = sum(len(f.lines) for a in analyses.values() for f in a.functions)
        print(
            f"{len(builds)} builds, {len(analyses)} binaries, {nfunc} functions, {nlines} line rows; "
            f"pipeline wall time {wall:.1f}s"
        )

        def analyse() -> float:
            t = time.perf_counter()
            for _, paths in builds.values():
                for p in paths:
                    analyze_file(p, lines=True)
            return time.perf_counter() - t

        def cut() -> float:
            t = time.perf_counter()
            for checkout, paths in builds.values():
                tree = SourceTree(Path(checkout), [f"{SANDBOX_ROOT}/src"])
                for p in paths:
                    tree.cut_functions(analyses[p].functions)
            return time.perf_counter() - t

        a_times, c_times = [], []
        for rnd in range(args.rounds):
            order = (analyse, cut) if rnd % 2 == 0 else (cut, analyse)
            for fn in order:
                (a_times if fn is analyse else c_times).append(fn())
        a, c = statistics.median(a_times), statistics.median(c_times)
        print(f"analysis: median {a:.3f}s (spread {min(a_times):.3f}-{max(a_times):.3f})")
        print(f"cutting:  median {c:.3f}s (spread {min(c_times):.3f}-{max(c_times):.3f})")
        print(
            f"cutting / analysis: {c / a:.3f}; cutting / pipeline wall time: {c / wall:.4f} "
            f"(the pipeline runs it inside its builds, two at a time)"
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
