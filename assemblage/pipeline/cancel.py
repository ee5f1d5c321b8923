"""Cancelling a run (``POST /api/v1/runs/{id}/cancel``, ``assemblage cancel``): nothing more of it starts,
what runs is stopped.

The change itself is :func:`assemblage.pipeline.states.cancel_run`; in one transaction (the run's row locked):

- every build still ``pending`` or ``running`` becomes ``skipped`` with reason ``cancelled``: a queued
  build's message finds it final when a worker takes it (``claim_build``) and never starts; a running
  build's result is dropped (its final transaction finds the row final, so no binary is written);
- sources not yet fetched and crawls not yet done fail with "the run was cancelled", so no fetch or
  crawl adds builds later, and a run not yet expanded is marked expanded (its start task adds nothing);
- the run becomes ``cancelled``.

A worker running one of the builds sees the cancellation on its next heartbeat
(:class:`CancelWatch`, every ``ASSEMBLAGE_HEARTBEAT_INTERVAL`` seconds) and kills the build's
process groups (and its container, with the docker runner), as Ctrl-C does in the embedded mode;
an embedded run watches its run's row the same way and stops (:func:`assemblage.pipeline.embedded.execute_run`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from assemblage.db import models as m
from assemblage.pipeline.states import CANCELLED

__all__ = ["CancelWatch", "build_cancelled", "run_cancelled"]

log = logging.getLogger(__name__)


def build_cancelled(sessions: sessionmaker[Session], build_id: int) -> bool:
    """Whether ``build_id`` was cancelled (its run cancelled it, or the row is gone)."""
    with sessions() as s:
        row = s.execute(select(m.Build.status, m.Build.reason).where(m.Build.id == build_id)).first()
    return row is None or (row.status in m.FINAL_STATUSES and row.reason == CANCELLED)


def run_cancelled(sessions: sessionmaker[Session], run_id: int) -> bool:
    """Whether ``run_id`` was cancelled (``assemblage cancel``, from another process), or the row is gone."""
    with sessions() as s:
        status = s.scalar(select(m.Run.status).where(m.Run.id == run_id))
    return status is None or status == CANCELLED


class CancelWatch:
    """A daemon thread that stops this process's builds when their run is cancelled.

    Every ``interval`` seconds it reads the build's row (a service worker: one pool process runs one
    build at a time), or the run's (``run_id``: the embedded mode, many builds of one run); once it
    says ``cancelled`` it calls :func:`assemblage.builds.runner.kill_all_builds` (the process groups
    and containers of the builds), then ``on_cancel`` when given, and stops watching. Use as a
    context manager; on exit, builds are allowed again in this process (the next task's build must run).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        build_id: int | None = None,
        *,
        interval: float,
        run_id: int | None = None,
        on_cancel: Callable[[], None] | None = None,
    ) -> None:
        self.sessions, self.interval, self.on_cancel = sessions, max(0.2, interval), on_cancel
        self._cancelled: Callable[[], bool]
        if build_id is not None and run_id is None:
            self.what, self._cancelled = f"build {build_id}", lambda: build_cancelled(sessions, build_id)
        elif run_id is not None and build_id is None:
            self.what, self._cancelled = f"run {run_id}", lambda: run_cancelled(sessions, run_id)
        else:
            raise ValueError("CancelWatch watches one build or one run")
        self.fired = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"cancel-watch-{self.what}", daemon=True)

    def _run(self) -> None:
        from assemblage.builds.runner import kill_all_builds

        while not self._stop.wait(self.interval):
            try:
                cancelled = self._cancelled()
            except SQLAlchemyError as exc:  # the database is away: keep trying
                log.warning("cancel watch of %s: %s", self.what, exc.__class__.__name__)
                continue
            if cancelled:
                self.fired = True
                killed = kill_all_builds()
                log.warning("%s: its run was cancelled, %d build process(es) killed", self.what, killed)
                if self.on_cancel is not None:
                    self.on_cancel()
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
