"""/runs: submit a recipe, follow a run, see its coverage."""

from __future__ import annotations

import logging
from typing import Annotated, Literal

import anyio
import anyio.to_process
from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel
from sqlalchemy import func, select

from assemblage.api.deps import DispatcherDep, ReadToken, SessionDep, SettingsDep, SubmitToken
from assemblage.api.schemas import (
    CellOut,
    CoverageOut,
    Cursor,
    Filter,
    IdPath,
    Limit,
    RunCreated,
    RunOut,
    decode_cursor,
    encode_cursor,
)
from assemblage.db import models as m
from assemblage.errors import Problem, RecipeError

router = APIRouter(prefix="/runs", tags=["runs"])
log = logging.getLogger(__name__)

MAX_RECIPE_BYTES = 1 << 20
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")

_RECIPE_BODY = {
    "requestBody": {
        "required": True,
        "description": "A recipe, as YAML (`Content-Type: application/yaml`) or JSON.",
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
    },
    "responses": {
        # problem details (assemblage/api/problems.py); `errors` holds each problem with its place in the recipe
        "422": {
            "description": "The recipe does not validate: `errors` lists every problem with its place in the "
            "recipe (matrix.opt, sources[0].path)"
        },
        "413": {"description": "The recipe is larger than 1 MiB (or the body than ASSEMBLAGE_MAX_REQUEST_BYTES)"},
        "415": {"description": "Neither YAML nor JSON"},
    },
}


def _problems(exc: RecipeError) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT, [{"location": p.location, "message": p.message} for p in exc.problems]
    )


def _parse(ctype: str, body: bytes):
    """The recipe in a request body (run in a worker process: parsing a large recipe takes seconds)."""
    from assemblage.recipes.load import parse_recipe_json, parse_recipe_text

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RecipeError([Problem("", "the recipe is not UTF-8")]) from None
    if "\x00" in text:
        raise RecipeError([Problem("", "the recipe contains a NUL character")])
    if ctype in YAML_TYPES:
        return parse_recipe_text(text), text
    return parse_recipe_json(text), text


def check_submitted(recipe, policy, max_builds: int) -> list[Problem]:
    """What the service refuses in a recipe that validates, each problem located.

    - Local sources (paths, local archives and git repositories, ``file://`` URLs)
      resolve inside the source root, symlinks resolved. Otherwise any user could
      have workers read (and publish the builds of) any folder they can see. The
      worker checks again before it fetches.
    - URLs whose host is an IP address the fetch policy refuses, and ssh (the
      service does not fetch over it), are refused now; host names are checked by
      the worker on the address they resolve to when it connects.
    - Sources x configurations stay within ``max_builds`` (a GitHub search or a Debian
      selector counts as its ``limit``).
    """
    from assemblage.errors import FetchRefusedError
    from assemblage.pipeline.failures import sources_counted, too_many_builds
    from assemblage.recipes.matrix import expand_matrix
    from assemblage.sources import kind_of
    from assemblage.sources.git import is_remote
    from assemblage.urls import is_url, redact

    problems = []
    for i, src in enumerate(recipe.sources):
        local = kind_of(src).local(src)
        if local is not None:
            field, ref = local
            try:
                policy.local(ref, policy.source_root)
            except FetchRefusedError:
                problems.append(
                    Problem(f"sources[{i}].{field}", f"must be inside the service's source root ({redact(ref)})")
                )
            continue
        remote = kind_of(src).remote(src)
        if remote is None:
            continue
        field, url = remote
        if field == "git" and is_remote(url) and (not is_url(url) or url.lower().startswith("ssh://")):
            problems.append(Problem(f"sources[{i}].git", "the service does not fetch over ssh (use an https URL)"))
            continue
        refused = policy.check_literal(url)
        if refused:
            problems.append(Problem(f"sources[{i}].{field}", refused))
    configs, _ = expand_matrix(recipe)
    count = sum(sources_counted(s) for s in recipe.sources)
    if count * len(configs) > max_builds:
        problems.append(too_many_builds(count, len(configs), max_builds))
    return problems


