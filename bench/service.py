"""The distributed mode on this machine, measured against its targets.

1. the same recipe built by ``assemblage build`` (embedded, -j 2) and by the service
   (API + 2 Celery workers + PostgreSQL + Redis + S3), one run each: the ratio of wall
   times (target at most 1.25);
2. dispatch rate of empty tasks through the broker, published and consumed by 2 workers
   (target 1,000 tasks/s);
3. insert rate of function rows (and of all ground-truth rows) into PostgreSQL
   (target 50,000 rows/s);
4. p95 latency of filtered ``GET /binaries`` queries over synthetic binaries and functions
   (target under 100 ms). The data size is a flag: the default is small enough to finish in
   minutes; ``--binaries 1000000 --functions 20000000`` is the full size.

Needs the services of ``make services`` (PostgreSQL, Redis, the S3 server).

    .venv/bin/python bench/service.py [--skip-build] [--tasks 5000] [--binaries 100000] [--functions 2000000]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.integration.service_stack import (  # noqa: E402
    Stack,
    assemblage_cmd,
    create_database,
    drop_database,
    missing_services,
)

RECIPE = """\
name: bench-service
sources:
  - path: recipes/samples/calc
  - path: recipes/samples/shapes
  - path: recipes/samples/vecmath
  - path: recipes/samples/broken
matrix:
  platform: [linux]
  arch: [x86_64]
  toolchain: [gcc-12, clang-19]
  opt: [O0, O2]
