"""Recording what could not be done: a source that cannot be fetched, a run that cannot start, a run too big.

One function owns each of these transitions, so the embedded mode, the Celery
tasks and the API record them the same way. Every reason is redacted
(:func:`assemblage.urls.redact`) before it is stored: it is shown to read tokens.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import select

from assemblage.db import models as m
from assemblage.db.session import session_scope
from assemblage.errors import Problem
from assemblage.urls import redact

if TYPE_CHECKING:
    from assemblage.pipeline.context import Context

__all__ = ["fail_run", "fail_source", "sources_counted", "too_many_builds", "unexpected_fetch_error"]

log = logging.getLogger(__name__)


def _utcnow():
    return m.utcnow()


def sources_counted(spec) -> int:
    """How many sources a recipe entry may become: a search or a selector counts as its ``limit``."""
    from assemblage.sources import kind_of

    return kind_of(spec).at_most(spec)


def too_many_builds(sources: int, configs: int, cap: int) -> Problem:
    """The problem of a run past the service's cap, with the numbers."""
    return Problem(
        "sources",
        f"{sources} source(s) x {configs} configuration(s) = {sources * configs} builds, "
        f"more than the {cap} this service takes in one run (ASSEMBLAGE_MAX_BUILDS_PER_RUN)",
    )


def unexpected_fetch_error(source_id: int, exc: BaseException) -> str:
    """Log an exception a fetch should not have raised (traceback redacted); the reason to record."""
    import traceback

    log.error(
        "source %s: fetching raised %s\n%s",
        source_id,
        type(exc).__name__,
        redact("".join(traceback.format_exception(exc))),
    )
    return redact(f"fetching failed unexpectedly ({type(exc).__name__}: {exc}); the worker's log has the details")


def fail_source(ctx: Context, source_id: int, reason: str) -> None:
    """One source could not be fetched: it is ``failed`` with ``reason`` (redacted); its pending builds are skipped."""
    reason = redact(reason)
    with session_scope(ctx.sessions) as s:
        src = s.get(m.Source, source_id)
        if src is None:
            return
        src.status, src.error = "failed", reason
        for b in s.scalars(select(m.Build).where(m.Build.source_id == source_id, m.Build.status == "pending")):
            b.status, b.reason, b.message = "skipped", "source_unavailable", reason[:2000]
            b.finished_at = _utcnow()


def fail_run(ctx: Context, run_id: int, reason: str) -> None:
    """A run that cannot start (its recipe no longer validates, a bug): ``failed`` with a note; nothing re-sends it.

    The sweeper re-sends the start of ``pending`` runs only, so a run whose start
    failed for a reason that will not pass is closed here instead of being retried
    every sweep for ever.
    """
    reason = redact(reason)
    with session_scope(ctx.sessions) as s:
        run = s.get(m.Run, run_id)
        if run is None or run.status in ("finished", "failed"):
            return
        run.status, run.finished_at = "failed", _utcnow()
        run.notes = [*(run.notes or []), f"the run could not start: {reason[:2000]}"]
        for b in s.scalars(select(m.Build).where(m.Build.run_id == run_id, m.Build.status.in_(("pending", "running")))):
            b.status, b.reason, b.message, b.finished_at = "skipped", "run_failed", reason[:2000], _utcnow()
        for src in s.scalars(select(m.Source).where(m.Source.run_id == run_id, m.Source.status == "pending")):
            src.status, src.error = "failed", reason
