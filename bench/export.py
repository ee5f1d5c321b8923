"""Export speed and memory: ``assemblage export`` against ``tar`` of the same files plus ``sqlite3 .dump``.

What it does:

1. Writes K generated C projects (F functions each, in files of 250 functions, with
   loops, branches and constants that differ per function so that no two hash
   alike) and builds them with the real pipeline (``assemblage build``) under
   gcc-12 and clang-19 at O0 and O2: about 4*K*F function rows. Two corpora are
   built, a small one and a large one (``--small``/``--large`` functions per
   project); they are cached in ``--work`` and reused by later runs.
2. Peak memory: ``assemblage export`` of each corpus in a child process, its
   peak resident set size read from ``wait4`` (``ru_maxrss``). Flat memory means
   the two peaks are close although the corpora differ ``large/small`` times.
3. Time, on the large corpus, ``--repeat`` rounds alternating which side runs
   first: ours is ``assemblage export DIR --out OUT`` (Parquet + dataset.sqlite +
   objects + manifest + datasheet, the default); the baseline is
   ``tar -cf OUT.tar -C DIR objects`` plus ``sqlite3 DIR/dataset.sqlite .dump >
   OUT.sql``, the least a user would do to take the same corpus away. Prints
   every round, the median ratio and its spread (min..max). Target: at most 1.5x.

Usage: .venv/bin/python bench/export.py [--repeat 5] [--projects 10] [--small 500] [--large 2500]

Last measured (docs/export.md, "Speed and memory", has the tables and where the
time goes), on a 2-core machine, ``--repeat 11`` (100,320 function rows): median
ratio 1.42 (spread 1.21..1.57; ``tar`` + ``sqlite3 .dump`` 1.67 to 1.94 s); peak
RSS 171 MiB small, 200 MiB large (x1.17 for x4.9 rows). The export's helper
process writes ``lines`` to Parquet from the dataset while the export copies,
then the other tables from the sealed ``dataset.sqlite``, all read with our C
reader (assemblage/corpus/export/_batches.c); before them, 2.17.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ASSEMBLAGE = [str(Path(sys.executable).parent / "assemblage")]


def write_project(root: Path, name: str, functions: int, seed: int) -> None:
    rng = random.Random(seed)
    src = root / name
    src.mkdir(parents=True)
    files = []
    per_file = 250
    decls = []
    for start in range(0, functions, per_file):
        body = ["#include <stddef.h>", ""]
        for i in range(start, min(start + per_file, functions)):
            a, b, c, d = (rng.randrange(3, 2**20) for _ in range(4))
            shape = i % 4
            fn = f"{name.replace('-', '_')}_f{i}"
            decls.append(f"long {fn}(long x, const long *v, size_t n);")
            if shape == 0:
                body.append(
                    f"long {fn}(long x, const long *v, size_t n) {{\n    long acc = {a};\n"
                    f"    for (size_t k = 0; k < n; k++)\n        acc = acc * {b % 97 + 3} + (v[k] ^ {c});\n"
                    f"    return acc + x * {d};\n}}\n"
                )
            elif shape == 1:
                body.append(
                    f"long {fn}(long x, const long *v, size_t n) {{\n    if (x > {a})\n"
                    f"        return x / {b % 13 + 2} - {c};\n    if (n && v[0] < {d})\n"
                    f"        return v[0] + {a ^ d};\n    return x * {c % 1000 + 7};\n}}\n"
                )
            elif shape == 2:
                body.append(
                    f"long {fn}(long x, const long *v, size_t n) {{\n    long best = {a};\n"
                    f"    for (size_t k = 0; k < n; k++) {{\n        long t = v[k] * {b % 31 + 2} - {c};\n"
                    f"        if (t > best) best = t;\n    }}\n    return best ^ (x + {d});\n}}\n"
                )
            else:
                body.append(
                    f"long {fn}(long x, const long *v, size_t n) {{\n    switch ((x + {a}) % 5) {{\n"
                    f"    case 0: return {b} + (long)n;\n    case 1: return x * {c % 500 + 3};\n"
                    f"    case 2: return n ? v[n - 1] - {d} : {d};\n    default: return x ^ {a ^ b};\n"
                    f"    }}\n}}\n"
                )
        path = src / f"part{start // per_file}.c"
        path.write_text("\n".join(body))
        files.append(path.name)
    (src / "funcs.h").write_text("#include <stddef.h>\n" + "\n".join(decls) + "\n")
    called = decls[:: max(1, len(decls) // 50)]
    calls = "\n".join(f"    total += {d.split('(')[0].split()[-1]}(argc, v, 3);" for d in called)
    (src / "main.c").write_text(
        '#include "funcs.h"\n#include <stdio.h>\nint main(int argc, char **argv) {\n'
        "    long v[3] = {1, 2, 3}, total = 0;\n    (void)argv;\n"
        + calls
        + '\n    printf("%ld\\n", total);\n    return 0;\n}\n'
    )
    objs = " ".join(f.replace(".c", ".o") for f in files)
    (src / "Makefile").write_text(
        f"CC ?= cc\nCFLAGS ?= -O2\n{name}: main.o {objs}\n\t$(CC) $(CFLAGS) -o $@ $^\n"
        "%.o: %.c funcs.h\n\t$(CC) $(CFLAGS) -c -o $@ $<\n"
    )


def build_corpus(work: Path, label: str, projects: int, functions: int) -> Path:
    out = work / f"{label}-{projects}x{functions}"
    if (out / ".built").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    src = out / "src"
    for p in range(projects):
        write_project(src, f"proj{p}", functions, seed=1000 * p + functions)
    recipe = out / "recipe.yaml"
    recipe.write_text(
        "name: bench-export\nsources:\n"
        + "".join(f"  - path: src/proj{p}\n" for p in range(projects))
        + "matrix:\n  platform: [linux]\n  arch: [x86_64]\n  toolchain: [gcc-12, clang-19]\n"
        "  opt: [O0, O2]\nbuild:\n  timeout: 1800\n"
    )
    print(f"building {label}: {projects} projects x {functions} functions x 4 configurations ...", flush=True)
    t = time.monotonic()
    subprocess.run(
        [*ASSEMBLAGE, "build", str(recipe), "--out", str(out / "dataset"), "--jobs", "2", "--quiet"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    print(f"  built in {time.monotonic() - t:.0f} s", flush=True)
    (out / ".built").write_text("ok")
    return out


def rows(dataset: Path) -> dict[str, int]:
    db = sqlite3.connect(f"file:{dataset / 'dataset.sqlite'}?mode=ro", uri=True)
    try:
        return {
            t: db.execute(f"select count(*) from {t}").fetchone()[0] for t in ("binaries", "functions", "rvas", "lines")
        }
    finally:
        db.close()


def run_measured(args: list[str], **kw) -> tuple[float, int]:
    """(seconds, peak RSS in MiB) of a child process."""
    t = time.perf_counter()
    p = subprocess.Popen(args, **kw)
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {p.returncode}")
    return elapsed, usage.ru_maxrss // 1024


def ours(dataset: Path, out: Path) -> tuple[float, int]:
    shutil.rmtree(out, ignore_errors=True)
    return run_measured([*ASSEMBLAGE, "export", str(dataset), "--out", str(out), "--quiet"], stdout=subprocess.DEVNULL)


def baseline(dataset: Path, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    t = time.perf_counter()
    subprocess.run(["tar", "-cf", str(out / "objects.tar"), "-C", str(dataset), "objects"], check=True)
    with open(out / "dump.sql", "wb") as fh:
        subprocess.run(["sqlite3", str(dataset / "dataset.sqlite"), ".dump"], check=True, stdout=fh)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/var/tmp/assemblage-bench-export"))
    ap.add_argument("--projects", type=int, default=10)
    ap.add_argument("--small", type=int, default=500, help="functions per project, small corpus")
    ap.add_argument("--large", type=int, default=2500, help="functions per project, large corpus")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    for tool in ("tar", "sqlite3", "gcc-12", "clang-19", "make"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench/export.py needs {tool}")
    args.work.mkdir(parents=True, exist_ok=True)
    small = build_corpus(args.work, "small", args.projects, args.small) / "dataset"
    large = build_corpus(args.work, "large", args.projects, args.large) / "dataset"
    scratch = args.work / "out"
    print("\ncorpora:")
    for label, ds in (("small", small), ("large", large)):
        n = rows(ds)
        size = sum(p.stat().st_size for p in (ds / "objects").rglob("*") if p.is_file())
        print(
            f"  {label}: {n['binaries']} binaries, {n['functions']:,} functions, {n['rvas']:,} rvas, "
            f"{n['lines']:,} lines; objects {size / 2**20:.1f} MiB; dataset.sqlite "
            f"{(ds / 'dataset.sqlite').stat().st_size / 2**20:.1f} MiB"
        )

    print("\npeak memory of assemblage export (RSS):")
    peaks = {}
    for label, ds in (("small", small), ("large", large)):
        secs, peak = ours(ds, scratch / f"mem-{label}")
        peaks[label] = peak
        print(f"  {label}: {peak} MiB ({secs:.1f} s)")
    growth = rows(large)["functions"] / rows(small)["functions"]
    print(f"  corpus x{growth:.1f} -> peak x{peaks['large'] / peaks['small']:.2f}")

    print(
        f"\ntime on the large corpus ({rows(large)['functions']:,} function rows), {args.repeat} rounds, "
        "alternating which side runs first:"
    )
    ratios = []
    for i in range(args.repeat):
        if i % 2 == 0:
            t_ours, _ = ours(large, scratch / "ours")
            t_base = baseline(large, scratch / "base")
        else:
            t_base = baseline(large, scratch / "base")
            t_ours, _ = ours(large, scratch / "ours")
        ratios.append(t_ours / t_base)
        print(f"  round {i + 1}: export {t_ours:.2f} s, tar + sqlite3 .dump {t_base:.2f} s, ratio {ratios[-1]:.2f}")
    print(
        f"\nmedian ratio {statistics.median(ratios):.2f} (spread {min(ratios):.2f}..{max(ratios):.2f}); target <= 1.5"
    )
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