"""


def line(what: str, value: str, target: str = "") -> None:
    print(f"  {what:<52} {value:>18}  {target}", flush=True)


# ------------------------------------------------------------------ 1. embedded vs service


def bench_build(tmp: Path) -> None:
    print("1. one recipe: embedded vs service (4 sources x 4 configurations, 2 builds at once)")
    recipe = tmp / "bench.yaml"
    recipe.write_text(RECIPE.replace("path: recipes/", f"path: {REPO}/recipes/"))
    out = tmp / "embedded"
    t0 = time.perf_counter()
    subprocess.run(
        assemblage_cmd("build", str(recipe), "--out", str(out), "--jobs", "2", "--quiet", "--allow-failures"),
        check=True,
        capture_output=True,
        cwd=tmp,
    )
    embedded = time.perf_counter() - t0
    line("embedded `assemblage build -j 2`", f"{embedded:.1f} s")

    with Stack(tmp / "stack") as st:
        st.start_api()
        st.start_worker("w1", wait=False)
        st.start_worker("w2", wait=False)
        st.wait_worker("w1")
        st.wait_worker("w2")
        client = st.client(st.token("submit"))
        t0 = time.perf_counter()
        r = client.post("/runs", content=RECIPE, headers={"Content-Type": "application/yaml"})
        r.raise_for_status()
        run = st.wait_run(client, r.json()["id"], timeout=900)
        service = time.perf_counter() - t0
    line("service (API + 2 workers + PG + Redis + S3)", f"{service:.1f} s")
    line("builds by status (service)", str(run["builds"]))
    line("ratio service / embedded", f"{service / embedded:.2f}x", "(target <= 1.25x)")


# ------------------------------------------------------------------ 2. dispatch rate


def bench_dispatch(tmp: Path, n: int) -> None:
    print(f"2. dispatch of {n:,} empty tasks through Redis, 2 workers (solo pool, prefetch 256) on the same 2 cores")
    from assemblage.settings import get_settings
    from assemblage.tasks.app import make_celery
    from assemblage.tasks.coordinator import queue_depths

    def publish(app) -> float:
        t0 = time.perf_counter()
        with app.producer_or_acquire() as producer:
            for _ in range(n):
                app.send_task("assemblage.noop", queue="crawl", producer=producer)
        return time.perf_counter() - t0

    def drained(url: str) -> bool:
        d = queue_depths(url)
        return d is not None and d["crawl"] == 0 and d["unacked"] == 0

    with Stack(tmp / "dispatch") as st:
        os.environ["ASSEMBLAGE_BROKER_URL"] = st.broker_url
        get_settings.cache_clear()
        app = make_celery(get_settings())
        # (a) publishing alone, nobody consuming yet
        t_pub = publish(app)
        line("published (no consumer running)", f"{n / t_pub:,.0f} tasks/s")
        # (b) two workers drain the queue
        for key in ("n1", "n2"):
            st.start_worker(
                key, queues="crawl", concurrency=1, pool="solo", prefetch=256, loglevel="WARNING", wait=False
            )
        while queue_depths(st.broker_url)["crawl"] >= n:
            time.sleep(0.005)
        t0 = time.perf_counter()
        while not drained(st.broker_url):
            time.sleep(0.01)
        line("consumed by 2 workers (queue drained)", f"{n / (time.perf_counter() - t0):,.0f} tasks/s")
        # (c) both at once: publish while the workers consume
        t0 = time.perf_counter()
        publish(app)
        while not drained(st.broker_url):
            time.sleep(0.01)
        line(
            "published and consumed at once (end to end)",
            f"{n / (time.perf_counter() - t0):,.0f} tasks/s",
            "(target 1,000 tasks/s)",
        )
        # (d) the same with the workers' defaults, made for long builds: prefork, one process per core,
        # one message reserved per process (so each task waits for the previous one's acknowledgement)
        for key in ("n1", "n2"):
            st.stop(key)
        cores = os.cpu_count() or 1
        for key in ("d1", "d2"):
            st.start_worker(key, queues="crawl", concurrency=cores, loglevel="WARNING", wait=False)
        for key in ("d1", "d2"):
            st.wait_worker(key)
        t0 = time.perf_counter()
        publish(app)
        while not drained(st.broker_url):
            time.sleep(0.01)
        line(
            f"end to end, worker defaults (prefork -c {cores}, prefetch 1)",
            f"{n / (time.perf_counter() - t0):,.0f} tasks/s",
        )


# ------------------------------------------------------------------ 3. insert rate


def _synthetic(n_funcs: int, lines_per: int):
    funcs = [
        SimpleNamespace(
            name=f"fn_{i}",
            sha256="a" * 64,
            source_file="src/x.c",
            prototype=None,
            linkage_name=None,
            demangled=None,
            start=0x1000 + 64 * i,
            end=0x1000 + 64 * i + 60,
            size=60,
            decl_line=i,
            compilation_unit="x.c",
            is_static=False,
            label_source="dwarf",
            pic_hash=None,
            size_inferred=False,
            ranges=[SimpleNamespace(start=0x1000 + 64 * i, end=0x1000 + 64 * i + 60)],
            lines=[
                SimpleNamespace(line=i + k, address=0x1000 + 64 * i + 4 * k, length=4, source_file="src/x.c")
                for k in range(lines_per)
            ],
        )
        for i in range(n_funcs)
    ]
    return SimpleNamespace(functions=funcs, inlinings=[])


def _base_rows(s, m):
    rec = m.Recipe(name="bench", text="x", sha256="0" * 64)
    s.add(rec)
    s.flush()
    run = m.Run(recipe_id=rec.id, status="finished")
    s.add(run)
    s.flush()
    src = m.Source(run_id=run.id, position=0, spec={}, label="x", kind="path", name="x", status="fetched")
    cfg = m.Configuration(
        identifier="linux-x86_64-gcc-12-O0", platform="linux", arch="x86_64", toolchain="gcc-12", opt="O0"
    )
    s.add_all([src, cfg])
    s.flush()
    b = m.Build(run_id=run.id, source_id=src.id, configuration_id=cfg.id, status="succeeded")
    s.add(b)
    s.flush()
    return run.id, b.id


def _writer(url: str, binary_id: int, n_funcs: int, start_at: float) -> tuple[float, float]:
    """One writer process: n function rows for one binary, COPYed and committed. Returns (start, end)."""
    from assemblage.db.session import make_engine, make_sessionmaker, session_scope
    from assemblage.pipeline.steps import _copy_functions

    funcs = _synthetic(n_funcs, 0).functions
    engine = make_engine(url)
    with engine.connect() as c:  # connect before the clock starts
        c.exec_driver_sql("SELECT 1")
    time.sleep(max(0.0, start_at - time.time()))
    t0 = time.time()
    with session_scope(make_sessionmaker(engine)) as s:
        _copy_functions(s, binary_id, funcs)
    t1 = time.time()
    engine.dispose()
    return t0, t1


def bench_insert(n_funcs: int, rounds: int = 3) -> None:
    print(f"3. ground truth into PostgreSQL ({n_funcs:,} functions per binary; median of {rounds} rounds)")
    from assemblage.db import models as m
    from assemblage.db.session import make_engine, make_sessionmaker, session_scope
    from assemblage.pipeline.steps import _copy_functions, insert_ground_truth

    name = "asm_bench_insert"
    url = create_database(name)
    try:
        sessions = make_sessionmaker(make_engine(url))
        with session_scope(sessions) as s:
            run_id, build_id = _base_rows(s, m)
            ids = []
            for i in range(3 + 3 * rounds):
                b = m.Binary(
                    file_name=f"b{i}",
                    path="k",
                    platform="linux",
                    build_mode="Debug",
                    optimization="O0",
                    hash=f"{i:064x}",
                    size=1,
                    build_id=build_id,
                    run_id=run_id,
                    source="x",
                    source_kind="path",
                    arch="x86_64",
                    format="elf",
                    toolchain="gcc-12",
                    config="linux-x86_64-gcc-12-O0",
                    relpath=f"b{i}",
                )
                s.add(b)
                s.flush()
                ids.append(b.id)
        with session_scope(sessions) as s:  # warm up: connection, sequences, caches
            insert_ground_truth(s, ids.pop(), _synthetic(1000, 1))
        plain = _synthetic(n_funcs, 0)  # made before the clocks start
        funcs = plain.functions
        full = _synthetic(n_funcs, 3)
        only, pipeline, everything = [], [], []
        for _ in range(rounds):
            t0 = (
                time.perf_counter()
            )  # the functions table alone: the pipeline's own COPY (ids from the sequence), committed
            with session_scope(sessions) as s:
                _copy_functions(s, ids.pop(), funcs)
            only.append(n_funcs / (time.perf_counter() - t0))
            t0 = time.perf_counter()  # what a build does: functions and their rvas rows
            with session_scope(sessions) as s:
                insert_ground_truth(s, ids.pop(), plain)
            pipeline.append(2 * n_funcs / (time.perf_counter() - t0))
            t0 = time.perf_counter()  # functions, rvas and 3 lines each
            with session_scope(sessions) as s:
                insert_ground_truth(s, ids.pop(), full)
            everything.append(5 * n_funcs / (time.perf_counter() - t0))
        line("function rows alone, one writer", f"{statistics.median(only):,.0f} rows/s", "(target 50,000 rows/s)")
        # two writers at once, as two workers finishing builds together (separate processes)
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(2) as pool:
            go = time.time() + 5  # both writers start together, after their imports
            spans = pool.starmap(_writer, [(url, ids.pop(), n_funcs, go), (url, ids.pop(), n_funcs, go)])
            both = 2 * n_funcs / (max(e for _, e in spans) - min(s for s, _ in spans))
        line("function rows alone, two writers at once (total)", f"{both:,.0f} rows/s")
        line("functions + their rvas rows (insert_ground_truth)", f"{statistics.median(pipeline):,.0f} rows/s")
        line("functions + rvas + 3 lines each", f"{statistics.median(everything):,.0f} rows/s")
    finally:
        drop_database(name)


# ------------------------------------------------------------------ 4. query latency


def realistic_configs() -> list[tuple[str, str, str, str]]:
    """(platform, arch, toolchain, opt) as real matrices have them: formats and toolchains follow platforms."""
    out = []
    for arch in ("x86_64", "aarch64", "i686"):
        for tc in ("gcc-11", "gcc-12", "clang-14", "clang-16", "clang-19"):
            out += [("linux", arch, tc, o) for o in ("O0", "O1", "O2", "O3", "Os")]
    for arch in ("x86_64", "i686"):
        for tc in ("mingw-gcc-12", "clang-19"):
            out += [("windows", arch, tc, o) for o in ("O0", "O1", "O2", "O3", "Os")]
    out += [("windows", "x86_64", "msvc-v143", o) for o in ("Od", "O1", "O2", "Ox")]
    return out


FILL_BINARIES = """
INSERT INTO binaries (id, file_name, path, platform, build_mode, optimization, hash, size, license, build_id, run_id,
                      source, source_kind, arch, format, toolchain, config, relpath, flags_requested, opt_mismatch,
                      function_count, notes)
