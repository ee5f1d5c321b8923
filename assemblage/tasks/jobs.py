"""The Celery tasks: start a run, fetch a source, build one source x configuration.

Every task takes IDs, re-reads its rows, copes with rows that vanished, and is
safe to deliver twice: a build is *claimed* (status running, this process's id,
a fresh heartbeat) in one transaction, so a second copy of the message finds it
finished (and returns) or running in a live process (and drops out). Retries
with backoff are for transient failures only (database connection, S3 5xx,
network); a compile error is a build status, never an exception.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any

import kombu.exceptions
from celery.exceptions import Reject, SoftTimeLimitExceeded
from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError

from assemblage.db import models as m
from assemblage.db.session import session_scope
from assemblage.errors import AssemblageError
from assemblage.pipeline import states
from assemblage.pipeline.cancel import CancelWatch
from assemblage.pipeline.steps import complete_crawl, crawl_run_source, execute_build, expand_run, fetch_run_source
from assemblage.storage.s3 import TransientStorageError
from assemblage.tasks.app import celery_app, send
from assemblage.tasks.drain import HandBack, handback_point
from assemblage.tasks.runtime import Heartbeat, build_heartbeat, is_alive, process_id, runtime, touch
from assemblage.urls import redact

__all__ = [
    "start_run",
    "fetch",
    "crawl",
    "build",
    "export",
    "noop",
    "TRANSIENT",
    "claim_build",
    "claim_export",
    "send_build",
    "send_crawl",
    "send_fetch",
    "send_start",
]

log = logging.getLogger(__name__)

# Failures that may pass: retried with backoff. Anything else is recorded on the build and not retried.
TRANSIENT: tuple[type[BaseException], ...] = (
    OperationalError,  # database connection refused, lost, lock timeout
    InterfaceError,
    TransientStorageError,  # S3 5xx, throttling, connection
    ConnectionError,
    TimeoutError,
    kombu.exceptions.OperationalError,  # broker connection
)

_RETRY: dict[str, Any] = {
    "autoretry_for": TRANSIENT,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
}


def _settings():
    return celery_app.conf.assemblage_settings


# ------------------------------------------------------------------ sending (after commit)


def send_start(run_id: int) -> None:
    send("start", run_id)


def send_fetch(source_id: int) -> None:
    send("fetch", source_id)


def send_crawl(crawl_id: int) -> None:
    send("crawl", crawl_id)


def send_build(build_id: int, config: str) -> None:
    send("build", build_id, config)


# ------------------------------------------------------------------ tasks


@celery_app.task(
    bind=True,
    name="assemblage.start_run",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
    time_limit=300,
    **_RETRY,
)
def start_run(self, run_id: int) -> int:
    """Expand a run into sources and builds, mark it running, send one fetch per source. Returns fetches sent.

    A failure that will not pass by retrying (the stored recipe no longer
    validates, a bug) fails the run with a note instead of raising: a raised
    task leaves the run ``pending``, and the sweeper would send it again every
    sweep for ever. Transient failures (database, broker) are retried.
    """
    rt = runtime(_settings())
    try:
        expand_run(rt.context(), run_id)  # idempotent: a second delivery finds the run expanded
    except TRANSIENT:
        raise
    except Exception as exc:  # noqa: BLE001 - see the docstring
        _log_failure(f"run {run_id} cannot start", exc)
        states.fail_run(rt.sessions, run_id, _reason(exc))
        return 0
    states.start_run(rt.sessions, run_id)  # a start delivered twice, or after a cancel, changes nothing
    with session_scope(rt.sessions) as s:
        run = s.get(m.Run, run_id)
        if run is None or run.status != "running":
            return 0  # gone, or ended before it started (cancelled, failed)
        sources = list(
            s.scalars(
                select(m.Source.id)
                .where(m.Source.run_id == run_id, m.Source.status != "failed")
                .order_by(m.Source.position)
            )
        )
        crawls = list(
            s.scalars(
                select(m.Crawl.id)
                .where(m.Crawl.run_id == run_id, m.Crawl.status.in_(("pending", "running")))
                .order_by(m.Crawl.id)
            )
        )
    for sid in sources:  # committed above: the fetches will find the run running
        send_fetch(sid)
    for cid in crawls:
        send_crawl(cid)
    if not sources and not crawls:
        states.finish_run(rt.sessions, run_id)  # nothing to fetch (every source failed to expand)
    return len(sources) + len(crawls)


@celery_app.task(
    bind=True,
    name="assemblage.crawl",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
    time_limit=6 * 3600,
    **_RETRY,
)
def crawl(self, crawl_id: int) -> int:
    """Run a GitHub crawl (resumable) and send a fetch for every repository it added. Returns sources added.

    A rate limit longer than ``github_max_wait`` or a GitHub outage retries the task later
    (with the wait GitHub asked for); the crawl resumes from its last committed step.
    """
    from assemblage.pipeline.crawl import GithubUnavailable, RateLimited

    rt = runtime(_settings())
    ctx = rt.context()
    verdict = lease(rt, m.Crawl, crawl_id, final=("finished", "failed"))
    if verdict in ("missing", "busy"):
        return 0
    try:
        if verdict == "go":
            with lease_heartbeat(rt):
                crawl_run_source(ctx, crawl_id, rt.settings)
        complete_crawl(ctx, crawl_id)  # idempotent: a copy delivered after a crash finishes the job
    except RateLimited as exc:
        release(rt, m.Crawl, crawl_id)  # waiting for GitHub is not a dead worker: the sweep leaves it
        raise self.retry(countdown=max(1.0, exc.wait), max_retries=None) from None
    except GithubUnavailable:
        release(rt, m.Crawl, crawl_id)
        raise self.retry(countdown=60, max_retries=None) from None
    with session_scope(rt.sessions) as s:
        # every source of the crawl still waiting for its fetch: a crash between adding the
        # sources and sending their fetches must not leave them unsent (a fetch sent twice is
        # harmless: it is leased)
        added = list(
            s.scalars(
                select(m.Source.id)
                .join(m.CrawlRepo, m.CrawlRepo.source_id == m.Source.id)
                .where(m.CrawlRepo.crawl_id == crawl_id, m.Source.status == "pending")
                .order_by(m.Source.id)
            )
        )
    for sid in added:  # committed by complete_crawl
        send_fetch(sid)
    with session_scope(rt.sessions) as s:
        c = s.get(m.Crawl, crawl_id)
        run_id = c.run_id if c is not None else None
    if run_id is not None:
        states.finish_run(rt.sessions, run_id)
    return len(added)


@celery_app.task(
    bind=True,
    name="assemblage.fetch",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
    time_limit=3600,
    **_RETRY,
)
def fetch(self, source_id: int) -> int:
    """Fetch and pin one source, then send its pending builds. Returns how many builds were sent.

    Fetch failures fail the source inside :func:`fetch_run_source`; anything
    else that will not pass by retrying fails it here, so the sweeper does not
    send the fetch again and again.
    """
    rt = runtime(_settings())
    ctx = rt.context()
    if lease(rt, m.Source, source_id, final=("fetched", "failed")) == "busy":
        return 0  # a live process is fetching it; if that process dies, the sweep sends it again
    try:
        with lease_heartbeat(rt):
            fetch_run_source(ctx, source_id)
    except TRANSIENT:
        release(rt, m.Source, source_id)
        raise
    except Exception as exc:  # noqa: BLE001 - see the docstring
        _log_failure(f"source {source_id} cannot be fetched", exc)
        states.fail_source(rt.sessions, source_id, _reason(exc))
    with rt.sessions() as s:
        run_id = s.scalar(select(m.Source.run_id).where(m.Source.id == source_id))
    if run_id is None:
        return 0
    todo = states.ready_builds(rt.sessions, source_id)
    for bid, config in todo:
        send_build(bid, config)
    states.finish_run(rt.sessions, run_id)
    return len(todo)


def _log_failure(what: str, exc: BaseException) -> None:
    if isinstance(exc, AssemblageError):
        log.warning("%s: %s", what, redact(str(exc)))
    else:
        import traceback

        log.error("%s:\n%s", what, redact("".join(traceback.format_exception(exc))))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, AssemblageError):
        return redact(str(exc))
    return redact(f"{type(exc).__name__}: {exc} (a bug of Assemblage; the worker's log has the traceback)")


def lease(rt, model, row_id: int, *, final: tuple[str, ...]) -> str:
    """Hold a fetch's source or a crawl for this process: "go", "missing", "busy" or its final status.

    The row names this process (``worker``) while the task runs and the process's heartbeat
    says it is alive; a row whose worker went silent is sent again by the sweep
    (:func:`assemblage.tasks.coordinator.requeue_dead_leases`). Builds and exports have
    their own claims (they also move a status).
    """
    me = process_id()
    with session_scope(rt.sessions) as s:
        row = s.get(model, row_id, with_for_update=True)
        if row is None:
            return "missing"
        if row.status in final:
            return row.status
        if row.worker and row.worker != me and is_alive(s, row.worker, rt.settings.worker_dead_after):
            return "busy"
        row.worker = me
        touch(s, wid=me, kind="process")
        return "go"


def release(rt, model, row_id: int) -> None:
    """This process lets go of a leased row (a retry comes later; not a dead worker)."""
    with session_scope(rt.sessions) as s:
        row = s.get(model, row_id)
        if row is not None and row.worker == process_id():
            row.worker = None


@contextmanager
def lease_heartbeat(rt):
    """This process's heartbeat while it holds a lease."""
    hb = Heartbeat(rt.sessions, wid=process_id(), kind="process", interval=rt.settings.heartbeat_interval).start()
    try:
        yield
    finally:
        hb.stop()


