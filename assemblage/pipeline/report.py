"""What a run produced: counts by status and reason, coverage, labels that did not match."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

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
    position: int = 0  # the source's place in the recipe (two sources may share a name)


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
    unsandboxed: int = 0  # builds that ran without a sandbox (allow_unsandboxed)
    sources: list[str] = field(default_factory=list)  # names, in recipe order
    positions: list[int] = field(default_factory=list)  # the recipe position of each of ``sources``
    configs: list[str] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)
    _grid: dict[tuple[int, str], Cell] = field(default_factory=dict, repr=False)

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    def cell(self, position: int, config: str) -> Cell | None:
        """The build of the source at ``position`` under ``config``."""
        return self._grid.get((position, config))


def run_report(s: Session, run_id: int) -> RunReport:
    run = s.get(m.Run, run_id)
    if run is None:
        raise LookupError(f"no run {run_id}")
    rep = RunReport(run_id=run_id, recipe=run.recipe.name, status=run.status, notes=list(run.notes or []))
    # a reused build's binaries belong to the build that made them
    owner = func.coalesce(m.Build.reused_from_id, m.Build.id)
    per_build = {
        build_id: (n, functions or 0, mismatches or 0, errors or 0)
        for build_id, n, functions, mismatches, errors in s.execute(
            select(
                m.Binary.build_id,
                func.count(m.Binary.id),
                func.sum(m.Binary.function_count),
                func.sum(case((m.Binary.opt_mismatch.is_(True), 1), else_=0)),
                func.sum(case((m.Binary.analysis_error.is_not(None), 1), else_=0)),
            )
            .where(m.Binary.build_id.in_(select(owner).where(m.Build.run_id == run_id)))
            .group_by(m.Binary.build_id)
        )
    }
    rows = s.execute(
        select(m.Build, m.Source.name, m.Source.position, m.Configuration.identifier, owner)
        .join(m.Source, m.Build.source_id == m.Source.id)
        .join(m.Configuration, m.Build.configuration_id == m.Configuration.id)
        .where(m.Build.run_id == run_id)
        .order_by(m.Source.position, m.Configuration.identifier)
    ).all()
    names: dict[int, str] = {}
    configs: set[str] = set()
    counted: set[int] = set()
    for b, src_name, pos, cfg, own in rows:
        rep.by_status[b.status] += 1
        if b.reason:
            rep.by_reason[(b.status, b.reason)] += 1
        if b.reused_from_id:
            rep.reused += 1
        if b.sandboxed is False:
            rep.unsandboxed += 1
        n, functions, mismatches, errors = per_build.get(own, (0, 0, 0, 0))
        if own not in counted:  # two builds of one run may reuse the same earlier build
            counted.add(own)
            rep.binaries += n
            rep.functions += functions
            rep.opt_mismatches += mismatches
            rep.analysis_errors += errors
        cell = Cell(b.id, src_name, cfg, b.status, b.reason, b.message, n, bool(b.reused_from_id), pos)
        rep.cells.append(cell)
        rep._grid[(pos, cfg)] = cell
        names.setdefault(pos, src_name)
        configs.add(cfg)
    rep.positions = sorted(names)
    rep.sources = [names[p] for p in rep.positions]
    rep.configs = sorted(configs)
    return rep
