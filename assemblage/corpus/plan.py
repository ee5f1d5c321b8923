"""An export's plan: the selection, deduplication and split materialised in temporary tables.

Everything an export decides is written into ``TEMPORARY`` tables of its own
snapshot connection (:meth:`assemblage.corpus.source.Corpus.snapshot`), and
every table is then streamed with one SQL query that joins them. Nothing the
size of the corpus is held in Python: the selected binaries, the side of each
source and the pic hashes to drop live in the database (PostgreSQL drops the
tables at commit, SQLite keeps them in its temp database, never in the
dataset file). What Python holds is one row per *source* (the split's graph)
and one batch of rows at a time.

Tables:

``asm_export_sel``  (binary_id, source, split): the selected binaries
``asm_export_pick`` (binary_id): the sample, while sampling
``asm_export_side`` (source, split): the side of each source
``asm_export_drop`` (pic_hash, keep): pic hashes found on more than one side,
                    and the side that keeps them
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    distinct,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement

from assemblage.corpus.dedup import DedupReport, dedup_report, trivial_clause
from assemblage.corpus.select import Selection, pick_sample
from assemblage.corpus.splits import SplitReport, SplitSpec, assign, plan_components
from assemblage.db import models as m

__all__ = ["Plan", "make_plan", "SEL", "DROP"]

_Id = BigInteger().with_variant(Integer(), "sqlite")  # INTEGER PRIMARY KEY is SQLite's rowid: no second index
_md = MetaData()
# PostgreSQL drops them at commit (ON COMMIT DROP, set in make_plan: a Table argument naming PostgreSQL would
# import its dialect, 0.25 s of CPU, in every export from a dataset folder too)
_TEMP: dict[str, Any] = {"prefixes": ["TEMPORARY"]}
SEL = Table(
    "asm_export_sel",
    _md,
    Column("binary_id", _Id, primary_key=True),
    Column("source", Text, nullable=False),
    Column("split", String(40)),
    **_TEMP,
)
PICK = Table("asm_export_pick", _md, Column("binary_id", _Id, primary_key=True), **_TEMP)
SIDE = Table(
    "asm_export_side",
    _md,
    Column("source", Text, primary_key=True),
    Column("split", String(40), nullable=False),
    **_TEMP,
)
DROP = Table(
    "asm_export_drop",
    _md,
    Column("pic_hash", String(64), primary_key=True),
    Column("keep", String(40), nullable=False),
    **_TEMP,
)

B = m.Binary.__table__
F = m.Function.__table__
BATCH = 5000


@dataclass
class Plan:
    """The materialised decisions of one export (valid inside its snapshot connection)."""

    conn: Connection
    selection: Selection
    drop_trivial: bool
    unique_binaries: bool
    split: SplitSpec | None
    binaries: int = 0
    dedup: DedupReport | None = None
    split_report: SplitReport | None = None
    has_drops: bool = False
    candidates: int = 0  # binaries matching the filters, before unique/sampling
    notes: list[str] = field(default_factory=list)

    @property
    def sides(self) -> list[str] | None:
        return self.split.names if self.split else None

    def function_conditions(self, f: Any = F, s: Any = SEL) -> list[ColumnElement[bool]]:
        """Which rows of ``functions`` (``f``, joined to ``s`` on binary_id) the export keeps."""
        conds: list[ColumnElement[bool]] = []
        if self.drop_trivial:
            conds.append(~trivial_clause(f))
        if self.has_drops:
            conds.append(
                ~exists(select(DROP.c.pic_hash).where(DROP.c.pic_hash == f.c.pic_hash, DROP.c.keep != s.c.split))
            )
        return conds

    def functions_from(self) -> Any:
        """``functions`` joined to the selection."""
        return F.join(SEL, SEL.c.binary_id == F.c.binary_id)

    def count_functions(self) -> int:
        return int(
            self.conn.scalar(select(func.count()).select_from(self.functions_from()).where(*self.function_conditions()))
            or 0
        )


def make_plan(
    conn: Connection,
    selection: Selection,
    *,
    drop_trivial: bool = False,
    unique_binaries: bool = False,
    split: SplitSpec | None = None,
    seed: int = 0,
    dedup: bool = True,
) -> Plan:
    """Materialise the selection (filters, then one binary per sha256, then the sample) and the split.

    ``dedup=False`` leaves the duplicate counts to the caller (the export counts them from its own file).
    """
    plan = Plan(conn=conn, selection=selection, drop_trivial=drop_trivial, unique_binaries=unique_binaries, split=split)
    for table in (SEL, PICK, SIDE, DROP):
        if conn.dialect.name == "postgresql":
            table.dialect_options["postgresql"]["on_commit"] = "DROP"
        table.create(conn)
    conds = selection.conditions(conn)
    conn.execute(insert(SEL).from_select(["binary_id", "source"], select(B.c.id, B.c.source).where(*conds)))
    plan.candidates = _count(conn, SEL)
    if unique_binaries:
        rank = (
            func.row_number()
            .over(partition_by=B.c.hash, order_by=(B.c.config, B.c.source, B.c.relpath, B.c.id))
            .label("rank")
        )
        ranked = select(B.c.id, rank).join(SEL, SEL.c.binary_id == B.c.id).subquery()
        conn.execute(delete(SEL).where(SEL.c.binary_id.in_(select(ranked.c.id).where(ranked.c.rank > 1))))
    if selection.sampled:
        rows = conn.execute(
            select(B.c.id, B.c.hash, B.c.config, B.c.source, B.c.relpath)
            .join(SEL, SEL.c.binary_id == B.c.id)
            .execution_options(yield_per=10_000)
        )
        picked = pick_sample(rows, n=selection.sample, per_config=selection.sample_per_config, seed=selection.seed)
        for i in range(0, len(picked), BATCH):
            conn.execute(insert(PICK), [{"binary_id": x} for x in picked[i : i + BATCH]])
        conn.execute(delete(SEL).where(SEL.c.binary_id.not_in(select(PICK.c.binary_id))))
    plan.binaries = _count(conn, SEL)
    if dedup:
        plan.dedup = dedup_report(conn, SEL, F, B)
    if split is not None:
        plan.split_report = _split(plan, split, seed)
    return plan


def _count(conn: Connection, table: Table) -> int:
    return int(conn.scalar(select(func.count()).select_from(table)) or 0)


def _split(plan: Plan, spec: SplitSpec, seed: int) -> SplitReport:
    conn = plan.conn
    report = SplitReport(ratios=spec.ratios, by=spec.by, seed=seed, merge_limit=spec.limit)
    base = [] if not plan.drop_trivial else [~trivial_clause(F)]
    weights: dict[str, int] = {src: 0 for src in conn.execute(select(SEL.c.source).distinct()).scalars()}
    for src, n in conn.execute(
        select(SEL.c.source, func.count(F.c.id)).select_from(plan.functions_from()).where(*base).group_by(SEL.c.source)
    ):
        weights[src] = int(n)
    if not any(weights.values()):  # no functions at all: weigh sources by their binaries
        weights.update(
            {src: int(n) for src, n in conn.execute(select(SEL.c.source, func.count()).group_by(SEL.c.source))}
        )
    # links: pic hashes of non-trivial functions shared by two or more sources
    links: Counter = Counter()
    rows = conn.execute(
        select(F.c.pic_hash, SEL.c.source)
        .select_from(plan.functions_from())
        .where(F.c.pic_hash.is_not(None), ~trivial_clause(F))
        .distinct()
        .order_by(F.c.pic_hash, SEL.c.source)
        .execution_options(yield_per=20_000)
    )
    members: list[str]
    current, members = None, []
    for pic, src in rows:
        if pic != current:
            if len(members) > 1:
                links[frozenset(members)] += 1
            current, members = pic, []
        members.append(src)
    if len(members) > 1:
        links[frozenset(members)] += 1
    uf, report.links_merged, report.links_cut = plan_components(weights, links, spec.limit)
    sides = assign(uf, weights, spec, seed)
    for items in _chunks(sorted(sides.items()), BATCH):
        conn.execute(insert(SIDE), [{"source": s, "split": side} for s, side in items])
    conn.execute(update(SEL).values(split=select(SIDE.c.split).where(SIDE.c.source == SEL.c.source).scalar_subquery()))
    report.sources = len(weights)
    components: dict[str, list[str]] = {}
    for s in sorted(weights):
        components.setdefault(uf.find(s), []).append(s)
    report.components = len(components)
    report.merged = sorted((c for c in components.values() if len(c) > 1), key=lambda c: c[0])
    report.sides = dict(sorted(sides.items()))
    _drops(plan, spec, report, base)
    _achieved(plan, spec, report)
    return report


def _drops(plan: Plan, spec: SplitSpec, report: SplitReport, base: list[ColumnElement[bool]]) -> None:
    """Pic hashes on more than one side: kept where most of their rows are, dropped elsewhere."""
    conn = plan.conn
    f2, s2 = F.alias("f2"), SEL.alias("s2")
    crossing = (
        select(f2.c.pic_hash)
        .select_from(f2.join(s2, s2.c.binary_id == f2.c.binary_id))
        .where(f2.c.pic_hash.is_not(None), *([~trivial_clause(f2)] if plan.drop_trivial else []))
        .group_by(f2.c.pic_hash)
        .having(func.count(distinct(s2.c.split)) > 1)
    )
    rows = conn.execute(
        select(F.c.pic_hash, SEL.c.split, func.count())
        .select_from(plan.functions_from())
        .where(F.c.pic_hash.in_(crossing), *base)
        .group_by(F.c.pic_hash, SEL.c.split)
        .order_by(F.c.pic_hash)
        .execution_options(yield_per=20_000)
    )
    dropped: Counter = Counter()
    pending: list[dict[str, str | None]] = []
    order = {name: i for i, name in enumerate(spec.names)}

    def settle(pic: str | None, counts: dict[str, int]) -> None:
        keep = min(counts, key=lambda side: (-counts[side], order[side]))
        for side, n in counts.items():
            if side != keep:
                dropped[side] += n
        pending.append({"pic_hash": pic, "keep": keep})
        if len(pending) >= BATCH:
            conn.execute(insert(DROP), pending)
            pending.clear()

    counts: dict[str, int]
    current, counts, hashes = None, {}, 0
    for pic, side, n in rows:
        if pic != current:
            if counts:
                settle(current, counts)
                hashes += 1
            current, counts = pic, {}
        counts[side] = int(n)
    if counts:
        settle(current, counts)
        hashes += 1
    if pending:
        conn.execute(insert(DROP), pending)
    plan.has_drops = hashes > 0
    report.dropped_pic_hashes = hashes
    report.dropped_functions = {name: dropped.get(name, 0) for name in spec.names}


def _achieved(plan: Plan, spec: SplitSpec, report: SplitReport) -> None:
    conn = plan.conn
    binaries: dict[str, int] = dict(conn.execute(select(SEL.c.split, func.count()).group_by(SEL.c.split)).all())
    functions: dict[str, int] = dict(
        conn.execute(
            select(SEL.c.split, func.count())
            .select_from(plan.functions_from())
            .where(*plan.function_conditions())
            .group_by(SEL.c.split)
        ).all()
    )
    report.binaries = {n: int(binaries.get(n, 0)) for n in spec.names}
    report.functions = {n: int(functions.get(n, 0)) for n in spec.names}
    nb, nf = sum(report.binaries.values()) or 1, sum(report.functions.values()) or 1
    report.achieved = {n: round(report.functions[n] / nf, 4) for n in spec.names}
    report.achieved_binaries = {n: round(report.binaries[n] / nb, 4) for n in spec.names}


def _chunks(items: list[Any], n: int):
    for i in range(0, len(items), n):
        yield items[i : i + n]


@dataclass
class SelectionSummary:
    """What ``assemblage select`` prints."""

    candidates: int
    binaries: int
    functions: int
    by_config: dict[str, dict[str, int]]
    dedup: DedupReport
    rows: list[dict[str, Any]]


def describe_selection(conn: Connection, selection: Selection, *, rows: int = 0) -> SelectionSummary:
    """Counts (and the first ``rows`` binaries) of a selection, inside a snapshot."""
    plan = make_plan(conn, selection)
    assert plan.dedup is not None  # make_plan reports it
    joined = B.join(SEL, SEL.c.binary_id == B.c.id)
    per_config: dict[str, dict[str, int]] = {}
    for config, n, funcs in conn.execute(
        select(B.c.config, func.count(), func.sum(B.c.function_count))
        .select_from(joined)
        .group_by(B.c.config)
        .order_by(B.c.config)
    ):
        per_config[config] = {"binaries": int(n), "functions": int(funcs or 0)}
    listed = []
    if rows:
        for r in conn.execute(
            select(
                B.c.id,
                B.c.config,
                B.c.source,
                B.c.file_name,
                B.c.hash,
                B.c.size,
                B.c.function_count,
                B.c.kind,
                B.c.license,
            )
            .select_from(joined)
            .order_by(B.c.id)
            .limit(rows)
        ):
            listed.append(dict(r._mapping))
    return SelectionSummary(
        candidates=plan.candidates,
        binaries=plan.binaries,
        functions=plan.count_functions(),
        by_config=per_config,
        dedup=plan.dedup,
        rows=listed,
    )
