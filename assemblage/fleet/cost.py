"""What a corpus costs on EC2: the cost per 1,000 binaries of a run, from its measured build times.

For each queue family, the instance time a run used is the wall time of its builds (from
``started_at`` to ``finished_at``: fetching the checkout, compiling, analysing, storing; where a
row lacks them, ``duration + analysis_duration``) divided by the builds an instance runs at once
(``builds_per_instance``). Times the family's instance price (``[fleet.prices]``, USD per hour,
by the group's ``instance_type``) gives dollars; divided by the run's binaries, times 1,000, the
figure to plan a corpus with. Builds reused from an earlier run cost nothing and are left out;
idle time between builds (queues running dry, instances booting) is not in it, so it is a lower
bound for an undersized fleet and close for a busy one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from assemblage.db import models as m
from assemblage.settings import FleetSettings, SettingsError

__all__ = ["FamilyCost", "RunCost", "estimate_run_cost"]


@dataclass(frozen=True)
class FamilyCost:
    family: str
    builds: int
    build_hours: float  # summed wall time of its builds
    instance_type: str
    price_per_hour: float
    builds_per_instance: int
    instance_hours: float
    dollars: float


@dataclass(frozen=True)
class RunCost:
    run_id: int
    binaries: int
    dollars: float
    per_1000_binaries: float | None  # None when the run has no binaries
    families: list[FamilyCost]

    def to_json(self) -> dict:
        return asdict(self)


def estimate_run_cost(sessions: sessionmaker[Session], run_id: int, fleet: FleetSettings) -> RunCost:
    from assemblage.tasks.app import queue_for

    seconds: dict[str, float] = {}
    counts: dict[str, int] = {}
    with sessions() as s:
        if s.get(m.Run, run_id) is None:
            raise LookupError(f"run {run_id} does not exist")
        rows = s.execute(
            select(
                m.Configuration.identifier,
                m.Build.started_at,
                m.Build.finished_at,
                m.Build.duration,
                m.Build.analysis_duration,
            )
            .join(m.Configuration, m.Build.configuration_id == m.Configuration.id)
            .where(
                m.Build.run_id == run_id,
                m.Build.status.in_(m.FINAL_STATUSES),
                m.Build.reused_from_id.is_(None),
                m.Build.duration.is_not(None),
            )
        )
        for config, started, finished, duration, analysis in rows:
            if started is not None and finished is not None:
                wall = (finished - started).total_seconds()
            else:
                wall = float(duration or 0) + float(analysis or 0)
            family = queue_for(config)
            seconds[family] = seconds.get(family, 0.0) + max(0.0, wall)
            counts[family] = counts.get(family, 0) + 1
        binaries = int(s.scalar(select(func.count(m.Binary.id)).where(m.Binary.run_id == run_id)) or 0)
    families = []
    missing = []
    for family in sorted(seconds):
        group = fleet.groups.get(family)
        itype = group.instance_type if group else None
        price = fleet.prices.get(itype) if itype else None
        if group is None or itype is None or price is None:
            missing.append(family)
            continue
        hours = seconds[family] / 3600
        inst_hours = hours / group.builds_per_instance
        families.append(
            FamilyCost(
                family=family,
                builds=counts[family],
                build_hours=hours,
                instance_type=itype,
                price_per_hour=price,
                builds_per_instance=group.builds_per_instance,
                instance_hours=inst_hours,
                dollars=inst_hours * price,
            )
        )
    if missing:
        raise SettingsError(
            f"no price for the {', '.join(missing)} builds of run {run_id}: give each family a group with an "
            'instance_type ([fleet.groups.NAME] instance_type = "c6i.2xlarge") and that type a price '
            '([fleet.prices] "c6i.2xlarge" = 0.34, USD per hour)'
        )
    dollars = sum(f.dollars for f in families)
    return RunCost(
        run_id=run_id,
        binaries=binaries,
        dollars=dollars,
        per_1000_binaries=dollars / binaries * 1000 if binaries else None,
        families=families,
    )
