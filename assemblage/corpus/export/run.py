"""Export a corpus: the plan, then every table streamed once into every format asked for.

:func:`export_corpus` reads one snapshot of the corpus
(:meth:`~assemblage.corpus.source.Corpus.snapshot`), materialises the plan
(:func:`~assemblage.corpus.plan.make_plan`) and streams each table with one
query, ``yield_per`` rows at a time (a server-side cursor on PostgreSQL), into
the Parquet writer and the SQLite writer at once, so each row is read once
whatever the formats. Then the objects, the datasheet, ``export.json`` and the
manifest. The export is written into a hidden sibling folder and renamed to
``OUT`` when complete: ``OUT`` either holds a whole export or does not exist.

Layout (docs/export.md, docs/dataset.md)::

    OUT/
      README.md                 the datasheet (Hugging Face dataset card front matter); charts/*.png
      MANIFEST.sha256           sha256sum -c format: every other file
      export.json               the request, the counts, the dedup and split reports
      dataset.sqlite            the Assemblage-compatible schema (+ families, splits, pairs)
      data/<table>/*.parquet    binaries, functions, families, rvas, lines, pdbs, splits, pairs
      objects/<sha256[:2]>/<sha256>   (or objects.tar.zst)
      recipes/<run>-<name>.yaml the recipes the binaries were built from
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import (
    BigInteger,
    Boolean,
    MetaData,
    String,
    case,
    create_engine,
    func,
    insert,
    inspect,
    literal,
    null,
    select,
)
from sqlalchemy.engine import Connection

from assemblage.corpus.dedup import DedupReport, dedup_report, trivial_clause, trivial_column
from assemblage.corpus.export import layout
from assemblage.corpus.export.columns import Column, derived, table_columns
from assemblage.corpus.export.files import Manifest, ObjectCopier, _Section
from assemblage.corpus.export.helper import Helper, Watch, same_columns
from assemblage.corpus.export.sqlite import INDEXES, ExportDB, index_sql
from assemblage.corpus.families import family_id, family_ids, sample_pairs
from assemblage.corpus.plan import SEL, Plan, make_plan
from assemblage.corpus.request import ExportRequest, ExportSummary
from assemblage.corpus.source import Corpus
from assemblage.db import models as m
from assemblage.errors import ExportError

__all__ = ["export_corpus", "ExportProgress", "TABLES"]

log = logging.getLogger(__name__)

B, F, R, L, P = (m.Binary.__table__, m.Function.__table__, m.Rva.__table__, m.Line.__table__, m.Pdb.__table__)
TABLES = ("binaries", "functions", "families", "rvas", "lines", "pdbs", "splits", "pairs")
BATCH = 20_000


class ExportProgress(Protocol):
    """What an export reports as it goes (the CLI draws it, the job stores it)."""

    def phase(self, name: str, total: int | None = None) -> None: ...

    def advance(self, n: int = 1) -> None: ...


class _Silent:
    def phase(self, name: str, total: int | None = None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("assemblage")
    except PackageNotFoundError:
        return "0"


def export_corpus(
    corpus: Corpus, request: ExportRequest, out: Path, *, progress: ExportProgress | None = None
) -> ExportSummary:
    """Write the export of ``request`` over ``corpus`` to ``out`` (which must not exist or be empty)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} exists and is not an empty folder: choose a new --out")
    progress = progress or _Silent()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        summary = _export(corpus, request, work, progress)
        if out.exists():
            out.rmdir()
        os.replace(work, out)
        return summary
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _export(corpus: Corpus, request: ExportRequest, work: Path, progress: ExportProgress) -> ExportSummary:
    from assemblage.corpus.export.datasheet import collect_facts, write_datasheet

    manifest = Manifest(work)
    # the duplicate counts are over every function of the selection: when the export keeps every one of
    # them, they are counted from its own file, beside the Parquet tables, rather than before the copy
    dedup_later = not request.drop_trivial and request.split is None
    tables = _Tables(request, work, progress, fast=corpus.is_sqlite, manifest=manifest)
    try:
        if tables.fast and "parquet" in request.formats and _everything(request):
            # the whole corpus: its lines are written to Parquet from the corpus by a helper process, started
            # now, beside the copy (helper.py); the watch, opened before either snapshot, tells whether they
            # are the same. copy() stops it if the export does not keep every line after all.
            tables.start_helper(corpus.sqlite_path)
        # pyarrow too unless the helper writes the Parquet tables (if it does not after all, copy() imports it)
        warm = _warm_imports(parquet="parquet" in request.formats and tables.helper is None, charts=True)
        with corpus.snapshot(
            attach=tables.db.path if tables.fast else None,
            # a function's family is its key's, and a key comes once per configuration it was built under:
            # the last 65,536 keys remembered, bench/export.py's 4 configurations hash a quarter of the rows
            # (0.23 s of CPU instead of 0.34); a corpus of more keys than that between repeats gains less
            functions={"asm_family_id": (4, lru_cache(maxsize=1 << 16)(family_id))},
        ) as conn:
            progress.phase("select")
            plan = make_plan(
                conn,
                request.where,
                drop_trivial=request.drop_trivial,
                unique_binaries=request.unique_binaries,
                split=request.split,
                seed=request.seed,
                dedup=not dedup_later,
            )
            tables.copy(conn, plan)
            recipes = _recipes(conn, work, manifest)
            facts = collect_facts(conn, plan)
        tables.finish()
        objects = None
        if "files" in request.formats:
            objects = ObjectCopier(corpus.store, work, manifest.section("objects"), archive=request.archive)
        warm.join()
        dedup = _in_parallel(tables, request, manifest, objects, progress, dedup=dedup_later)
        plan.dedup = dedup or plan.dedup
    except BaseException:
        tables.stop_helper("the export failed")
        tables.db.abort()
        raise
    tables.close()
    assert plan.dedup is not None  # counted in the plan or beside the Parquet tables
    summary = ExportSummary(
        assemblage_version=_version(),
        created_at=datetime.now(UTC),
        corpus=corpus.description,
        request=request,
        candidates=plan.candidates,
        binaries=plan.binaries,
        tables=tables.rows,
        objects=objects.count if objects else 0,
        object_bytes=objects.bytes if objects else 0,
        dedup=plan.dedup,
        split=plan.split_report,
        missing_columns=tables.missing,
    )
    progress.phase("datasheet")
    for path in write_datasheet(work, summary, facts, recipes, parts=tables.parts):
        manifest.add(path)
    progress.phase("manifest")
    # export.json is the summary; it counts itself among the files but not its own bytes
    summary = summary.model_copy(update={"files": manifest.files + 1, "bytes": manifest.bytes})
    summary_path = work / "export.json"
    summary_path.write_text(summary.model_dump_json(indent=2) + "\n", encoding="utf-8")
    manifest.add(summary_path)
    manifest.close()
    return summary