SELECT g, 'bin' || g, 'objects/' || md5(g::text), c.platform, 'Release', c.opt, md5(g::text) || md5((g + 1)::text),
       1000 + g % 5000, (ARRAY['mit','bsd-3-clause','apache-2.0','gpl-3.0',NULL])[1 + (g::bigint * 31 + g / 7) % 5],
       :build, :run, 'synthetic', 'path', c.arch, CASE c.platform WHEN 'linux' THEN 'elf' ELSE 'pe' END,
       c.toolchain, c.identifier, 'bin' || g, '[]', false, 20, '{}'
FROM generate_series(:lo, :hi) AS g
JOIN (SELECT *, row_number() OVER (ORDER BY id) - 1 AS k FROM configurations) c ON c.k = (g::bigint * 7919) % :nc
"""
FILL_FUNCTIONS = """
INSERT INTO functions (id, binary_id, name, start, "end", size, label_source)
SELECT g, 1 + (g % :nb), 'fn_' || (g % 5000), 4096 + (g % 997) * 64, 4096 + (g % 997) * 64 + 48, 48, 'dwarf'
FROM generate_series(:lo, :hi) AS g
"""


def bench_query(tmp: Path, n_binaries: int, n_functions: int, requests: int) -> None:
    print(f"4. GET /binaries with filters over {n_binaries:,} binaries and {n_functions:,} functions")
    import httpx
    from sqlalchemy import text

    from assemblage.db import models as m
    from assemblage.db.session import make_engine, make_sessionmaker, session_scope

    with Stack(tmp / "query") as st:
        engine = make_engine(st.database_url)
        sessions = make_sessionmaker(engine)
        configs = realistic_configs()
        with session_scope(sessions) as s:
            run_id, build_id = _base_rows(s, m)
            for plat, arch, tc, opt in configs:
                ident = f"{plat}-{arch}-{tc}-{opt}"
                if ident != "linux-x86_64-gcc-12-O0":  # made by _base_rows
                    s.add(m.Configuration(identifier=ident, platform=plat, arch=arch, toolchain=tc, opt=opt))
        t0 = time.perf_counter()
        step = 200_000
        with engine.begin() as c:
            for lo in range(1, n_binaries + 1, step):
                c.execute(
                    text(FILL_BINARIES),
                    {
                        "lo": lo,
                        "hi": min(n_binaries, lo + step - 1),
                        "build": build_id,
                        "run": run_id,
                        "nc": len(configs),
                    },
                )
        step = 1_000_000
        for lo in range(1, n_functions + 1, step):
            with engine.begin() as c:
                c.execute(text(FILL_FUNCTIONS), {"lo": lo, "hi": min(n_functions, lo + step - 1), "nb": n_binaries})
        with engine.begin() as c:
            c.execute(text("ANALYZE binaries"))
            c.execute(text("ANALYZE functions"))
        line("synthetic data loaded in", f"{time.perf_counter() - t0:.0f} s")
        st.start_api()
        client = httpx.Client(base_url=st.base_url, headers={"Authorization": f"Bearer {st.token('read')}"}, timeout=30)
        rng = random.Random(7)
        choices = {
            "platform": ["linux", "windows"],
            "arch": ["x86_64", "i686", "aarch64"],
            "toolchain": ["gcc-11", "gcc-12", "clang-14", "clang-16", "clang-19", "mingw-gcc-12", "msvc-v143"],
            "opt": ["O0", "O1", "O2", "O3", "Os"],
            "format": ["elf", "pe"],
            "license": ["mit", "bsd-3-clause", "apache-2.0"],
        }
        for _ in range(20):  # warm the connection pools and caches
            client.get("/binaries", params={"platform": "linux", "limit": 100})
        latencies, cursor = [], None
        names = ("platform", "arch", "toolchain", "opt")
        for i in range(requests):
            if rng.random() < 0.85:  # what users ask: some attributes of configurations that exist
                cfg = dict(zip(names, rng.choice(configs), strict=True))
                cfg["format"] = "elf" if cfg["platform"] == "linux" else "pe"
                keys = rng.sample(sorted(cfg), rng.randint(1, 4))
                params = {k: cfg[k] for k in keys}
                if rng.random() < 0.3:
                    params["license"] = rng.choice(choices["license"])
            else:  # anything, often a combination that does not exist
                keys = rng.sample(sorted(choices), rng.randint(1, 4))
                params = {k: rng.choice(choices[k]) for k in keys}
            params["limit"] = 100
            if i % 3 == 2 and cursor:
                params["after"] = cursor  # a later page of the previous query shape
            t = time.perf_counter()
            r = client.get("/binaries", params=params)
            latencies.append(time.perf_counter() - t)
            r.raise_for_status()
            cursor = r.json()["next"]
        latencies.sort()
        p50 = statistics.median(latencies) * 1000
        p95 = latencies[int(len(latencies) * 0.95) - 1] * 1000
        line(f"latency over {requests} requests, p50", f"{p50:.1f} ms")
        line("latency p95 (HTTP round trip, API on this machine)", f"{p95:.1f} ms", "(target < 100 ms)")
        fn = []
        for _ in range(50):
            t = time.perf_counter()
            client.get("/functions", params={"name": f"fn_{rng.randint(0, 4999)}", "limit": 100}).raise_for_status()
            fn.append(time.perf_counter() - t)
        fn.sort()
        line("GET /functions?name= p95", f"{fn[int(len(fn) * 0.95) - 1] * 1000:.1f} ms")
        engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-build", action="store_true", help="skip the embedded-vs-service build")
    ap.add_argument("--tasks", type=int, default=5000, help="empty tasks to dispatch")
    ap.add_argument("--insert-functions", type=int, default=20000, help="functions per synthetic binary")
    ap.add_argument("--binaries", type=int, default=100_000, help="synthetic binaries (full size: 1000000)")
    ap.add_argument("--functions", type=int, default=2_000_000, help="synthetic functions (full size: 20000000)")
    ap.add_argument("--requests", type=int, default=300, help="queries to time")
    ap.add_argument("--only", choices=["build", "dispatch", "insert", "query"], help="run one part")
    args = ap.parse_args()
    missing = missing_services()
    if missing:
        sys.exit(f"services not reachable: {', '.join(missing)} (run: make services)")
    for k, v in {"AWS_ACCESS_KEY_ID": "test:tester", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        os.environ.setdefault(k, v)
    tmp = Path(tempfile.mkdtemp(prefix="asm-bench-service-"))
    print(f"bench/service.py on {os.cpu_count()} cores; scratch {tmp}")
    try:
        if args.only in (None, "build") and not args.skip_build:
            bench_build(tmp)
        if args.only in (None, "dispatch"):
            bench_dispatch(tmp, args.tasks)
        if args.only in (None, "insert"):
            bench_insert(args.insert_functions)
        if args.only in (None, "query"):
            bench_query(tmp, args.binaries, args.functions, args.requests)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
