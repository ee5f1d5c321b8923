"""The life of a run and of its builds: every change of status is one function here, checked against a table.

::

    RUN     pending --start--> running --finish--> finished
            pending, running --fail--> failed | --interrupt--> interrupted | --cancel--> cancelled

    BUILD   pending --claim--> running --finish--> succeeded | failed | timed_out | no_binaries | skipped
            pending, running --skip--> skipped      (source unavailable, run cancelled, interrupted or failed)
            running --release--> pending             (handed back by a stopping worker; its worker went silent)

    SOURCE  pending --fetched--> fetched; pending --fail--> failed   (its pending builds are skipped)

The embedded mode (:mod:`assemblage.pipeline.embedded`), the Celery tasks (:mod:`assemblage.tasks.jobs`),
the sweep, the API's cancel and ``assemblage rebuild`` only decide *when* to call these functions.

:data:`RUN_RULES` and :data:`BUILD_RULES` say, for each event, the states it moves from (and to) and the
states in which it *stays*: it changes nothing and returns False, because the message came twice, or
came late, after the row ended another way (a cancel won the race; a build's result that arrives after
its run was cancelled is dropped, never written over the cancel). Any other state is a caller's bug,
or a request that cannot be granted (cancelling a run that finished): :class:`IllegalTransition`.
Every build event has something to do or to skip in every state, since any build message may be
delivered twice or after a cancel; what is illegal there is asking for a status that is no result.

The functions on rows (``s``, a locked row) change it inside the caller's transaction, so that a
build's result and its binaries are written in one; the others open their own transaction.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import ColumnElement, ScalarResult, func, select
from sqlalchemy.orm import Session, sessionmaker

from assemblage.db import models as m
from assemblage.db.session import session_scope
from assemblage.errors import AssemblageError
from assemblage.urls import redact

__all__ = [
    "BUILD_RULES",
    "CANCELLED",
    "CancelOutcome",
    "IllegalTransition",
    "RUN_ENDED",
    "RUN_RULES",
    "Rule",
    "cancel_run",
    "claim_build",
    "end_build",
    "fail_run",
    "fail_source",
    "finish_build",
    "finish_run",
    "hand_back_build",
    "interrupt_run",
    "ready_builds",
    "record_internal_error",
    "release_build",
    "skip_build",
    "source_fetched",
    "start_run",
    "take_build",
]

log = logging.getLogger(__name__)

CANCELLED = "cancelled"
CANCEL_MESSAGE = "the run was cancelled"
INTERRUPT_MESSAGE = "the run was interrupted"

RUN_STATUSES: Final = ("pending", "running", "finished", "failed", "interrupted", "cancelled")
RUN_ENDED: Final = frozenset({"finished", "failed", "interrupted", "cancelled"})
BUILD_FINAL: Final = m.FINAL_STATUSES


class IllegalTransition(AssemblageError):
    """A change of status the table does not allow from the row's state (a bug, or a request refused)."""

    def __init__(self, what: str, row_id: int, event: str, status: str, allowed: list[str]) -> None:
        self.what, self.row_id, self.event, self.status = what, row_id, event, status
        super().__init__(
            f"cannot {event} {what} {row_id}: it is {status} (only a {what} that is "
            f"{' or '.join(allowed) or 'nothing'} can)"
        )


@dataclass(frozen=True)
class Rule:
    """One event: from which states it moves (to which), and in which it stays (changes nothing)."""

    moves: Mapping[str, str]  # from -> to; "*" as the target: the status the caller gives (a build's result)
    stays: frozenset[str] = frozenset()


RUN_RULES: Final[Mapping[str, Rule]] = {
    # a start delivered twice, or after its run was cancelled or failed, does nothing
    "start": Rule({"pending": "running"}, frozenset({"running", "finished", "failed", "cancelled"})),
    # "close it if nothing is left": a run not started yet is not finished either (a fetch sent again
    # by the sweep may arrive before its start); an ended run stays as it ended
    "finish": Rule({"running": "finished"}, frozenset({"pending"}) | RUN_ENDED),
    "fail": Rule({"pending": "failed", "running": "failed"}, frozenset({"failed", "finished", "cancelled"})),
    "interrupt": Rule({"pending": "interrupted", "running": "interrupted"}, frozenset({"interrupted", "cancelled"})),
    "cancel": Rule({"pending": CANCELLED, "running": CANCELLED}, frozenset({CANCELLED})),
}

