"""How many binaries `assemblage verify` rebuilds bit for bit: the demo recipe and a sample of Debian packages.

Two corpora, each built with ``assemblage build`` and then checked with
``assemblage verify`` (every build rebuilt from the run's lock in a scratch
dataset, every binary compared by sha256, each difference explained section
by section):

1. ``recipes/demo.yaml`` (the sample projects and Debian's zlib, gcc-12 and
   clang-19 at three levels);
2. a seeded sample of small Debian C/C++ source packages (from the list
   below: ones whose upstream build needs no other package's headers) at two
   configurations, linux-x86_64-gcc-12-O2 and linux-x86_64-clang-19-O0.

Prints, per corpus, the share of binaries bit-identical (target: at least
99%; Debian 12's own reproducible-builds share for amd64 is about 97% of
source packages) and the sections and causes of every difference, and the
time verify took against the time the builds took in the same run (the
baseline: verify is a second build, so about 1.0 plus comparing).

This is not a test (it fetches Debian sources and takes a while on a small
machine):

    .venv/bin/python bench/reproducible.py [--jobs 2] [--packages 22] [--seed 1] [--out DIR] [--no-demo]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ASSEMBLAGE = [sys.executable, "-c", "from assemblage.cli.main import main; main()"]

# Small Debian 12 source packages in C or C++ that build here without other -dev packages
# (each checked with `assemblage build` at linux-x86_64-gcc-12-O2: fetched, built, left binaries;
# giflib, libtommath, utf8proc, pugixml, double-conversion and tinyxml did not, and iniparser,
# argtable2, inih, which, pigz and libconfuse could not be fetched from the mirror).
CANDIDATES = [
    "bzip2",
    "cjson",
    "cmark",
    "cmocka",
    "ed",
    "jansson",
    "json-c",
    "libb2",
    "libdeflate",
    "libdivsufsort",
    "libmd",
    "libogg",
    "libyaml",
    "lunzip",
    "lz4",
    "lzip",
    "lzlib",
    "lzo2",
    "mawk",
    "popt",
    "tinycdb",
    "tinyxml2",
    "tree",
    "xxhash",
    "yajl",
    "zlib",
    "zopfli",
]
CONFIGS = {"toolchain": ["gcc-12", "clang-19"], "opt": ["O2", "O0"]}


def run(args: list[str], log: Path) -> tuple[float, int]:
    t0 = time.monotonic()
    with open(log, "a") as f:
        f.write(f"\n$ assemblage {' '.join(args)}\n")
        f.flush()
        r = subprocess.run([*ASSEMBLAGE, *args], cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    return time.monotonic() - t0, r.returncode


def verify(folder: Path, jobs: int, log: Path) -> tuple[float, dict]:
    t0 = time.monotonic()
    r = subprocess.run(
        [*ASSEMBLAGE, "verify", str(folder), "--json", "--jobs", str(jobs)], cwd=REPO, capture_output=True, text=True
    )
    with open(log, "a") as f:
        f.write(r.stderr)
    if r.returncode != 0:
        raise SystemExit(f"verify {folder} failed ({r.returncode}): {r.stderr[-2000:]}")
    return time.monotonic() - t0, json.loads(r.stdout)


def debian_recipe(packages: list[str]) -> str:
    lines = ["name: bench-reproducible-debian", "sources:"]
    lines += [f"  - debian: {p}\n    suite: bookworm" for p in packages]
    lines += [
        "matrix:",
        "  platform: [linux]",
        "  arch: [x86_64]",
        "  toolchain: [gcc-12, clang-19]",
        "  opt: [O2, O0]",
        "exclude:",
        "  - {toolchain: gcc-12, opt: O0}",
        "  - {toolchain: clang-19, opt: O2}",
        "build:",
        "  timeout: 1200",
    ]
    return "\n".join(lines) + "\n"


def report(name: str, folder: Path, build_s: float, verify_s: float, result: dict) -> None:
    import sqlite3

    db = sqlite3.connect(folder / "dataset.sqlite")
    builds = Counter(dict(db.execute("select status, count(*) from builds group by status").fetchall()))
    with_bins = db.execute("select count(distinct source) from binaries").fetchone()[0]
    sources = db.execute("select count(*) from sources").fetchone()[0]
    db.close()
    print(f"\n== {name}")
    print(f"builds: {dict(builds)}; sources with binaries: {with_bins} of {sources}")
    print(f"build {build_s:.0f}s, verify {verify_s:.0f}s (verify/build {verify_s / build_s:.2f})")
    causes: Counter = Counter()
    for d in result["differences"]:
        causes.update(d["causes"])
        secs = ", ".join(f"{s['name']} ({s['cause']})" for s in d["sections"][:8])
        print(f"  {d['status']} {d['kind']} {d['source']} {d['config']} {d['relpath']}: {secs or d['message']}")
    if causes:
        print("causes: " + ", ".join(f"{c} x{n}" for c, n in causes.most_common()))
    share = 100.0 * result["identical"] / result["compared"] if result["compared"] else 100.0
    print(f"{result['identical']} of {result['compared']} binaries bit-identical ({share:.1f}%)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--packages", type=int, default=22)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--no-demo", action="store_true")
    a = ap.parse_args()
    out = a.out or Path(tempfile.mkdtemp(prefix="bench-repro-"))
    out.mkdir(parents=True, exist_ok=True)
    log = out / "bench.log"
    print(f"working in {out} (log: {log})")
    totals = [0, 0]
    if not a.no_demo:
        demo = out / "demo"
        build_s, rc = run(["build", "recipes/demo.yaml", "--out", str(demo), "--jobs", str(a.jobs), "-q"], log)
        verify_s, result = verify(demo, a.jobs, log)
        report("demo recipe (recipes/demo.yaml)", demo, build_s, verify_s, result)
        totals[0] += result["identical"]
        totals[1] += result["compared"]
    packages = sorted(random.Random(a.seed).sample(CANDIDATES, min(a.packages, len(CANDIDATES))))
    recipe = out / "debian.yaml"
    recipe.write_text(debian_recipe(packages))
    print(f"\nDebian sample (seed {a.seed}): {', '.join(packages)}")
    deb = out / "debian"
    build_s, rc = run(["build", str(recipe), "--out", str(deb), "--jobs", str(a.jobs), "-q"], log)
    verify_s, result = verify(deb, a.jobs, log)
    report(
        f"{len(packages)} Debian packages x linux-x86_64-gcc-12-O2, linux-x86_64-clang-19-O0",
        deb,
        build_s,
        verify_s,
        result,
    )
    totals[0] += result["identical"]
    totals[1] += result["compared"]
    share = 100.0 * totals[0] / totals[1] if totals[1] else 100.0
    print(f"\nall: {totals[0]} of {totals[1]} binaries bit-identical ({share:.1f}%; target >= 99%)")


if __name__ == "__main__":
    main()
