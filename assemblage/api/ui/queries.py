"""What the pages show, read from the database (SQLite or PostgreSQL alike)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from assemblage.db import models as m

__all__ = ["RunRow", "runs_overview", "composition", "DONE"]

DONE = m.FINAL_STATUSES


@dataclass
class RunRow:
    id: int
    recipe: str
    status: str
    created_at: datetime | None
    builds: dict[str, int] = field(default_factory=dict)
    binaries: int = 0

    @property
    def total(self) -> int:
        return sum(self.builds.values())

    @property
    def done(self) -> int:
        return sum(n for st, n in self.builds.items() if st in DONE)

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "recipe": self.recipe,
            "status": self.status,
            "builds": self.builds,
            "total": self.total,
            "done": self.done,
            "binaries": self.binaries,
        }


def runs_overview(s: Session, *, limit: int = 50, run_ids: list[int] | None = None) -> list[RunRow]:
    """The latest runs with their build counts by status and their binaries."""
    q = select(m.Run.id, m.Recipe.name, m.Run.status, m.Run.created_at).join(m.Recipe, m.Run.recipe_id == m.Recipe.id)
    if run_ids is not None:
        q = q.where(m.Run.id.in_(run_ids))
    rows = {
        rid: RunRow(rid, name, status, created)
        for rid, name, status, created in s.execute(q.order_by(m.Run.id.desc()).limit(limit))
    }
    if not rows:
        return []
    for rid, status, n in s.execute(
        select(m.Build.run_id, m.Build.status, func.count())
        .where(m.Build.run_id.in_(rows))
        .group_by(m.Build.run_id, m.Build.status)
    ):
        rows[rid].builds[status] = n
    # a run's binaries: made by its builds, or by the builds its reused builds point at
    owner = func.coalesce(m.Build.reused_from_id, m.Build.id)
    for rid, n in s.execute(
        select(m.Build.run_id, func.count(m.Binary.id.distinct()))
        .join(m.Binary, m.Binary.build_id == owner)
        .where(m.Build.run_id.in_(rows))
        .group_by(m.Build.run_id)
    ):
        rows[rid].binaries = n
    return list(rows.values())


def composition(s: Session, run: int | None = None) -> dict[str, list[tuple[str, int]]]:
    """Binary counts by configuration, licence and source (and functions by configuration)."""

    def counts(column, what=None):
        q = select(column, what if what is not None else func.count(m.Binary.id)).group_by(column)
        if run is not None:
            from assemblage.corpus.select import in_runs

            q = q.where(in_runs([run]))
        return [(str(k) if k is not None else "(unknown)", int(n or 0)) for k, n in s.execute(q)]

    return {
        "config": counts(m.Binary.config),
        "license": counts(m.Binary.license),
        "source": counts(m.Binary.source),
        "functions": counts(m.Binary.config, func.sum(m.Binary.function_count)),
    }