BUILD_RULES: Final[Mapping[str, Rule]] = {
    # running -> running: taken over from a process that died (the caller checked it is dead)
    "claim": Rule({"pending": "running", "running": "running"}, BUILD_FINAL),
    # pending: the sweep sent it again while this attempt still ran; the first result counts
    "finish": Rule({"pending": "*", "running": "*"}, BUILD_FINAL),
    "skip": Rule({"pending": "skipped", "running": "skipped"}, BUILD_FINAL),
    "release": Rule({"running": "pending"}, frozenset({"pending"}) | BUILD_FINAL),
}


def _move(rules: Mapping[str, Rule], what: str, row: m.Run | m.Build, event: str, to: str | None = None) -> bool:
    """Apply ``event`` to ``row`` (its ``status`` only): True when it moved, False when it stays."""
    rule = rules[event]
    target = rule.moves.get(row.status)
    if target is None:
        if row.status in rule.stays:
            return False
        raise IllegalTransition(what, row.id, event, row.status, sorted(rule.moves))
    if target == "*":
        if to not in BUILD_FINAL:
            raise ValueError(f"{what} {row.id}: {to!r} is not a result (one of {', '.join(sorted(BUILD_FINAL))})")
        target = to
    row.status = target
    return True


def _now() -> datetime:
    return m.utcnow()


# ---------------------------------------------------------------- runs


def start_run(sessions: sessionmaker[Session], run_id: int) -> bool:
    """pending -> running. False: it was running already, or has ended (a start delivered late)."""
    with session_scope(sessions) as s:
        run = s.get(m.Run, run_id, with_for_update=True)
        if run is None:
            return False
        if not _move(RUN_RULES, "run", run, "start"):
            return False
        run.started_at = _now()
        return True


def finish_run(sessions: sessionmaker[Session], run_id: int) -> bool:
    """running -> finished once nothing of it is left to do (no build pending or running, no crawl under way).

    Called after every step of a run; False while work is left, or when the run had not started or
    has ended another way (a cancelled run stays cancelled).
    """
    with session_scope(sessions) as s:
        run = s.get(m.Run, run_id, with_for_update=True)  # a cancel committing now is waited for, then seen
        if run is None or not run.expanded or run.status not in RUN_RULES["finish"].moves:
            return False
        left = s.scalar(
            select(func.count())
            .select_from(m.Build)
            .where(m.Build.run_id == run_id, m.Build.status.in_(("pending", "running")))
        )
        crawling = s.scalar(
            select(func.count())
            .select_from(m.Crawl)
            .where(m.Crawl.run_id == run_id, m.Crawl.status.in_(("pending", "running")))
        )
        unplaced = s.scalar(
            select(func.count())
            .select_from(m.CrawlRepo)
            .join(m.Crawl, m.CrawlRepo.crawl_id == m.Crawl.id)
            .where(
                m.Crawl.run_id == run_id,
                m.Crawl.status == "finished",
                m.CrawlRepo.status == "accepted",
                m.CrawlRepo.source_id.is_(None),
            )
        )
        if left or crawling or unplaced:
            return False
        if not _move(RUN_RULES, "run", run, "finish"):
            return False
        run.finished_at = _now()
        return True


def fail_run(sessions: sessionmaker[Session], run_id: int, reason: str) -> bool:
    """A run that cannot start (its recipe no longer validates, a bug): ``failed`` with a note; nothing re-sends it.

    The sweeper re-sends the start of ``pending`` runs only, so a run whose start failed for a
    reason that will not pass is closed here instead of being retried every sweep for ever.
    Its builds are skipped (``run_failed``), its sources not yet fetched failed.
    """
    reason = redact(reason)
    with session_scope(sessions) as s:
        run = s.get(m.Run, run_id, with_for_update=True)
        if run is None or not _move(RUN_RULES, "run", run, "fail"):
            return False
        run.finished_at = _now()
        run.notes = [*(run.notes or []), f"the run could not start: {reason[:2000]}"]
        for b in _open_builds(s, m.Build.run_id == run_id):
            skip_build(b, "run_failed", reason)
        for src in s.scalars(select(m.Source).where(m.Source.run_id == run_id, m.Source.status == "pending")):
            src.status, src.error = "failed", reason
        return True


