"""Benchmark: our PDB reading against ``llvm-pdbutil-19 dump -symbols -l``.

Run::

    .venv/bin/python bench/pdb.py [--units 16] [--per-unit 200] [--keep DIR]

It generates a C++ project (classes with virtual methods, templates
instantiated per unit, free functions calling each other so the optimiser
inlines: thousands of procedures, lines and inline sites), cross-builds it
with ``clang++-19 --target=x86_64-w64-mingw32 -O2 -g -gcodeview`` linked by
lld into one PE + PDB (two compile jobs), then times, in one run:

* ``llvm-pdbutil-19 dump -symbols -l FILE.pdb > /dev/null`` (the native tool);
* our ``read_pdb(FILE.pdb)`` in-process (procedures, lines attached to each
  procedure, inline sites with their ranges, publics, compile records);
* our ``analyze_pe(FILE.exe, pdb=FILE.pdb)`` in-process (the above plus the PE,
  ``.pdata`` check, producers and per-function hashes);
* ``read_pdb`` in a fresh interpreter (interpreter start and imports included).

and prints the times and ratios ours/native. Target: ``read_pdb`` at most 3x
the native tool.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assemblage.binaries.pdb import read_pdb  # noqa: E402
from assemblage.binaries.pe import analyze_pe  # noqa: E402

UNIT = """\
#include <cstdio>
#include <vector>

namespace u{u} {{

template <typename T>
struct Box {{
    T value;
    explicit Box(T v) : value(v) {{}}
    T get() const {{ return value; }}
    Box<T> add(const Box<T> &o) const {{ return Box<T>(value + o.value); }}
}};

class Base {{
public:
    virtual ~Base() = default;
    virtual int run(int x) const = 0;
}};

{classes}

{functions}

}}  // namespace u{u}

int unit_{u}_entry(int x) {{
    int total = 0;
{calls}
    return total;
}}
"""

CLASS = """\
class Impl{k} : public Base {{
public:
    explicit Impl{k}(int s) : seed_(s) {{}}
    int run(int x) const override {{ return (x * {m} + seed_) ^ (x >> {s}); }}
private:
    int seed_;
}};
"""

FUNC = """\
static inline int mix{k}(int a, int b) {{ return (a * {m}) ^ (b + {s}); }}
__attribute__((noinline)) int step{k}(int x) {{
    Box<int> b(x);
    Impl{c} impl(x);
    std::vector<int> v{{x, x + 1, x + {s}}};
    int acc = 0;
    for (int y : v) acc += mix{k}(y, impl.run(y));
    return b.add(Box<int>(acc)).get() + (int)v.size();
}}
"""


def generate(src: Path, units: int, per_unit: int) -> list[Path]:
    files = []
    for u in range(units):
        classes = "\n".join(CLASS.format(k=k, m=3 + k % 7, s=1 + k % 5) for k in range(per_unit // 4))
        funcs = "\n".join(
            FUNC.format(k=k, m=5 + k % 11, s=1 + k % 3, c=k % max(1, per_unit // 4)) for k in range(per_unit)
        )
        calls = "\n".join(f"    total += u{u}::step{k}(x + {k});" for k in range(per_unit))
        f = src / f"unit{u}.cpp"
        f.write_text(UNIT.format(u=u, classes=classes, functions=funcs, calls=calls))
        files.append(f)
    decls = "\n".join(f"int unit_{u}_entry(int x);" for u in range(units))
    body = "\n".join(f"    t += unit_{u}_entry(argc);" for u in range(units))
    main = src / "main.cpp"
    main.write_text(
        f"#include <cstdio>\n{decls}\nint main(int argc, char **) {{\n    int t = 0;\n{body}\n"
        f'    std::printf("%d\\n", t);\n    return 0;\n}}\n'
    )
    return [*files, main]


def build(src: Path, files: list[Path]) -> tuple[Path, Path, float]:
    t0 = time.perf_counter()
    target = "--target=x86_64-w64-mingw32"

    def compile_one(f: Path) -> Path:
        obj = f.with_suffix(".o")
        subprocess.run(["clang++-19", target, "-O2", "-g", "-gcodeview", "-c", str(f), "-o", str(obj)], check=True)
        return obj

    with ThreadPoolExecutor(2) as pool:
        objs = list(pool.map(compile_one, files))
    exe, pdb = src / "big.exe", src / "big.pdb"
    subprocess.run(
        ["clang++-19", target, "-g", "-fuse-ld=lld-19", f"-Wl,--pdb={pdb}", *map(str, objs), "-o", str(exe)], check=True
    )
    return exe, pdb, time.perf_counter() - t0


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--units", type=int, default=16)
    ap.add_argument("--per-unit", type=int, default=200)
    ap.add_argument("--keep", type=Path, help="build here and keep the files")
    args = ap.parse_args()
    for tool in ("clang++-19", "ld.lld-19", "llvm-pdbutil-19"):
        if shutil.which(tool) is None:
            print(f"missing {tool}: apt-get install clang-19 lld-19 llvm-19 gcc-mingw-w64 g++-mingw-w64")
            return 2
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-pdb-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        files = generate(work, args.units, args.per_unit)
        exe, pdb_path, build_s = build(work, files)
        native_s, _ = timed(
            lambda: subprocess.run(
                ["llvm-pdbutil-19", "dump", "-symbols", "-l", str(pdb_path)], stdout=subprocess.DEVNULL, check=True
            )
        )
        ours_s, pdb = timed(lambda: read_pdb(pdb_path))
        analyze_s, analysis = timed(lambda: analyze_pe(exe, pdb=pdb_path))
        code = f"from assemblage.binaries.pdb import read_pdb; read_pdb({str(pdb_path)!r})"
        fresh_s, _ = timed(lambda: subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT))
        n_lines = sum(len(p.lines) for p in pdb.procedures)  # type: ignore[attr-defined]
        print(
            f"PDB: {pdb_path.stat().st_size / 1e6:.1f} MB, {len(pdb.procedures)} procedures, "  # type: ignore[attr-defined]
            f"{n_lines} line rows, {len(pdb.inline_sites)} inline sites, {len(pdb.publics)} publics "  # type: ignore[attr-defined]
            f"(build {build_s:.1f} s)"
        )
        print(f"llvm-pdbutil-19 dump -symbols -l : {native_s:.3f} s")
        print(f"read_pdb (in-process)            : {ours_s:.3f} s   ratio {ours_s / native_s:.2f}x  (target <= 3x)")
        print(f"read_pdb (fresh interpreter)     : {fresh_s:.3f} s   ratio {fresh_s / native_s:.2f}x")
        print(
            f"analyze_pe with the PDB          : {analyze_s:.3f} s   ratio {analyze_s / native_s:.2f}x  "
            f"({len(analysis.functions)} functions, hashes included)"
        )  # type: ignore[attr-defined]
        return 0
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
