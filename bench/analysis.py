"""Benchmark: our ELF analysis against ``llvm-dwarfdump-19 --debug-info --debug-line``.

Run::

    .venv/bin/python bench/analysis.py [--units 8] [--per-unit 500] [--keep DIR]

It generates a large C++ program (class templates explicitly instantiated
many times, plus std::vector/std::string/std::map users so the DWARF carries a
realistic amount of library types and inlining), compiles it with
``g++-12 -O2 -g`` (two jobs), and also compiles the small test fixtures. For
each binary it times, in one run:

* ``llvm-dwarfdump-19 --debug-info --debug-line FILE > /dev/null``
* our ``analyze_file(FILE)`` (DWARF functions, inlinings, lines, symbols,
  producers, sha256 and position-independent hashes), in-process and through
  ``analyze_file_bounded`` (fork + pickle back),

and prints wall and CPU times, the ratio ours/native, peak memory (RSS of
the process running each analysis; its forked helpers for line tables and
hashes are not included) and the analysis time as a share of the compile
time. "dwarf-only" is the part that does what llvm-dwarfdump does (DWARF
functions, inlinings, line rows), without symbols, demangling and hashes.
Targets: ratio <= 2.0, analysis < 10% of compile time. Timings are the best
of ``--repeat`` runs, as the machine may be shared. "ours" runs in a fresh
fork of this process, so it also pays for importing the ELF backend and
capstone (about 0.1 s; the pipeline's bounded children start with them
imported).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assemblage.binaries import analyze_file, analyze_file_bounded  # noqa: E402

TEMPLATE_UNIT = """\
#include <map>
#include <string>
#include <vector>