def _everything(request: ExportRequest) -> bool:
    """Whether the request keeps every binary and function of the corpus, as far as it says."""
    where = request.where.model_dump(exclude_defaults=True, exclude={"seed"})
    return not where and request.split is None and not request.drop_trivial and not request.unique_binaries


def _warm_imports(*, parquet: bool = False, charts: bool = False) -> threading.Thread:
    """Import what the Parquet tables and the charts need, in a thread, while the rows are copied.

    The copy runs in SQLite's C code without holding the GIL, and pyarrow, numpy and Pillow (and the ADBC
    driver, when the C reader was not built) take about a third of a second of CPU to import: done
    meanwhile, it costs the export no time.
    (When the helper process writes the Parquet tables, this process needs no pyarrow.)
    """

    def load() -> None:
        try:
            if parquet:
                import pyarrow.compute
                import pyarrow.parquet  # noqa: F401

                from assemblage.corpus.export import batches

                if not batches.available():  # the Parquet tables are read with the ADBC driver instead
                    import adbc_driver_manager  # noqa: F401
                    import adbc_driver_sqlite  # noqa: F401
            if charts:
                import PIL.Image
                import PIL.ImageDraw  # noqa: F401
        except ImportError:  # reported where the module is used
            pass

    thread = threading.Thread(target=load, name="export-imports", daemon=True)
    thread.start()
    return thread


