"""What a run produced: counts by status and reason, coverage, labels that did not match."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from assemblage.db import models as m

__all__ = ["RunReport", "run_report", "Cell"]


@dataclass(frozen=True)
class Cell:
    build_id: int
    source: str
    config: str
    status: str
    reason: str | None
    message: str | None
    binaries: int
    reused: bool


@dataclass
class RunReport:
    run_id: int
    recipe: str
    status: str
    notes: list[str]
    by_status: Counter = field(default_factory=Counter)
    by_reason: Counter = field(default_factory=Counter)  # (status, reason) -> count
    binaries: int = 0
    functions: int = 0
    opt_mismatches: int = 0
    analysis_errors: int = 0
    reused: int = 0
    sources: list[str] = field(default_factory=list)
    configs: list[str] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    def cell(self, source: str, config: str) -> Cell | None:
        for c in self.cells:
            if c.source == source and c.config == config:
                return c
        return None


def run_report(s: Session, run_id: int) -> RunReport:
    run = s.get(m.Run, run_id)
    if run is None:
        raise LookupError(f"no run {run_id}")
    rep = RunReport(run_id=run_id, recipe=run.recipe.name, status=run.status, notes=list(run.notes or []))
    # a reused build's binaries belong to the build that made them
    owner = func.coalesce(m.Build.reused_from_id, m.Build.id)
    bin_counts = dict(s.execute(select(m.Binary.build_id, func.count()).group_by(m.Binary.build_id)).all())
    rows = s.execute(
        select(m.Build, m.Source.name, m.Source.position, m.Configuration.identifier, owner)
        .join(m.Source, m.Build.source_id == m.Source.id)
        .join(m.Configuration, m.Build.configuration_id == m.Configuration.id)
        .where(m.Build.run_id == run_id)
        .order_by(m.Source.position, m.Configuration.identifier)
    ).all()
    owners = set()
    for b, src_name, _pos, cfg, own in rows:
        rep.by_status[b.status] += 1
        if b.reason:
            rep.by_reason[(b.status, b.reason)] += 1
        if b.reused_from_id:
            rep.reused += 1
        n = bin_counts.get(own, 0)
        owners.add(own)
        rep.cells.append(Cell(b.id, src_name, cfg, b.status, b.reason, b.message, n, bool(b.reused_from_id)))
        if src_name not in rep.sources:
            rep.sources.append(src_name)
        if cfg not in rep.configs:
            rep.configs.append(cfg)
    rep.configs.sort()
    if owners:
        rep.binaries = s.scalar(select(func.count()).select_from(m.Binary).where(m.Binary.build_id.in_(owners))) or 0
        fn = aliased(m.Function)
        rep.functions = s.scalar(
            select(func.count(fn.id)).join(m.Binary, fn.binary_id == m.Binary.id).where(m.Binary.build_id.in_(owners))
        ) or 0
        rep.opt_mismatches = s.scalar(
            select(func.count()).select_from(m.Binary).where(m.Binary.build_id.in_(owners), m.Binary.opt_mismatch.is_(True))
        ) or 0
        rep.analysis_errors = s.scalar(
            select(func.count()).select_from(m.Binary).where(m.Binary.build_id.in_(owners), m.Binary.analysis_error.is_not(None))
        ) or 0
    return rep