def claim_build(rt, build_id: int) -> tuple[str, int | None]:
    """Take a build for this process: ("go", run) or why not ("missing", a final status, "busy")."""
    me = process_id()
    with session_scope(rt.sessions) as s:
        b = s.get(m.Build, build_id, with_for_update=True)
        if b is None:
            return "missing", None
        if b.status == "running" and b.worker != me and is_alive(s, b.worker, rt.settings.worker_dead_after):
            return "busy", b.run_id  # a live process has it; if that process dies, the sweep sends it again
        touch(s, wid=me, kind="process", build_id=build_id)  # with the claim: the sweep sees it alive at once
        if not states.claim_build(b, me):
            return b.status, b.run_id  # it has ended (a copy of the message; cancelled)
        return "go", b.run_id


# retries after transient failures (database, broker, store): ASSEMBLAGE_TASK_MAX_RETRIES
@celery_app.task(
    bind=True,
    name="assemblage.build",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=_settings().task_max_retries,
    **_RETRY,
)
def build(self, build_id: int) -> str:
    """Build, analyse and store one source x configuration (the same step as ``assemblage build``)."""
    rt = runtime(_settings())
    verdict, run_id = claim_build(rt, build_id)
    if verdict != "go":
        log.info("build %s: %s, nothing to do", build_id, verdict)
        if verdict in m.FINAL_STATUSES and run_id is not None:
            states.finish_run(rt.sessions, run_id)  # a redelivered copy: make sure the run is closed
        return verdict
    assert run_id is not None  # a build that was claimed has its run
    ctx = rt.context()
    log.info("build %s started", build_id)
    try:
        # CancelWatch: a cancelled run (POST /runs/{id}/cancel) kills this build within a heartbeat interval
        with (
            build_heartbeat(rt, build_id),
            handback_point(),
            CancelWatch(rt.sessions, build_id, interval=rt.settings.heartbeat_interval),
        ):
            status = execute_build(ctx, build_id)
    except HandBack:  # this worker is stopping: the build goes back to pending, its message to the queue
        handed = states.hand_back_build(rt.sessions, build_id, process_id())
        log.warning("build %s handed back (worker stopping)%s", build_id, "" if handed else ": it had finished")
        if handed:
            raise Reject("handed back: the worker is stopping", requeue=True) from None
        return "handed_back"
    except TRANSIENT:
        raise  # retried with backoff; the claim lets the retry (or the sweep's copy) take it again
    except SoftTimeLimitExceeded as exc:
        try:
            status = states.end_build(
                rt.sessions,
                build_id,
                "timed_out",
                "task_time_limit",
                f"the task ran out of time ({type(exc).__name__})",
            )
        except Exception:  # the database is away: the build stays running, and the sweep sends it again
            log.exception("could not record the time limit of build %s", build_id)
            status = "timed_out"
    except Exception as exc:  # noqa: BLE001 - a bug of ours, not a compile error: recorded on the build, never retried
        status = states.record_internal_error(rt.sessions, build_id, exc)
    log.info("build %s finished: %s", build_id, status)
    states.finish_run(rt.sessions, run_id)
    return status


