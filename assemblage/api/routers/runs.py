"""/runs: submit a recipe, follow a run, see its coverage."""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, HTTPException, Request, status
from sqlalchemy import func, select

from assemblage.api.deps import DispatcherDep, ReadToken, SessionDep, SettingsDep, SubmitToken
from assemblage.api.schemas import CellOut, CoverageOut, IdPath, RunCreated, RunOut
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
        "422": {"description": "The recipe does not validate: every problem with its place in the recipe",
                "content": {"application/json": {"schema": {"type": "object", "properties": {"detail": {
                    "type": "array", "items": {"type": "object", "properties": {
                        "location": {"type": "string"}, "message": {"type": "string"}}}}}}}}},
        "413": {"description": "The recipe is larger than 1 MiB"},
        "415": {"description": "Neither YAML nor JSON"},
    },
}


def _problems(exc: RecipeError) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                         [{"location": p.location, "message": p.message} for p in exc.problems])


async def _read_recipe(request: Request):
    from assemblage.recipes.load import parse_recipe, parse_recipe_text

    body = await request.body()
    if len(body) > MAX_RECIPE_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "a recipe is at most 1 MiB")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _problems(RecipeError([Problem("", "the recipe is not UTF-8")])) from None
    if "\x00" in text:
        raise _problems(RecipeError([Problem("", "the recipe contains a NUL character")]))
    try:
        if ctype in YAML_TYPES:
            return parse_recipe_text(text), text
        if ctype == "application/json":
            try:
                data = json.loads(text)
            except ValueError as exc:
                raise RecipeError([Problem("", f"not valid JSON: {exc}")]) from None
            return parse_recipe(data), text
    except RecipeError as exc:
        raise _problems(exc) from None
    raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send the recipe as application/yaml or application/json")


def _local_sources_inside(recipe, root) -> list[Problem]:
    """A submitted recipe may name local folders and files only under the service's source root.

    Otherwise any user could have workers read (and publish the builds of) any folder they can see.
    Local git repositories are held to the same rule.
    """
    from pathlib import Path

    from assemblage.recipes.models import ArchiveSource, GitSource, PathSource

    problems = []
    for i, src in enumerate(recipe.sources):
        if isinstance(src, PathSource):
            field, ref = "path", src.path
        elif isinstance(src, ArchiveSource) and "://" not in src.archive:
            field, ref = "archive", src.archive
        elif isinstance(src, GitSource) and "://" not in src.git and not src.git.startswith("git@"):
            field, ref = "git", src.git
        else:
            continue
        target = (root / Path(ref).expanduser()).resolve()
        if not target.is_relative_to(root):
            problems.append(Problem(f"sources[{i}].{field}", f"must be inside the service's source root ({ref})"))
    return problems


@router.post("", status_code=status.HTTP_201_CREATED, response_model=RunCreated, openapi_extra=_RECIPE_BODY,
             summary="Submit a recipe: a run with one build per source x configuration")
async def create_run(request: Request, token: SubmitToken, settings: SettingsDep, dispatcher: DispatcherDep) -> RunCreated:
    from starlette.concurrency import run_in_threadpool

    from assemblage.pipeline.steps import Context, create_run as create

    recipe, text = await _read_recipe(request)
    outside = _local_sources_inside(recipe, settings.source_root.resolve())
    if outside:
        raise _problems(RecipeError(outside))
    ctx = Context(sessions=request.app.state.sessions, store=request.app.state.store,
                  cache_dir=settings.cache_dir, worker="api")
    base = settings.source_root.resolve()
    run_id = await run_in_threadpool(lambda: create(ctx, recipe, text, base, expand=False))  # expanded by a task
    # create() committed: the workers will find every row
    try:
        await run_in_threadpool(dispatcher.send, "start", run_id)
    except Exception as exc:  # noqa: BLE001 - the run is recorded; the sweeper sends it when the broker is back
        log.warning("run %s recorded, but the broker refused its start task: %s", run_id, exc)
    return RunCreated(id=run_id, status="pending")


@router.get("/{run_id}", response_model=RunOut, summary="A run: status and build counts by status")
def get_run(run_id: IdPath, s: SessionDep, token: ReadToken) -> RunOut:
    run = s.get(m.Run, run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id}")
    counts = dict(s.execute(select(m.Build.status, func.count()).where(m.Build.run_id == run_id)
                            .group_by(m.Build.status)).all())
    binaries = s.scalar(select(func.count()).select_from(m.Binary).where(m.Binary.run_id == run_id)) or 0
    return RunOut(id=run.id, recipe=run.recipe.name, status=run.status, notes=list(run.notes or []),
                  created_at=run.created_at, started_at=run.started_at, finished_at=run.finished_at,
                  builds=counts, total=sum(counts.values()), binaries=binaries)


@router.get("/{run_id}/coverage", response_model=CoverageOut,
            summary="Source x configuration cells with status and failure reason")
def coverage(run_id: IdPath, s: SessionDep, token: ReadToken) -> CoverageOut:
    from assemblage.pipeline.report import run_report

    try:
        rep = run_report(s, run_id)
    except LookupError:
        raise HTTPException(404, f"no run {run_id}") from None
    return CoverageOut(run=run_id, sources=rep.sources, configs=rep.configs,
                       cells=[CellOut.model_validate(c) for c in rep.cells])