def parse_and_check(ctype: str, body: bytes, policy, max_builds: int):
    """("ok", recipe, text) or ("problems", [(location, message)], None); runs in a worker process."""
    try:
        recipe, text = _parse(ctype, body)
        problems = check_submitted(recipe, policy, max_builds)
    except RecipeError as exc:
        problems = exc.problems
    if problems:
        return "problems", [(p.location, p.message) for p in problems], None
    return "ok", recipe, text


_limiter: list[anyio.CapacityLimiter] = []


def _parsers() -> anyio.CapacityLimiter:
    """At most two recipes parsed at once (each in its own process), whatever the number of submitters."""
    if not _limiter:
        _limiter.append(anyio.CapacityLimiter(2))
    return _limiter[0]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=RunCreated,
    openapi_extra=_RECIPE_BODY,
    summary="Submit a recipe: a run with one build per source x configuration",
)
async def create_run(
    request: Request, token: SubmitToken, settings: SettingsDep, dispatcher: DispatcherDep
) -> RunCreated:
    from starlette.concurrency import run_in_threadpool

    from assemblage.pipeline.context import Context
    from assemblage.pipeline.steps import create_run as create

    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in YAML_TYPES and ctype != "application/json":
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send the recipe as application/yaml or application/json"
        )
    body = await request.body()  # the app's body limit has refused anything past max_request_bytes already
    if len(body) > MAX_RECIPE_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "a recipe is at most 1 MiB")
    # in a worker process: a large recipe takes seconds of CPU to parse, and neither the event loop nor the
    # threads that answer other requests (/health) may wait for it. Measured with three ~1 MiB recipes
    # submitted at once (tests/security/test_dos.py, a busy 2-core machine): in a thread, the slowest of the
    # health checks meanwhile took 4.0 s (the parsing threads held the GIL); in processes, 1.4 s; on the
    # event loop, as before, 24.5 s
    outcome, recipe, text = await anyio.to_process.run_sync(
        parse_and_check, ctype, body, request.app.state.fetch_policy, settings.max_builds_per_run, limiter=_parsers()
    )
    if outcome == "problems":
        raise _problems(RecipeError([Problem(loc, msg) for loc, msg in recipe]))
    ctx = Context(
        sessions=request.app.state.sessions, store=request.app.state.store, cache_dir=settings.cache_dir, worker="api"
    )
    base = settings.source_root.resolve()
    run_id = await run_in_threadpool(  # expanded by a task
        lambda: create(ctx, recipe, text, base, expand=False, submitted_by=token.id)
    )
    # create() committed: the workers will find every row
    try:
        await run_in_threadpool(dispatcher.send, "start", run_id)
    except Exception as exc:  # noqa: BLE001 - the run is recorded; the sweeper sends it when the broker is back
        log.warning("run %s recorded, but the broker refused its start task: %s", run_id, exc)
    return RunCreated(id=run_id, status="pending")


RunStatus = Literal["pending", "running", "finished", "failed", "cancelled", "interrupted"]


class RunPage(BaseModel):
    items: list[RunOut]
    next: str | None


def run_outs(s, runs: list[m.Run]) -> list[RunOut]:
    """The runs with their build counts by status and their binaries (those of the builds they reused too)."""
    ids = [r.id for r in runs]
    counts: dict[int, dict[str, int]] = {i: {} for i in ids}
    binaries: dict[int, int] = {}
    unsandboxed: dict[int, int] = {}
    if ids:
        for rid, st, n in s.execute(
            select(m.Build.run_id, m.Build.status, func.count())
            .where(m.Build.run_id.in_(ids))
            .group_by(m.Build.run_id, m.Build.status)
        ):
            counts[rid][st] = n
        # a reused build's binaries are those of the build it reused (builds.reused_from_id)
        owner = func.coalesce(m.Build.reused_from_id, m.Build.id)
        binaries = dict(
            s.execute(
                select(m.Build.run_id, func.count(m.Binary.id.distinct()))
                .join(m.Binary, m.Binary.build_id == owner)
                .where(m.Build.run_id.in_(ids))
                .group_by(m.Build.run_id)
            ).all()
        )
        unsandboxed = dict(
            s.execute(
                select(m.Build.run_id, func.count())
                .where(m.Build.run_id.in_(ids), m.Build.sandboxed.is_(False))
                .group_by(m.Build.run_id)
            ).all()
        )
    return [
        RunOut(
            id=r.id,
            recipe=r.recipe.name,
            status=r.status,
            notes=list(r.notes or []),
            created_at=r.created_at,
            started_at=r.started_at,
            finished_at=r.finished_at,
            builds=counts[r.id],
            total=sum(counts[r.id].values()),
            binaries=binaries.get(r.id, 0),
            unsandboxed=unsandboxed.get(r.id, 0),
        )
        for r in runs
    ]