def interrupt_run(sessions: sessionmaker[Session], run_id: int) -> int:
    """A run stopped by its user (Ctrl-C): its unfinished builds become ``skipped (interrupted)``; a rerun redoes them.

    Returns how many builds it stopped. A run cancelled meanwhile stays cancelled (0).
    """
    outcome = _stop_run(sessions, run_id, "interrupt")
    return 0 if outcome is None else outcome.queued + outcome.running


@dataclass(frozen=True)
class CancelOutcome:
    status: str  # the run's status after the call ("cancelled", or the status it had ended with)
    queued: int = 0  # pending builds that will never start
    running: int = 0  # running builds told to stop


def cancel_run(sessions: sessionmaker[Session], run_id: int) -> CancelOutcome | None:
    """Cancel ``run_id`` (see :mod:`assemblage.pipeline.cancel`). None when there is no such run; idempotent.

    Raises :class:`IllegalTransition` when the run has ended otherwise (finished, failed, interrupted).
    """
    return _stop_run(sessions, run_id, "cancel")


def _stop_run(sessions: sessionmaker[Session], run_id: int, event: str) -> CancelOutcome | None:
    """Cancel or interrupt: in one transaction (the run's row locked), its open builds skipped, the run ended.

    A cancel also fails the sources not yet fetched and the crawls not yet done and marks the run
    expanded, so that no fetch, crawl or start task delivered later adds work to it.
    """
    reason, message = (CANCELLED, CANCEL_MESSAGE) if event == "cancel" else ("interrupted", INTERRUPT_MESSAGE)
    with session_scope(sessions) as s:
        run = s.get(m.Run, run_id, with_for_update=True)
        if run is None:
            return None
        if not _move(RUN_RULES, "run", run, event):
            return CancelOutcome(run.status)
        now = _now()
        queued = running = 0
        for b in _open_builds(s, m.Build.run_id == run_id, lock=True):
            queued += b.status == "pending"
            running += b.status == "running"
            skip_build(b, reason, message, now=now)
        if event == "cancel":
            for src in s.scalars(select(m.Source).where(m.Source.run_id == run_id, m.Source.status == "pending")):
                src.status, src.error = "failed", message
            for crawl in s.scalars(
                select(m.Crawl).where(m.Crawl.run_id == run_id, m.Crawl.status.in_(("pending", "running")))
            ):
                crawl.status, crawl.error = "failed", message
            run.expanded = True  # a start task delivered later adds nothing
            run.started_at = run.started_at or now
        run.finished_at = now
        return CancelOutcome(run.status, queued, running)


# ---------------------------------------------------------------- sources


def source_fetched(src: m.Source) -> bool:
    """pending -> fetched (the caller writes what the fetch pinned). A failed source stays failed."""
    if src.status == "failed":
        return False
    src.status, src.error = "fetched", None
    return True


def fail_source(sessions: sessionmaker[Session], source_id: int, reason: str) -> None:
    """One source could not be fetched: ``failed`` with ``reason`` (redacted); its pending builds are skipped."""
    reason = redact(reason)
    with session_scope(sessions) as s:
        src = s.get(m.Source, source_id)
        if src is None:
            return
        src.status, src.error = "failed", reason
        for b in _open_builds(s, m.Build.source_id == source_id, statuses=("pending",)):
            skip_build(b, "source_unavailable", reason)


def ready_builds(sessions: sessionmaker[Session], source_id: int) -> list[tuple[int, str]]:
    """The builds a fetched source makes ready to run: (build id, configuration), pending ones, in id order.

    None when the source is not fetched (it failed, and its builds were skipped with it).
    """
    with sessions() as s:
        src = s.get(m.Source, source_id)
        if src is None or src.status != "fetched":
            return []
        return [
            (bid, config)
            for bid, config in s.execute(
                select(m.Build.id, m.Configuration.identifier)
                .join(m.Configuration, m.Build.configuration_id == m.Configuration.id)
                .where(m.Build.source_id == source_id, m.Build.status == "pending")
                .order_by(m.Build.id)
            ).all()
        ]


