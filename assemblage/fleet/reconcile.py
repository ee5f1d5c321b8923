"""Sizing the Auto Scaling groups of workers from the work there is, and protecting busy instances.

One group per queue family (``[fleet.groups.linux]``, ``windows-cross``, ``msvc``). Each round:

1. **Demand** (:func:`read_demand`): messages waiting in the group's queues (Redis) plus builds
   running on the family's queue (PostgreSQL: ``builds`` joined with their configuration's
   queue), and the EC2 instances with a build in progress (fresh ``workers`` rows of kind
   ``process`` with a ``build_id`` and an ``instance_id``, which workers record from the instance
   metadata).
2. **Decision** (:func:`decide`, no AWS call): ``ceil((waiting + running) / builds_per_instance)``
   clamped to the group's ``min``..``max`` (and the group's own MinSize..MaxSize). Growing happens
   at once; shrinking waits until ``cooldown`` seconds have passed since the last change this
   reconciler made (kept as the tag ``assemblage:last-change`` on the group, so the CLI, the
   coordinator's loop and a restarted coordinator agree without a state file).
3. **Apply** (:func:`apply`): first protect from scale-in every instance with a build in
   progress, then set the desired capacity, then lift the protection of idle instances. When the
   group shrinks, Auto Scaling therefore terminates only idle instances; a protected one keeps
   its builds until they finish, and is released on a later round. An instance that is
   terminated anyway (spot) drains its builds (:mod:`assemblage.tasks.drain`).

Tested against moto's EC2 and Auto Scaling emulation (``tests/unit/test_fleet_reconcile.py``):
no AWS account is reachable from the project's machines.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from assemblage.db import models as m
from assemblage.fleet.aws import client, translated
from assemblage.settings import FleetGroup, Settings

__all__ = [
    "Demand",
    "GroupState",
    "Decision",
    "read_demand",
    "describe_groups",
    "decide",
    "apply",
    "reconcile",
    "ReconcileLoop",
    "LAST_CHANGE_TAG",
]

log = logging.getLogger(__name__)

LAST_CHANGE_TAG = "assemblage:last-change"


@dataclass(frozen=True)
class Demand:
    waiting: dict[str, int]  # queue -> messages waiting
    running: dict[str, int]  # queue -> builds running
    busy_instances: frozenset[str]  # EC2 instances with a build in progress


@dataclass(frozen=True)
class Instance:
    id: str
    protected: bool
    state: str  # InService, Pending, Terminating ...


@dataclass(frozen=True)
class GroupState:
    name: str
    desired: int
    min_size: int
    max_size: int
    instances: tuple[Instance, ...]
    last_change: datetime | None


@dataclass(frozen=True)
class Decision:
    family: str
    group: str
    current: int
    desired: int
    demand: int  # builds waiting or running for this family
    reason: str
    protect: tuple[str, ...] = ()
    unprotect: tuple[str, ...] = ()
    applied: bool = False

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["protect"], doc["unprotect"] = list(self.protect), list(self.unprotect)
        return doc


def group_queues(family: str, group: FleetGroup) -> list[str]:
    return list(group.queues) or [family]


def read_demand(sessions: sessionmaker[Session], depths: dict[str, int] | None, *, dead_after: float) -> Demand:
    """Waiting messages (``depths``, from Redis), running builds per queue and busy instances (database)."""
    from assemblage.tasks.app import queue_for

    running: dict[str, int] = {}
    cutoff = m.utcnow() - timedelta(seconds=dead_after)
    with sessions() as s:
        for config, n in s.execute(
            select(m.Configuration.identifier, func.count())
            .join(m.Build, m.Build.configuration_id == m.Configuration.id)
            .where(m.Build.status == "running")
            .group_by(m.Configuration.identifier)
        ):
            q = queue_for(config)
            running[q] = running.get(q, 0) + int(n)
        busy = frozenset(
            i
            for i in s.scalars(
                select(m.Worker.instance_id)
                .distinct()
                .where(
                    m.Worker.kind == "process",
                    m.Worker.build_id.is_not(None),
                    m.Worker.instance_id.is_not(None),
                    m.Worker.last_seen >= cutoff,
                )
            )
            if i is not None  # the query's own filter, for the type
        )
    waiting = {q: n for q, n in (depths or {}).items() if q != "unacked"}
    return Demand(waiting=waiting, running=running, busy_instances=busy)


def describe_groups(asg, names: list[str]) -> dict[str, GroupState]:
    out: dict[str, GroupState] = {}
    with translated("DescribeAutoScalingGroups"):
        pages = asg.get_paginator("describe_auto_scaling_groups").paginate(AutoScalingGroupNames=names)
        for page in pages:
            for g in page["AutoScalingGroups"]:
                tags = {t["Key"]: t["Value"] for t in g.get("Tags", [])}
                last = tags.get(LAST_CHANGE_TAG)
                out[g["AutoScalingGroupName"]] = GroupState(
                    name=g["AutoScalingGroupName"],
                    desired=int(g["DesiredCapacity"]),
                    min_size=int(g["MinSize"]),
                    max_size=int(g["MaxSize"]),
                    instances=tuple(
                        Instance(i["InstanceId"], bool(i.get("ProtectedFromScaleIn")), i.get("LifecycleState", ""))
                        for i in g.get("Instances", [])
                    ),
                    last_change=datetime.fromisoformat(last) if last else None,
                )
    return out


def decide(
    family: str, group: FleetGroup, state: GroupState, demand: Demand, *, cooldown: float, now: datetime | None = None
) -> Decision:
    """The desired capacity and the protection changes for one group (pure: no AWS call)."""
    now = now or datetime.now(UTC)
    queues = group_queues(family, group)
    work = sum(demand.waiting.get(q, 0) + demand.running.get(q, 0) for q in queues)
    want = math.ceil(work / group.builds_per_instance)
    low, high = max(group.min, state.min_size), min(group.max, state.max_size)
    desired = min(max(want, low), high)
    reason = f"{work} build(s) waiting or running, {group.builds_per_instance} per instance -> {want}"
    if desired != want:
        reason += f", kept within {low}..{high}"
    if desired < state.desired and state.last_change is not None:
        since = (now - state.last_change).total_seconds()
        if since < cooldown:
            reason += f"; shrinking waits for the cooldown ({cooldown - since:.0f} s left)"
            desired = state.desired
    members = {
        i.id: i
        for i in state.instances
        if i.state not in ("Terminating", "Terminating:Wait", "Terminating:Proceed", "Terminated")
    }
    protect = tuple(sorted(i for i, inst in members.items() if i in demand.busy_instances and not inst.protected))
    unprotect = tuple(sorted(i for i, inst in members.items() if i not in demand.busy_instances and inst.protected))
    return Decision(
        family=family,
        group=group.name,
        current=state.desired,
        desired=desired,
        demand=work,
        reason=reason,
        protect=protect,
        unprotect=unprotect,
    )


def apply(asg, decision: Decision, *, now: datetime | None = None) -> Decision:
    """Protect busy instances, set the capacity (and the last-change tag), release idle instances."""
    name = decision.group
    if decision.protect:
        with translated(f"SetInstanceProtection on {name}"):
            asg.set_instance_protection(
                AutoScalingGroupName=name, InstanceIds=list(decision.protect), ProtectedFromScaleIn=True
            )
    if decision.desired != decision.current:
        with translated(f"SetDesiredCapacity on {name}"):
            asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=decision.desired, HonorCooldown=False)
            asg.create_or_update_tags(
                Tags=[
                    {
                        "ResourceId": name,
                        "ResourceType": "auto-scaling-group",
                        "Key": LAST_CHANGE_TAG,
                        "Value": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
                        "PropagateAtLaunch": False,
                    }
                ]
            )
        log.info("fleet: %s %d -> %d (%s)", name, decision.current, decision.desired, decision.reason)
    if decision.unprotect:
        with translated(f"SetInstanceProtection on {name}"):
            asg.set_instance_protection(
                AutoScalingGroupName=name, InstanceIds=list(decision.unprotect), ProtectedFromScaleIn=False
            )
    return Decision(**{**asdict(decision), "applied": True})


def reconcile(
    settings: Settings,
    sessions: sessionmaker[Session],
    depths: dict[str, int] | None,
    *,
    dry_run: bool = False,
    asg=None,
    now: datetime | None = None,
) -> list[Decision]:
    """One round over every configured group. With ``dry_run`` nothing is changed."""
    groups = settings.fleet.groups
    if not groups:
        return []
    demand = read_demand(sessions, depths, dead_after=settings.worker_dead_after)
    asg = asg or client("autoscaling", settings)
    states = describe_groups(asg, [g.name for g in groups.values()])
    out = []
    for family, group in sorted(groups.items()):
        state = states.get(group.name)
        if state is None:
            from assemblage.errors import FleetError

            raise FleetError(
                f"[fleet.groups.{family}] names the Auto Scaling group {group.name!r}, which does not "
                "exist in this account and region"
            )
        d = decide(family, group, state, demand, cooldown=settings.fleet.cooldown, now=now)
        out.append(d if dry_run else apply(asg, d, now=now))
    return out


@dataclass
class ReconcileLoop:
    """Reconciles every ``fleet.interval`` seconds in a daemon thread (inside ``assemblage serve``)."""

    settings: Settings
    sessions: sessionmaker[Session]
    depths: Any  # () -> dict | None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ReconcileLoop:
        from assemblage.db.session import make_engine, make_sessionmaker
        from assemblage.tasks.coordinator import queue_depths

        return cls(
            settings=settings,
            sessions=make_sessionmaker(make_engine(settings.database_url)),
            depths=lambda: queue_depths(settings.broker_url),
        )

    def start(self) -> ReconcileLoop:
        self._thread = threading.Thread(target=self._run, name="fleet", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.settings.fleet.interval):
            try:
                reconcile(self.settings, self.sessions, self.depths())
            except Exception:
                log.exception("fleet: reconcile failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