namespace gen{u} {{

struct Base {{
    virtual ~Base() = default;
    virtual int step(int x) = 0;
}};

template <int N>
class Widget : public Base {{
public:
    explicit Widget(int seed) : value_(seed * N) {{}}
    int step(int x) override;
    int combine(const std::vector<int> &xs) const;
    int table(int x) const;
    static int counter;

private:
    int value_;
}};

template <int N> int Widget<N>::counter = 0;

template <int N>
int Widget<N>::step(int x)
{{
    counter += x;
    return value_ = (value_ * 31 + x) % (N + 7);
}}

template <int N>
int Widget<N>::combine(const std::vector<int> &xs) const
{{
    int acc = value_;
    for (int x : xs)
        acc = acc * 3 + (x ^ N);
    return acc;
}}

template <int N>
int Widget<N>::table(int x) const
{{
    switch ((x + N) & 7) {{
    case 0: return value_ + 1;
    case 1: return value_ * 2;
    case 2: return value_ - N;
    case 3: return counter + x;
    default: return x;
    }}
}}

{instances}

std::string describe(int v)
{{
    return "v" + std::to_string(v);
}}

int run(int argc)
{{
    std::map<int, int> totals;
    {calls}
    int sum = 0;
    for (auto &kv : totals)
        sum += kv.second;
    return sum + (int)describe(sum).size();
}}

}}  // namespace gen{u}
"""

MAIN = """\
#include <cstdio>
{decls}
int main(int argc, char **)
{{
    int total = 0;
    {calls}
    std::printf("%d\\n", total);
    return 0;
}}
"""


def generate(out: Path, units: int, per_unit: int) -> list[Path]:
    files = []
    for u in range(units):
        base = u * per_unit
        instances = "\n".join(f"template class Widget<{base + i}>;" for i in range(per_unit))
        calls = "\n    ".join(
            f"{{ Widget<{base + i}> w(argc); totals[{i}] = w.step(argc) + w.combine({{argc, {i}}}) + w.table(argc); }}"
            for i in range(0, per_unit, 10)
        )
        p = out / f"unit{u}.cpp"
        p.write_text(TEMPLATE_UNIT.format(u=u, instances=instances, calls=calls))
        files.append(p)
    decls = "\n".join(f"namespace gen{u} {{ int run(int); }}" for u in range(units))
    calls = "\n    ".join(f"total += gen{u}::run(argc);" for u in range(units))
    (out / "main.cpp").write_text(MAIN.format(decls=decls, calls=calls))
    files.append(out / "main.cpp")
    return files


def compile_big(work: Path, units: int, per_unit: int, cxx: str = "g++-12") -> tuple[Path, float]:
    """Generate and compile the large program (reused from ``work`` when already built there)."""
    stamp = work / f"compile-{units}x{per_unit}.seconds"
    if stamp.exists() and (work / "big").exists():
        return work / "big", float(stamp.read_text())
    srcs = generate(work, units, per_unit)
    t0 = time.perf_counter()
    objs = []
    procs: list[subprocess.Popen[bytes]] = []
    for src in srcs:  # two jobs at a time (2 cores)
        obj = src.with_suffix(".o")
        objs.append(obj)
        procs.append(subprocess.Popen([cxx, "-O2", "-g", "-c", str(src), "-o", str(obj)]))
        if len(procs) == 2:
            for p in procs:
                if p.wait() != 0:
                    raise SystemExit(f"compile failed: {p.args}")
            procs = []
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"compile failed: {p.args}")
    out = work / "big"
    subprocess.run([cxx, "-o", str(out), *map(str, objs)], check=True)
    seconds = time.perf_counter() - t0
    stamp.write_text(f"{seconds:.2f}")
    return out, seconds


def compile_small(work: Path) -> list[tuple[Path, float]]:
    fixtures = ROOT / "tests" / "fixtures" / "elf"
    out = []
    for cc, src, opt in [
        ("gcc-12", "labels.c", "-O2"),
        ("clang++-19", "labels.cpp", "-O2"),
        ("g++-12", "labels.cpp", "-O0"),
    ]:
        if shutil.which(cc) is None:
            continue
        exe = work / f"{Path(src).stem}-{cc}{opt}"
        t0 = time.perf_counter()
        srcs = [fixtures / src] + ([fixtures / "second.cpp"] if src.endswith(".cpp") else [])
        subprocess.run([cc, "-g", opt, "-o", str(exe), *map(str, srcs)], check=True)
        out.append((exe, time.perf_counter() - t0))
    return out


def _in_child(fn):  # type: ignore[no-untyped-def]
    """Run ``fn()`` in a forked child; return (its result string, the child's peak RSS KiB).

    The child starts as a copy of this small process (about 50 MiB with the
    parsers imported), which its peak RSS includes.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        out = fn()
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    _, _, usage = os.wait4(pid, 0)
    return data.decode(), usage.ru_maxrss


def time_ours(path: Path) -> tuple[float, float, int, int, int]:
    """Full analysis: wall s, CPU s (with its helper processes), peak RSS KiB, functions, line rows."""

    def run() -> str:
        t0, c0 = time.perf_counter(), os.times()
        a = analyze_file(path)
        t1, c1 = time.perf_counter(), os.times()
        cpu = (
            (c1.user - c0.user)
            + (c1.system - c0.system)
            + (c1.children_user - c0.children_user)
            + (c1.children_system - c0.children_system)
        )
        return f"{t1 - t0} {cpu} {len(a.functions)} {a.extra.get('line_rows', 0)}"

    out, rss = _in_child(run)
    _child_cpu(0)  # do not count this child's CPU against the next native run
    wall, cpu, nf, nl = out.split()
    return float(wall), float(cpu), rss, int(nf), int(nl)


def time_dwarf_only(path: Path) -> float:
    """Only what llvm-dwarfdump does too: DWARF functions, inlinings and line rows (no symbols, hashes)."""
    from assemblage.binaries.dwarf import read_dwarf_sections
    from assemblage.binaries.elf import dwarf_sections
    from assemblage.binaries.elf.file import ElfFile

    def run() -> str:
        t0 = time.perf_counter()
        with ElfFile(path) as elf:
            read_dwarf_sections(dwarf_sections(elf), code_ranges=elf.code_ranges())
        return str(time.perf_counter() - t0)

    out = float(_in_child(run)[0])
    _child_cpu(0)
    return out


def time_native(path: Path) -> tuple[float, float, int]:
    """llvm-dwarfdump-19 --debug-info --debug-line: wall s, CPU s, peak RSS KiB (output discarded).

    Peak RSS is the tool's VmHWM, polled from /proc every 5 ms (``ru_maxrss``
    of a child would also count this process's memory from before the exec).
    """
    t0 = time.perf_counter()
    with open(os.devnull, "wb") as null:
        proc = subprocess.Popen(["llvm-dwarfdump-19", "--debug-info", "--debug-line", str(path)], stdout=null)
    hwm = 0
    status_file = f"/proc/{proc.pid}/status"
    while proc.poll() is None:
        try:
            with open(status_file) as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        hwm = max(hwm, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.005)
    dt = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"llvm-dwarfdump-19 failed on {path}")
    return dt, _child_cpu(proc.pid), hwm