class _LockedProgress:
    """Progress reported from several threads, one call at a time."""

    def __init__(self, progress: ExportProgress) -> None:
        self._progress, self._lock = progress, threading.Lock()

    def phase(self, name: str, total: int | None = None) -> None:
        with self._lock:
            self._progress.phase(name, total)

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self._progress.advance(n)


def _in_parallel(
    tables: _Tables,
    request: ExportRequest,
    manifest: Manifest,
    objects: ObjectCopier | None,
    progress: ExportProgress,
    *,
    dedup: bool,
) -> DedupReport | None:
    """Once the rows are in the export's file, what only reads it, on two threads (and the helper process).

    Every Parquet table (the longest first; a table of several files a file at a time), the objects
    (read, hashed, linked or copied), the hash of ``dataset.sqlite`` and, when asked, the duplicate
    counts. Each reads through a connection of its own and writes files of its own (its own manifest
    section), and spends its time in C (SQLite, Arrow, zstd, SHA-256) without the GIL, so both
    cores of a small machine work. The first failure cancels what has not started and is raised.
    Progress: phase ``parquet`` (``objects`` when no Parquet is asked for), rows and objects done.

    With a helper process (helper.py), the Parquet tables are its jobs and the threads do the rest; what
    it does not deliver (its ``lines`` not kept, or it failed) is written here afterwards.

    The tables are read with the C reader of :mod:`~assemblage.corpus.export.batches` (the system's SQLite,
    as everything else here). Where it was not built, with the ADBC driver: then two SQLite libraries read
    the file (Python's and the driver's), and closing a file in one drops the POSIX locks the other holds
    on it: harmless for this file, which no other process opens and nothing writes once sealed. (The
    corpus itself is never read by the driver.)
    """
    locked = _LockedProgress(progress)
    jobs: list[tuple[int, Callable[[], Any]]] = []
    helper, tables.helper = tables.helper, None
    sized = tables.parquet_jobs() if "parquet" in request.formats else []
    parquet = [job for _, job in sized]
    handed = [job for job in parquet if job["table"] != "lines"]  # to the helper, after its lines
    if helper is not None:
        helper.submit(handed)
    else:
        jobs += [(size, partial(tables.parquet_job, job, progress=locked.advance)) for size, job in sized]
    n_objects = 0
    if objects is not None:
        n_objects, copy = _object_job(tables, request, objects, locked)
        jobs.append((n_objects, copy))
    if "sqlite" in request.formats:  # hashed for the manifest beside the rest (the file is sealed)
        section = manifest.section("dataset.sqlite")
        jobs.append((tables.rows["lines"] // 8, lambda: section.add(tables.db.path)))
    result: dict[str, DedupReport] = {}
    if dedup:
        jobs.append((tables.rows["functions"] // 4, lambda: result.update(dedup=tables.dedup_report())))
    rows = sum(tables.rows[name] for name in tables.columns) if "parquet" in request.formats else 0
    locked.phase("parquet" if "parquet" in request.formats else "objects", rows + n_objects)
    jobs.sort(key=lambda job: -job[0])
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="export") as pool:

        def run_all(todo: list[Callable[[], Any]]) -> None:
            for future in [pool.submit(fn) for fn in todo]:
                future.result()

        try:
            run_all([fn for _, fn in jobs])
            if helper is not None:
                lines, results = helper.finish(tables.rows["lines"])
                again = handed if results is None else []
                for job, written in zip(handed, results or []):
                    tables.took(job, written)
                    locked.advance(written["rows"])
                if lines is None:  # written from dataset.sqlite after all (the log says why)
                    again += [job for job in parquet if job["table"] == "lines"]
                else:
                    tables.took(helper.job, {"files": lines, "sides": ["part"] if tables.rows["lines"] else []})
                    locked.advance(tables.rows["lines"])
                for job in again:  # what the helper wrote of them is written over
                    for stale in Path(job["folder"]).glob("*.parquet"):
                        stale.unlink()
                run_all([partial(tables.parquet_job, job, progress=locked.advance) for job in again])
        except BaseException:
            if helper is not None:
                helper.cancel("the export failed")
            pool.shutdown(cancel_futures=True)
            raise
    return result.get("dedup")


# ------------------------------------------------------------------ tables


class _Tables:
    """The export's tables: copied into its SQLite file, then read from there into Parquet.

    From a SQLite corpus (``fast``) the rows are copied in C with ``INSERT ... SELECT`` into the file
    attached to the snapshot connection as ``out`` (``family_id`` computed by a SQL function); from
    PostgreSQL they stream through Python (server-side cursor, ``executemany``). Either way the Parquet
    files are then read from the SQLite file in C (:func:`~assemblage.corpus.export.parquet.sqlite_to_parquet`).
    """

    def __init__(
        self,
        request: ExportRequest,
        root: Path,
        progress: ExportProgress,
        *,
        fast: bool,
        manifest: Manifest,
    ) -> None:
        self.request, self.root, self.progress, self.fast = request, root, progress, fast
        self.manifest = manifest
        self.split = request.split is not None
        self.rows: dict[str, int] = {}
        self.missing: dict[str, list[str]] = {}  # table -> model columns the corpus's database lacks
        self.columns: dict[str, list[Column]] = {
            "binaries": table_columns(B),
            "functions": table_columns(F) + [derived("family_id", BigInteger()), derived("trivial", Boolean())],
            "families": [
                derived("family_id", BigInteger(), nullable=False),
                derived("function_id", BigInteger(), nullable=False),
            ],
            "rvas": table_columns(R),
            "lines": table_columns(L),
            "pdbs": table_columns(P),
        }
        if self.split:
            self.columns["splits"] = [
                derived("binary_id", BigInteger(), nullable=False),
                derived("split", String(40), nullable=False),
            ]
        if request.pairs:
            self.columns["pairs"] = [
                derived("family_id", BigInteger(), nullable=False),
                derived("function_a", BigInteger(), nullable=False),
                derived("function_b", BigInteger(), nullable=False),
            ]
        # table -> the Parquet file prefixes that hold rows, in table order whichever is written first
        self.parts: dict[str, list[str]] = {name: [] for name in self.columns} if "parquet" in request.formats else {}
        keep = "sqlite" in request.formats
        self.db = ExportDB(root / ("dataset.sqlite" if keep else ".tables.sqlite"), self.columns)
        self.out = {t.name: t.to_metadata(MetaData(), schema="out") for t in self.db.metadata.tables.values()}
        self.helper: Helper | None = None

    # ---------------------------------------------------------- copying, inside the snapshot

    def _stream(self, conn: Connection, query: Any) -> Iterator[Sequence[Any]]:
        yield from conn.execute(query.execution_options(yield_per=BATCH)).partitions()

    def _cols(self, conn: Connection, table: Any) -> list[Any]:
        """The model's columns of ``table``; NULL for those the corpus's database lacks.

        A dataset built by an older assemblage has no column a later model added (its SQLite schema is
        made once, by ``create_all``); its export keeps today's schema, with those columns empty, and
        says so (``export.json``: ``missing_columns``).
        """
        have = {c["name"] for c in inspect(conn).get_columns(table.name)}
        missing = [c.name for c in table.c if c.name not in have]
        if missing:
            self.missing[table.name] = missing
        return [c if c.name in have else _absent(c) for c in table.c]

    def _whole(self, conn: Connection, name: str) -> bool:
        """Whether ``name`` (rvas, lines) of the source is exported whole, column for column.

        Called when every function of the source is exported: then the rows to export are all the rows whose
        function exists. When the source table has the export's columns in the same order and none of its
        rows names a missing function, ``INSERT INTO out.t SELECT * FROM main.t`` copies it, which SQLite
        does record by record without decoding them (its transfer optimisation, the one VACUUM uses):
        0.26 s of CPU for the 721,001 lines of bench/export.py against 0.54 s through the join.
        """
        have = [r[1] for r in conn.exec_driver_sql(f'PRAGMA main.table_info("{name}")')]
        if have != [c.name for c in self.columns[name]]:
            return False
        orphans = conn.exec_driver_sql(
            f'SELECT EXISTS (SELECT 1 FROM (SELECT DISTINCT function_id AS fid FROM main."{name}") d '
            "WHERE NOT EXISTS (SELECT 1 FROM main.functions f WHERE f.id = d.fid))"
        ).scalar()
        return not orphans

    def _insert(self, conn: Connection, table: str, query: Any) -> None:
        out = self.out[table]
        conn.execute(insert(out).from_select([c.name for c in self.columns[table]], query))

    def copy(self, conn: Connection, plan: Plan) -> None:
        self.plan = plan
        fconds = plan.function_conditions()
        sides = [SEL.c.split] if self.split else []
        # binaries always through Python: JSON and dates are written canonically, whatever the source stored
        self.progress.phase("binaries", plan.binaries)
        q = select(*self._cols(conn, B)).select_from(B.join(SEL, SEL.c.binary_id == B.c.id)).order_by(B.c.id)
        for rows in self._stream(conn, q):
            self._write(conn, "binaries", rows)
        self.progress.phase("functions")
        if self.fast:
            self._check_helper(conn, plan)
            trivial = case((trivial_clause(F), 1), else_=0)
            family = func.asm_family_id(SEL.c.source, F.c.source_file, F.c.decl_line, F.c.name)
            self._insert(
                conn,
                "functions",
                select(*self._cols(conn, F), family, trivial)
                .select_from(plan.functions_from())
                .where(*fconds)
                .order_by(F.c.id),
            )
            of = self.out["functions"]
            every_function = conn.scalar(select(func.count()).select_from(of)) == conn.scalar(
                select(func.count()).select_from(F)
            )
            for name, table in (("rvas", R), ("lines", L)):
                self.progress.phase(name)
                whole = every_function and self._whole(conn, name)
                if name == "lines" and not whole and self.helper is not None:
                    self._without_helper("the corpus's lines are not exported whole")
                if whole:
                    if "sqlite" in self.request.formats:  # its index comes along, copied from the source's
                        for col in INDEXES.get(name, []):
                            if _plain_index(conn, name, col):
                                conn.exec_driver_sql(index_sql(name, col, "out"))
                    conn.exec_driver_sql(f'INSERT INTO out."{name}" SELECT * FROM main."{name}"')
                    continue
                self._insert(
                    conn,
                    name,
                    select(*self._cols(conn, table))
                    .select_from(table.join(of, of.c.id == table.c.function_id))
                    .order_by(table.c.id),
                )
            self.progress.phase("pdbs")
            self._insert(
                conn,
                "pdbs",
                select(*self._cols(conn, P))
                .select_from(P.join(SEL, SEL.c.binary_id == P.c.binary_id))
                .order_by(P.c.id),
            )
            if self.split:
                self._insert(conn, "splits", select(SEL.c.binary_id, SEL.c.split).order_by(SEL.c.binary_id))
            return
        n = len(F.c)
        names = [c.name for c in F.c]
        i_file, i_line, i_name = (names.index(x) for x in ("source_file", "decl_line", "name"))
        q = (
            select(*self._cols(conn, F), SEL.c.source, trivial_column(F))
            .select_from(plan.functions_from())
            .where(*fconds)
            .order_by(F.c.id)
        )
        for rows in self._stream(conn, q):
            fams = family_ids((r[n], r[i_file], r[i_line], r[i_name]) for r in rows)
            self._write(conn, "functions", [(*r[:n], fam, r[n + 1]) for r, fam in zip(rows, fams)])
        for name, table in (("rvas", R), ("lines", L)):
            self.progress.phase(name)
            q = (
                select(*self._cols(conn, table))
                .select_from(table.join(F, F.c.id == table.c.function_id).join(SEL, SEL.c.binary_id == F.c.binary_id))
                .where(*fconds)
                .order_by(table.c.id)
            )
            for rows in self._stream(conn, q):
                self._write(conn, name, rows)
        self.progress.phase("pdbs")
        q = select(*self._cols(conn, P)).select_from(P.join(SEL, SEL.c.binary_id == P.c.binary_id)).order_by(P.c.id)
        for rows in self._stream(conn, q):
            self._write(conn, "pdbs", rows)
        if self.split:
            for rows in self._stream(conn, select(SEL.c.binary_id, *sides).order_by(SEL.c.binary_id)):
                self._write(conn, "splits", rows)

    def start_helper(self, corpus: Path) -> None:
        """Start the helper process on the corpus's ``lines`` (before the snapshot: see helper.py)."""
        from assemblage.corpus.export import batches

        job = {**self.table_job("lines", None), "from_sql": 'FROM "lines" t ORDER BY t.rowid'}
        why = batches.why_unavailable()  # the helper reads the corpus with it, and nothing else
        if not why and batches.kinds_of([c["kind"] for c in job["columns"]]) is None:
            why = "the C reader does not read every column of lines"
        if why:
            log.info("lines: no helper process (%s)", why)
            return
        watch = Watch(corpus)
        try:
            self.helper = Helper(corpus, watch, job)
        except OSError as exc:  # no interpreter to start: the export writes lines itself, as it would anyway
            log.info("lines: no helper process (%s)", exc)

    def _check_helper(self, conn: Connection, plan: Plan) -> None:
        """The snapshot has begun (the plan is read): tell the helper, or stop it when the export does not keep
        every line after all (a binary or function left out, other columns) and import pyarrow meanwhile."""
        if self.helper is None:
            return
        self.helper.began("export")
        raw = conn.connection.driver_connection
        if plan.function_conditions() or plan.binaries != conn.scalar(select(func.count()).select_from(B)):
            self._without_helper("not every binary is exported")
        elif not same_columns(raw, "lines", "main", "out"):
            self._without_helper("the corpus's lines have other columns")

    def _without_helper(self, why: str) -> None:
        """Stop the helper after all: this process writes the Parquet tables, so pyarrow is imported now."""
        self.stop_helper(why)
        _warm_imports(parquet=True)

    def stop_helper(self, why: str) -> None:
        if self.helper is not None:
            self.helper.cancel(why)
            self.helper = None

    def _write(self, conn: Connection, table: str, rows: Sequence[Any]) -> None:
        if self.fast:  # into the attached file, on the snapshot's own connection (it holds the file's lock)
            raw = conn.connection.driver_connection
            assert raw is not None  # a live connection (the snapshot's) has its driver connection
            raw.executemany(self.db.insert_sql(table, "out"), self.db.converted(table, rows))
        else:
            self.db.write(table, rows)
        self.progress.advance(len(rows))

    # ---------------------------------------------------------- after the snapshot: pairs and Parquet

    def finish(self) -> None:
        """The families (and pairs), committed; the row counts."""
        db = self.db.db
        db.execute(
            "INSERT INTO families (family_id, function_id) SELECT family_id, id FROM functions "
            "WHERE family_id IS NOT NULL ORDER BY id"
        )
        if self.request.pairs:
            self._pairs()
        keep = "sqlite" in self.request.formats
        if keep:
            self.progress.phase("sqlite indexes")
        self.db.seal(indexes=keep)  # the file is complete: what follows only reads it
        for name in self.columns:
            self.rows[name] = self.db.count(name)

    def dedup_report(self) -> DedupReport:
        """The duplicate counts over the exported functions, read from the export's file (its own connection)."""
        md = self.db.metadata
        functions, binaries = md.tables["functions"], md.tables["binaries"]
        engine = create_engine(f"sqlite:///{self.db.path}")
        try:
            with engine.connect() as conn:
                sel = select(binaries.c.id.label("binary_id")).subquery()
                return dedup_report(conn, sel, functions, binaries)
        finally:
            engine.dispose()

    def _pairs(self) -> None:
        self.progress.phase("pairs")
        db = self.db.db
        cur = db.execute(
            "SELECT b.source, f.source_file, f.decl_line, f.name, f.id, f.binary_id, b.config, "
            "b.relpath, f.start FROM functions f JOIN binaries b ON b.id = f.binary_id "
            "WHERE f.family_id IS NOT NULL "
            "ORDER BY f.family_id, b.source, f.source_file, f.decl_line, f.name"
        )
        members = ((*r[:6], (r[6], r[7], r[8])) for r in iter(lambda: cur.fetchmany(BATCH), []) for r in r)
        batch: list[Any] = []
        for fam, a, b in sample_pairs(members, per_family=self.request.pairs, seed=self.request.seed):
            batch.append((fam, a[4], b[4]))
            if len(batch) >= BATCH:
                self.db.write("pairs", batch)
                batch = []
        if batch:
            self.db.write("pairs", batch)

    _JOINS = {  # how each table reaches its binary's side
        "binaries": "JOIN splits s ON s.binary_id = t.id",
        "functions": "JOIN splits s ON s.binary_id = t.binary_id",
        "families": "JOIN functions f ON f.id = t.function_id JOIN splits s ON s.binary_id = f.binary_id",
        "rvas": "JOIN functions f ON f.id = t.function_id JOIN splits s ON s.binary_id = f.binary_id",
        "lines": "JOIN functions f ON f.id = t.function_id JOIN splits s ON s.binary_id = f.binary_id",
        "pdbs": "JOIN splits s ON s.binary_id = t.binary_id",
        "pairs": "JOIN functions f ON f.id = t.function_a JOIN splits s ON s.binary_id = f.binary_id",
    }

    def _stretches(self, rows: int, *, split_here: bool) -> list[tuple[int | None, int]]:
        """(stretch, rows) of each Parquet job of a table: a table of several files is written a file at a
        time, each a job of its own (both threads work on the longest table; the files are cut at the rows
        where one writer would cut them). ``None``: the whole table in one job."""
        per_file = layout.ROWS_PER_FILE
        if split_here or rows <= per_file:
            return [(None, rows)]
        return [(k, min(per_file, rows - k * per_file)) for k in range(-(-rows // per_file))]

    def _section(self, name: str, stretch: int | None) -> _Section:
        """The manifest section of one job: ordered by table, then stretch, whichever finishes first."""
        return self.manifest.section(f"data/{list(self.columns).index(name):02d}/{stretch or 0:05d}")

    def table_job(self, name: str, stretch: int | None) -> dict[str, Any]:
        """The Parquet job (:func:`~assemblage.corpus.export.parquet.write_job`, plain JSON) that writes
        ``data/<name>`` (or one stretch of it) from the export's file."""
        cols = self.columns[name]
        split_here = self.split and name != "splits"
        schema_cols = cols + ([derived("split", String(40))] if split_here else [])
        exprs = [(f't."{c.name}"', c.name) for c in cols] + ([("s.split", "split")] if split_here else [])
        per_file = layout.ROWS_PER_FILE
        from_sql = f'FROM "{name}" t ' + (self._JOINS[name] if split_here else "")
        if stretch is not None:  # the stretch's rows, in the order one writer would have read them
            from_sql += f" ORDER BY t.rowid LIMIT {per_file} OFFSET {stretch * per_file}"
        return {
            "table": name,
            "stretch": stretch,
            "database": str(self.db.path),
            "read_only": False,
            "columns": [
                # VARCHAR, TEXT: text affinity, read without a CAST
                {"name": c.name, "kind": c.kind, "nullable": c.nullable, "text": isinstance(c.type, String)}
                for c in schema_cols
            ],
            "exprs": exprs,
            "from_sql": from_sql,
            "folder": str(self.root / "data" / name),
            "sides": self.request.split.names if self.request.split and split_here else None,
            "first_file": stretch or 0,
            "rows_per_file": per_file,
        }

    def took(self, job: dict[str, Any], result: dict[str, Any]) -> None:
        """A job's files (already hashed) into its manifest section; the sides that got rows."""
        section = self._section(job["table"], job["stretch"])
        folder = Path(job["folder"])
        for name, sha256 in result["files"]:
            section.add(folder / name, sha256)
        if result["sides"]:  # the same for every stretch of a table
            self.parts[job["table"]] = result["sides"]

    def parquet_job(self, job: dict[str, Any], *, progress: Callable[[int], None] = lambda n: None) -> None:
        """Run a Parquet job in this process."""
        self.took(job, _parquet().write_job(job, progress))

    def parquet_jobs(self) -> list[tuple[int, dict[str, Any]]]:
        """One job per table (or stretch of one), with its rows: each reads the export's file into ``data/``."""
        jobs: list[tuple[int, dict[str, Any]]] = []
        for name in self.columns:
            for k, size in self._stretches(self.rows[name], split_here=self.split and name != "splits"):
                jobs.append((size, self.table_job(name, k)))
        return jobs

    def close(self) -> None:
        self.db.close()
        if "sqlite" not in self.request.formats:
            self.db.path.unlink()


def _parquet() -> Any:
    """The Parquet module, imported when first needed (pyarrow is not imported by an export without Parquet)."""
    from assemblage.corpus.export import parquet

    return parquet


def _plain_index(conn: Connection, table: str, column: str) -> bool:
    """Whether the source indexes ``table`` on ``column`` alone, as the export does (ascending, BINARY, not
    unique, not partial): then SQLite's transfer copies that index's entries along with the rows, in order,
    instead of the export sorting them again (lines of bench/export.py: 0.27 s of CPU against 0.32 s)."""
    for _, name, unique, _, is_partial in conn.exec_driver_sql(f'PRAGMA main.index_list("{table}")'):
        if unique or is_partial:
            continue
        keys = [(r[2], r[3], r[4]) for r in conn.exec_driver_sql(f'PRAGMA main.index_xinfo("{name}")') if r[5]]
        if keys == [(column, 0, "BINARY")]:
            return True
    return False


def _absent(column: Any) -> Any:
    """A column the source lacks: its model default when it has a plain one (size_inferred: false), else NULL."""
    default = column.default
    if default is not None and getattr(default, "is_scalar", False):
        return literal(default.arg, column.type).label(column.name)
    return null().label(column.name)


# ------------------------------------------------------------------ objects and recipes


def _object_job(
    tables: _Tables, request: ExportRequest, copier: ObjectCopier, progress: ExportProgress
) -> tuple[int, Callable[[], None]]:
    """How many objects the exported rows name, and the job that copies them in sha256 order.

    The binaries (and PDBs, and stripped copies, when asked); the job reads the list through a connection
    of its own, so that it can run in a thread beside the Parquet tables.
    """
    parts = ["SELECT hash AS sha, path AS key FROM binaries"]
    if "stripped" in request.include:
        parts.append(
            "SELECT stripped_hash, stripped_path FROM binaries WHERE stripped_hash IS NOT NULL "
            "AND stripped_path IS NOT NULL"
        )
    if "pdbs" in request.include:
        parts.append("SELECT hash, pdb_path FROM pdbs WHERE hash IS NOT NULL")
    union = " UNION ".join(parts)
    total = int(tables.db.db.execute(f"SELECT count(DISTINCT sha) FROM ({union})").fetchone()[0])

    def copy() -> None:
        with closing(sqlite3.connect(tables.db.path)) as db:
            cur = db.execute(f"SELECT sha, min(key) FROM ({union}) GROUP BY sha ORDER BY sha")
            for rows in iter(lambda: cur.fetchmany(1000), []):
                for sha, key in rows:
                    copier.copy(sha, key)
                    progress.advance()
        copier.close()

    return total, copy


def _recipes(conn: Connection, root: Path, manifest: Manifest) -> list[dict[str, Any]]:
    """The recipes of the runs the binaries came from, as ``recipes/<run>-<name>.yaml``."""
    runs = select(B.c.run_id).select_from(B.join(SEL, SEL.c.binary_id == B.c.id)).distinct()
    rows = conn.execute(
        select(m.Run.id, m.Recipe.name, m.Recipe.sha256, m.Recipe.description, m.Recipe.text)
        .join(m.Recipe, m.Recipe.id == m.Run.recipe_id)
        .where(m.Run.id.in_(runs))
        .order_by(m.Run.id)
    ).all()
    out = []
    if rows:
        (root / "recipes").mkdir()
    for run_id, name, sha, description, text in rows:
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:80] or "recipe"
        path = root / "recipes" / f"{run_id}-{safe}.yaml"
        path.write_text(text, encoding="utf-8")
        manifest.add(path)
        out.append(
            {
                "run": run_id,
                "name": name,
                "sha256": sha,
                "description": description,
                "file": path.relative_to(root).as_posix(),
            }
        )
    return out
