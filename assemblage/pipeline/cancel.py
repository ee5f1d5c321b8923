"""Cancelling a run (``POST /api/v1/runs/{id}/cancel``): nothing more of it starts, what runs is stopped.

In one transaction (the run's row locked):

- every build still ``pending`` or ``running`` becomes ``skipped`` with reason ``cancelled``: a queued
  build's message finds it final when a worker takes it (``claim_build``) and never starts; a running
  build's result is dropped (its final transaction finds the row final, so no binary is written);
- sources not yet fetched and crawls not yet done fail with "the run was cancelled", so no fetch or
  crawl adds builds later, and a run not yet expanded is marked expanded (its start task adds nothing);
- the run becomes ``cancelled``.

A worker running one of the builds sees the cancellation on its next heartbeat
(:class:`CancelWatch`, every ``ASSEMBLAGE_HEARTBEAT_INTERVAL`` seconds) and kills the build's
process groups (and its container, with the docker runner), as Ctrl-C does in the embedded mode.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from assemblage.db import models as m
from assemblage.db.session import session_scope

__all__ = ["CANCELLED", "CancelOutcome", "CancelWatch", "cancel_run", "build_cancelled"]

log = logging.getLogger(__name__)

CANCELLED = "cancelled"
MESSAGE = "the run was cancelled"
# a run in one of these states has ended: there is nothing to cancel
ENDED = frozenset({"finished", "failed", "interrupted"})


@dataclass(frozen=True)
class CancelOutcome:
    status: str  # the run's status after the call ("cancelled", or the status it had ended with)
    queued: int = 0  # pending builds that will never start
    running: int = 0  # running builds told to stop


def cancel_run(sessions: sessionmaker[Session], run_id: int) -> CancelOutcome | None:
    """Cancel ``run_id`` (see the module's docstring). None when there is no such run; idempotent."""
    with session_scope(sessions) as s:
        run = s.get(m.Run, run_id, with_for_update=True)
        if run is None:
            return None
        if run.status in ENDED or run.status == CANCELLED:
            return CancelOutcome(run.status)
        now = m.utcnow()
        queued = running = 0
        for b in s.scalars(
            select(m.Build)
            .where(m.Build.run_id == run_id, m.Build.status.in_(("pending", "running")))
            .with_for_update()
        ):
            queued += b.status == "pending"
            running += b.status == "running"
            b.status, b.reason, b.message, b.finished_at = "skipped", CANCELLED, MESSAGE, now
        for src in s.scalars(select(m.Source).where(m.Source.run_id == run_id, m.Source.status == "pending")):
            src.status, src.error = "failed", MESSAGE
        for crawl in s.scalars(
            select(m.Crawl).where(m.Crawl.run_id == run_id, m.Crawl.status.in_(("pending", "running")))
        ):
            crawl.status, crawl.error = "failed", MESSAGE
        run.expanded = True  # a start task delivered later adds nothing
        run.status, run.finished_at = CANCELLED, now
        run.started_at = run.started_at or now
        return CancelOutcome(CANCELLED, queued, running)


def build_cancelled(sessions: sessionmaker[Session], build_id: int) -> bool:
    """Whether ``build_id`` was cancelled (its run cancelled it, or the row is gone)."""
    with sessions() as s:
        row = s.execute(select(m.Build.status, m.Build.reason).where(m.Build.id == build_id)).first()
    return row is None or (row.status in m.FINAL_STATUSES and row.reason == CANCELLED)


class CancelWatch:
    """A daemon thread that stops this process's build when its run is cancelled.

    Every ``interval`` seconds it reads the build's row; once it says ``cancelled`` it calls
    :func:`assemblage.builds.runner.kill_all_builds` (the build's process groups and containers;
    one pool process runs one build at a time) and stops watching. Use as a context manager;
    on exit, builds are allowed again in this process (the next task's build must run).
    """

    def __init__(self, sessions: sessionmaker[Session], build_id: int, *, interval: float) -> None:
        self.sessions, self.build_id, self.interval = sessions, build_id, max(0.2, interval)
        self.fired = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"cancel-watch-{build_id}", daemon=True)

    def _run(self) -> None:
        from assemblage.builds.runner import kill_all_builds

        while not self._stop.wait(self.interval):
            try:
                cancelled = build_cancelled(self.sessions, self.build_id)
            except SQLAlchemyError as exc:  # the database is away: keep trying
                log.warning("cancel watch of build %s: %s", self.build_id, exc.__class__.__name__)
                continue
            if cancelled:
                self.fired = True
                killed = kill_all_builds()
                log.warning("build %s: its run was cancelled, %d build process(es) killed", self.build_id, killed)
                return

    def __enter__(self) -> CancelWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        from assemblage.builds.runner import allow_builds

        self._stop.set()
        self._thread.join(timeout=5)
        if self.fired:
            allow_builds()