# ---------------------------------------------------------------- builds


def claim_build(b: m.Build, worker: str) -> bool:
    """pending (or running, taken over from a dead process) -> running, for ``worker``: one more attempt.

    False: the build has ended (a message delivered twice; a cancelled build never starts).
    The caller holds the row locked and, in the service, has checked that no live process holds it.
    """
    if not _move(BUILD_RULES, "build", b, "claim"):
        return False
    b.worker, b.started_at, b.attempts = worker, _now(), b.attempts + 1
    return True


def take_build(sessions: sessionmaker[Session], build_id: int, worker: str) -> str:
    """Claim ``build_id`` for ``worker`` in a transaction of its own: "running" (build it), else its status."""
    with session_scope(sessions) as s:
        b = s.get(m.Build, build_id, with_for_update=True)
        if b is None:
            return "missing"
        claim_build(b, worker)
        return b.status


def finish_build(b: m.Build, status: str, reason: str | None = None, message: str | None = None) -> bool:
    """pending or running -> ``status`` (a result: succeeded, failed, timed_out, no_binaries, skipped).

    False: the build had ended already (its run was cancelled, another attempt finished first):
    nothing may be written then, its binaries neither. The caller writes the rest of the result in
    the same transaction.
    """
    if not _move(BUILD_RULES, "build", b, "finish", status):
        return False
    b.reason, b.message, b.finished_at = reason, message, _now()
    return True


def skip_build(b: m.Build, reason: str, message: str, *, now: datetime | None = None) -> bool:
    """pending or running -> skipped with ``reason`` (source_unavailable, cancelled, interrupted, run_failed)."""
    if not _move(BUILD_RULES, "build", b, "skip"):
        return False
    b.reason, b.message, b.finished_at = reason, message[:2000], now or _now()
    return True


def release_build(b: m.Build) -> bool:
    """running -> pending, for another process to take (handed back, or its process went silent)."""
    if not _move(BUILD_RULES, "build", b, "release"):
        return False
    b.worker, b.started_at = None, None
    return True


def hand_back_build(sessions: sessionmaker[Session], build_id: int, worker: str) -> bool:
    """A running build of ``worker`` goes back to ``pending`` (the worker is stopping: its message is requeued).

    False when it is not that worker's any more, or has ended (it finished before the hand-back).
    """
    with session_scope(sessions) as s:
        b = s.get(m.Build, build_id, with_for_update=True)
        if b is None or b.worker != worker:
            return False
        return release_build(b)


def end_build(sessions: sessionmaker[Session], build_id: int, status: str, reason: str, message: str) -> str:
    """Finish ``build_id`` from outside its execution (a task's time limit, a crash) in a transaction of its own.

    Returns the build's status: ``status``, or the one it had when it had ended already (it stays).
    """
    with session_scope(sessions) as s:
        b = s.get(m.Build, build_id, with_for_update=True)
        if b is None:
            return "missing"
        finish_build(b, status, reason, message)
        return b.status


def record_internal_error(sessions: sessionmaker[Session], build_id: int, exc: BaseException) -> str:
    """A build that crashed Assemblage itself: failed, reason ``internal_error``, the traceback kept.

    Returns the build's status (the one it had when it had ended already).
    """
    log.exception("build %s crashed", build_id)
    text = "".join(traceback.format_exception(exc))
    message = f"assemblage crashed: {exc!r} (please report it)\n{text[-4000:]}"
    return end_build(sessions, build_id, "failed", "internal_error", message)


def _open_builds(
    s: Session, where: ColumnElement[bool], *, statuses: tuple[str, ...] = ("pending", "running"), lock: bool = False
) -> ScalarResult[m.Build]:
    q = select(m.Build).where(where, m.Build.status.in_(statuses))
    return s.scalars(q.with_for_update() if lock else q)