@router.get("", response_model=RunPage, summary="Runs, filtered; ordered by id, paged by cursor")
def list_runs(
    s: SessionDep,
    token: ReadToken,
    status: Annotated[list[RunStatus] | None, Query(description="repeat for several")] = None,
    recipe: Annotated[Filter, Query(description="the recipe's name")] = None,
    limit: Limit = 100,
    after: Cursor = None,
) -> RunPage:
    q = select(m.Run).where(m.Run.id > decode_cursor(after))
    if status:
        q = q.where(m.Run.status.in_(sorted(set(status))))
    if recipe is not None:
        q = q.join(m.Recipe, m.Run.recipe_id == m.Recipe.id).where(m.Recipe.name == recipe)
    rows = list(s.scalars(q.order_by(m.Run.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return RunPage(items=run_outs(s, rows), next=encode_cursor(rows[-1].id) if more else None)


@router.get("/{run_id}", response_model=RunOut, summary="A run: status and build counts by status")
def get_run(run_id: IdPath, s: SessionDep, token: ReadToken) -> RunOut:
    run = s.get(m.Run, run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id}")
    return run_outs(s, [run])[0]


class CancelOut(RunOut):
    queued_cancelled: int  # pending builds that will never start
    running_stopped: int  # running builds whose workers were told to stop them


@router.post(
    "/{run_id}/cancel",
    response_model=CancelOut,
    summary="Cancel a run: queued builds never start, running builds are stopped",
    description="Every pending build becomes `skipped` (reason `cancelled`) and never starts; a running "
    "build is killed by its worker within a heartbeat interval and its result dropped; "
    "the run ends `cancelled`. Cancelling a cancelled run changes nothing (200). A submit "
    "token cancels the runs it submitted; an admin token any run.",
    responses={
        403: {"description": "The run was submitted by another token (and this one is not admin)"},
        404: {"description": "No such run"},
        409: {"description": "The run has ended (finished, failed or interrupted)"},
    },
)
def cancel(run_id: IdPath, request: Request, token: SubmitToken) -> CancelOut:
    from assemblage.pipeline.states import IllegalTransition, cancel_run

    sessions = request.app.state.sessions
    with sessions() as s:
        run = s.get(m.Run, run_id)
        if run is None:
            raise HTTPException(404, f"no run {run_id}")
        owner = run.submitted_by
    if token.scope != "admin" and owner != token.id:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"run {run_id} was submitted by another token: only that token or an admin token may cancel it",
        )
    try:
        outcome = cancel_run(sessions, run_id)
    except IllegalTransition as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"run {run_id} has ended ({exc.status}): nothing to cancel"
        ) from None
    if outcome is None:
        raise HTTPException(404, f"no run {run_id}")
    log.warning(
        "run %s cancelled by token %s (%s): %d queued, %d running build(s) stopped",
        run_id,
        token.id,
        token.name,
        outcome.queued,
        outcome.running,
    )
    with sessions() as s:
        out = run_outs(s, [s.get(m.Run, run_id)])[0]
    return CancelOut(**out.model_dump(), queued_cancelled=outcome.queued, running_stopped=outcome.running)


@router.get(
    "/{run_id}/coverage",
    response_model=CoverageOut,
    summary="Source x configuration cells with status and failure reason",
)
def coverage(run_id: IdPath, s: SessionDep, token: ReadToken) -> CoverageOut:
    from assemblage.pipeline.report import run_report

    try:
        rep = run_report(s, run_id)
    except LookupError:
        raise HTTPException(404, f"no run {run_id}") from None
    return CoverageOut(
        run=run_id, sources=rep.sources, configs=rep.configs, cells=[CellOut.model_validate(c) for c in rep.cells]
    )