def claim_export(rt, export_id: int) -> str:
    """Take an export for this process: "go", or why not ("missing", "finished", "failed", "busy")."""
    me = process_id()
    with session_scope(rt.sessions) as s:
        row = s.get(m.Export, export_id, with_for_update=True)
        if row is None:
            return "missing"
        if row.status in ("finished", "failed"):
            return row.status
        if row.status == "running" and row.worker != me and is_alive(s, row.worker, rt.settings.worker_dead_after):
            return "busy"  # a live process has it; if that process dies, the sweep sends it again
        row.status, row.worker, row.attempts = "running", me, row.attempts + 1
        row.started_at = row.started_at or m.utcnow()
        row.updated_at = m.utcnow()
        touch(s, wid=me, kind="process")
        return "go"


@celery_app.task(
    bind=True, name="assemblage.export", acks_late=True, reject_on_worker_lost=True, max_retries=8, **_RETRY
)
def export(self, export_id: int) -> str:
    """Run one export job (the same export as ``assemblage export``), pack it and store it."""
    from assemblage.corpus.jobs import run_export_job

    rt = runtime(_settings())
    verdict = claim_export(rt, export_id)
    if verdict != "go":
        return verdict
    hb = Heartbeat(rt.sessions, wid=process_id(), kind="process", interval=rt.settings.heartbeat_interval).start()
    try:
        return run_export_job(
            rt.sessions, rt.store, rt.settings.database_url, export_id, work_root=rt.settings.work_root
        )
    except TRANSIENT:
        raise  # retried with backoff; the heartbeat row goes with this attempt, so the retry may claim it
    except SoftTimeLimitExceeded:
        _fail_export(rt, export_id, "the export ran out of time (ASSEMBLAGE_TASK_TIME_LIMIT)")
        return "failed"
    except Exception as exc:  # a bug of ours: recorded on the export, never retried
        log.exception("export %s crashed", export_id)
        _fail_export(rt, export_id, f"assemblage crashed: {exc!r} (please report it)")
        return "failed"
    finally:
        hb.stop()


def _fail_export(rt, export_id: int, message: str) -> None:
    with session_scope(rt.sessions) as s:
        row = s.get(m.Export, export_id)
        if row is not None and row.status not in ("finished", "failed"):
            row.status, row.error, row.finished_at = "failed", message[:4000], m.utcnow()


@celery_app.task(name="assemblage.noop", acks_late=True, ignore_result=True)
def noop(*_args: Any) -> None:
    """Does nothing: measures the broker's dispatch rate (bench/service.py)."""


# ------------------------------------------------------------------ worker life

from assemblage.tasks import lifecycle  # noqa: E402,F401 - logging, heartbeats, draining (signal handlers)
