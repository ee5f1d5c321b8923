"""The coordinator's sweep: builds of dead workers go back to the queue, lost messages are sent again.

Two failures it repairs:

- a worker died (kill -9, machine gone) while building, exporting, fetching or
  crawling: its build (or export) is ``running``, or its source or crawl names
  the process (``worker``), but the process has no fresh heartbeat. The work is
  sent again (after that transaction commits); its unacknowledged message would
  otherwise wait for Redis's visibility timeout (hours).
- messages were lost (Redis restarted without persistence): nothing is queued
  or unacknowledged in the broker on two sweeps in a row, yet runs have
  pending work or exports are pending. Their start, fetch, build and export
  messages are sent again.

Sending twice is safe: tasks are idempotent, builds and exports are claimed, fetches and
crawls leased (``assemblage.tasks.jobs.lease``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, aliased, sessionmaker

from assemblage.db import models as m
from assemblage.db.session import session_scope
from assemblage.pipeline.states import release_build
from assemblage.tasks.app import QUEUES

__all__ = [
    "Sweeper",
    "requeue_dead_builds",
    "requeue_dead_exports",
    "requeue_dead_leases",
    "broker_idle",
    "resend_lost",
    "queue_depths",
]

log = logging.getLogger(__name__)


def requeue_dead_builds(sessions: sessionmaker[Session], dead_after: float, send) -> list[int]:
    """Running builds whose process went silent -> pending, then sent again. Returns their ids."""
    cutoff = m.utcnow() - timedelta(seconds=dead_after)
    w = aliased(m.Worker)
    with session_scope(sessions) as s:
        rows = s.execute(
            select(m.Build, m.Configuration.identifier, w.last_seen)
            .join(m.Configuration, m.Build.configuration_id == m.Configuration.id)
            .outerjoin(w, w.id == m.Build.worker)
            .where(m.Build.status == "running")
            .with_for_update(of=m.Build, skip_locked=True)
        ).all()
        todo = []
        for b, config, seen in rows:
            if seen is not None and seen.tzinfo is None:
                seen = seen.replace(tzinfo=cutoff.tzinfo)
            if seen is not None and seen >= cutoff:
                continue
            started = (
                b.started_at.replace(tzinfo=cutoff.tzinfo)
                if b.started_at and b.started_at.tzinfo is None
                else b.started_at
            )
            if seen is None and started is not None and started >= cutoff:
                continue  # just claimed; its heartbeat row may not be visible yet
            log.warning("build %s: worker %s is silent; sending it again", b.id, b.worker)
            release_build(b)
            todo.append((b.id, config))
        # forget heartbeats of processes long gone, and of workers silent for an hour
        # (GET /workers shows them as dead until then)
        s.execute(
            delete(m.Worker).where(
                m.Worker.kind == "process", m.Worker.last_seen < m.utcnow() - timedelta(seconds=10 * dead_after)
            )
        )
        s.execute(
            delete(m.Worker).where(
                m.Worker.kind == "node", m.Worker.last_seen < m.utcnow() - timedelta(seconds=max(3600, 10 * dead_after))
            )
        )
    for bid, config in todo:  # after the commit above
        send("build", bid, config)
    return [bid for bid, _ in todo]


def requeue_dead_exports(sessions: sessionmaker[Session], dead_after: float, send) -> list[int]:
    """Running exports whose process went silent -> pending, then sent again. Returns their ids."""
    cutoff = m.utcnow() - timedelta(seconds=dead_after)
    w = aliased(m.Worker)
    todo = []
    with session_scope(sessions) as s:
        rows = s.execute(
            select(m.Export, w.last_seen)
            .outerjoin(w, w.id == m.Export.worker)
            .where(m.Export.status == "running")
            .with_for_update(of=m.Export, skip_locked=True)
        ).all()
        for export, seen in rows:
            if seen is not None and seen.tzinfo is None:
                seen = seen.replace(tzinfo=cutoff.tzinfo)
            if seen is not None and seen >= cutoff:
                continue
            stamp = export.updated_at or export.started_at
            if stamp is not None and stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=cutoff.tzinfo)
            if seen is None and stamp is not None and stamp >= cutoff:
                continue  # just claimed; its heartbeat row may not be visible yet
            log.warning("export %s: worker %s is silent; sending it again", export.id, export.worker)
            export.status, export.worker = "pending", None
            todo.append(export.id)
    for eid in todo:  # after the commit above
        send("export", eid, None)
    return todo


def requeue_dead_leases(sessions: sessionmaker[Session], dead_after: float, send) -> list[tuple[str, int]]:
    """Fetches and crawls whose process went silent (kill -9, machine gone) are sent again.

    Their messages sit unacknowledged in Redis until the visibility timeout (hours), and a
    broker holding them is not idle, so :func:`resend_lost` would not see them.
    """
    cutoff = m.utcnow() - timedelta(seconds=dead_after)
    w = aliased(m.Worker)
    todo: list[tuple[str, int]] = []
    with session_scope(sessions) as s:
        model: type[m.Source] | type[m.Crawl]
        for kind, model, active in (("fetch", m.Source, ("pending",)), ("crawl", m.Crawl, ("pending", "running"))):
            # rows of `model` (select() of a union of two model classes is typed as their common base)
            rows = cast(
                Sequence[tuple[m.Source | m.Crawl, datetime | None]],
                s.execute(
                    select(model, w.last_seen)
                    .outerjoin(w, w.id == model.worker)
                    .where(model.worker.is_not(None), model.status.in_(active))
                    .with_for_update(of=model, skip_locked=True)
                ).all(),
            )
            for row, seen in rows:
                if seen is not None and seen.tzinfo is None:
                    seen = seen.replace(tzinfo=cutoff.tzinfo)
                if seen is not None and seen >= cutoff:
                    continue
                log.warning("%s %s: worker %s is silent; sending it again", kind, row.id, row.worker)
                row.worker = None
                todo.append((kind, row.id))
    for kind, row_id in todo:  # after the commit above
        send(kind, row_id, None)
    return todo


def queue_depths(broker_url: str) -> dict[str, int] | None:
    """Messages waiting per queue, plus ``unacked`` (delivered, not yet acknowledged); None if not Redis."""
    if not broker_url.startswith(("redis://", "rediss://")):
        return None
    import redis

    r = redis.Redis.from_url(broker_url, socket_timeout=3, socket_connect_timeout=3)
    try:
        depths = {}
        for q in QUEUES:
            # kombu keeps priorities in separate lists: "q" and "q\x06\x16<n>"
            keys = [q] + [f"{q}\x06\x16{p}" for p in (3, 6, 9)]
            depths[q] = sum(int(r.llen(k)) for k in keys)
        depths["unacked"] = int(r.hlen("unacked"))
        return depths
    finally:
        r.close()


def broker_idle(broker_url: str) -> bool:
    depths = queue_depths(broker_url)
    return depths is not None and not any(depths.values())


def resend_lost(sessions: sessionmaker[Session], send) -> int:
    """Send again the work of unfinished runs and pending exports (for when the broker lost its messages).
    Returns messages sent."""
    with session_scope(sessions) as s:
        exports = list(s.scalars(select(m.Export.id).where(m.Export.status == "pending").order_by(m.Export.id)))
        runs = list(s.scalars(select(m.Run.id).where(m.Run.status.in_(("pending", "running")))))
        starts = list(s.scalars(select(m.Run.id).where(m.Run.id.in_(runs), m.Run.status == "pending"))) if runs else []
        fetches = (
            list(s.scalars(select(m.Source.id).where(m.Source.run_id.in_(runs), m.Source.status == "pending")))
            if runs
            else []
        )
        crawls = (
            list(
                s.scalars(
                    select(m.Crawl.id).where(m.Crawl.run_id.in_(runs), m.Crawl.status.in_(("pending", "running")))
                )
            )
            if runs
            else []
        )
        builds = (
            s.execute(
                select(m.Build.id, m.Configuration.identifier)
                .join(m.Configuration, m.Build.configuration_id == m.Configuration.id)
                .join(m.Source, m.Build.source_id == m.Source.id)
                .where(m.Build.run_id.in_(runs), m.Build.status == "pending", m.Source.status == "fetched")
            ).all()
            if runs
            else []
        )
    for rid in starts:
        send("start", rid, None)
    for sid in fetches:
        send("fetch", sid, None)
    for cid in crawls:
        send("crawl", cid, None)
    for bid, config in builds:
        send("build", bid, config)
    for eid in exports:
        send("export", eid, None)
    n = len(starts) + len(fetches) + len(crawls) + len(builds) + len(exports)
    if n:
        log.warning("the broker holds nothing for %d unfinished message(s): sent them again", n)
    return n


@dataclass
class Sweeper:
    """Runs the sweep every ``interval`` seconds in a daemon thread (inside ``assemblage serve``)."""

    sessions: sessionmaker[Session]
    broker_url: str
    dead_after: float
    interval: float
    send: object  # send(kind, id, config)
    _idle_sweeps: int = 0
    _db_ok_since: float | None = None  # heartbeats written during a database outage were lost, not late
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sweep(self) -> dict[str, int]:
        out = {"requeued": 0, "resent": 0}
        now = time.monotonic()
        try:
            with self.sessions() as s:
                s.execute(select(1))
        except SQLAlchemyError:
            self._db_ok_since = None
            raise
        if self._db_ok_since is None:
            self._db_ok_since = now
        if now - self._db_ok_since >= self.dead_after:  # workers have had time to beat again
            out["requeued"] = len(requeue_dead_builds(self.sessions, self.dead_after, self.send))
            out["requeued"] += len(requeue_dead_exports(self.sessions, self.dead_after, self.send))
            out["requeued"] += len(requeue_dead_leases(self.sessions, self.dead_after, self.send))
        try:
            idle = broker_idle(self.broker_url)
        except Exception as exc:  # noqa: BLE001 - the broker is away; try again next time
            log.warning("sweep: broker unreachable: %s", exc)
            idle = False
        self._idle_sweeps = self._idle_sweeps + 1 if idle else 0
        if self._idle_sweeps >= 2:  # twice in a row: not a message between commit and send
            out["resent"] = resend_lost(self.sessions, self.send)
            self._idle_sweeps = 0
        return out

    def start(self) -> Sweeper:
        self._thread = threading.Thread(target=self._run, name="sweeper", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sweep()
            except SQLAlchemyError as exc:
                log.warning("sweep: database unavailable: %s", exc.__class__.__name__)
            except Exception:
                log.exception("sweep failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