_cpu_seen = [0.0]


def _child_cpu(_pid: int) -> float:
    """CPU seconds used by children since the previous call (RUSAGE_CHILDREN is cumulative)."""
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = u.ru_utime + u.ru_stime
    used, _cpu_seen[0] = total - _cpu_seen[0], total
    return used


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--units", type=int, default=8)
    ap.add_argument("--per-unit", type=int, default=500)
    ap.add_argument("--keep", type=Path, default=None, help="keep (and reuse) the generated sources and binaries here")
    ap.add_argument("--repeat", type=int, default=3, help="best of N timings per binary")
    args = ap.parse_args()
    for tool in ("g++-12", "llvm-dwarfdump-19"):
        if shutil.which(tool) is None:
            print(f"skip: {tool} not installed")
            return 0
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="assemblage-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    print(f"generating and compiling {args.units} x {args.per_unit} template instantiations in {tmp} ...", flush=True)
    big, big_compile = compile_big(tmp, args.units, args.per_unit)
    binaries = [(big, big_compile), *compile_small(tmp)]
    print(
        f"{'binary':<24}{'MiB':>6}{'funcs':>7}{'rows':>8} | {'native':>7}{'cpu':>6}{'MiB':>6} | {'ours':>6}{'cpu':>6}{'MiB':>6}{'ratio':>7} | {'dwarf-only':>10}{'ratio':>7} | {'bounded':>8}{'%compile':>9}"
    )
    big_ratio = big_dwarf_ratio = big_ours = 0.0
    _child_cpu(0)  # the compilers' CPU is not the native tool's
    for path, compile_s in binaries:
        runs = []
        for _ in range(args.repeat):  # best of N for each measurement: the machine may be shared
            runs.append((*time_native(path), *time_ours(path), time_dwarf_only(path)))
        native = min(r[0] for r in runs)
        ncpu = min(r[1] for r in runs)
        nrss = max(r[2] for r in runs)
        ours = min(r[3] for r in runs)
        ocpu = min(r[4] for r in runs)
        orss = max(r[5] for r in runs)
        nfunc, nrows = runs[0][6], runs[0][7]
        dwarf_only = min(r[8] for r in runs)
        t0 = time.perf_counter()
        analyze_file_bounded(path, timeout=600)
        bounded = time.perf_counter() - t0
        _child_cpu(0)
        if path == big:
            big_ratio, big_dwarf_ratio, big_ours = ours / native, dwarf_only / native, ours
        print(
            f"{path.name:<24}{path.stat().st_size / 2**20:>6.1f}{nfunc:>7}{nrows:>8} | {native:>7.2f}{ncpu:>6.2f}{nrss / 1024:>6.0f} | "
            f"{ours:>6.2f}{ocpu:>6.2f}{orss / 1024:>6.0f}{ours / native:>7.2f} | {dwarf_only:>10.2f}{dwarf_only / native:>7.2f} | "
            f"{bounded:>8.2f}{100 * ours / compile_s:>8.1f}%"
        )
    print(
        f"\nlarge C++ binary ({args.units}x{args.per_unit} instantiations): compile {big_compile:.1f} s, "
        f"analysis {big_ours:.2f} s = {100 * big_ours / big_compile:.1f}% of it (target < 10%)\n"
        f"full analysis / llvm-dwarfdump = {big_ratio:.2f}; DWARF-only / llvm-dwarfdump = {big_dwarf_ratio:.2f} (target <= 2.0)"
    )
    if args.keep is None:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
