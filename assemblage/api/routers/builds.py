"""/builds: builds, filtered; one build and its log."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import or_, select
from sqlalchemy.orm import joinedload

from assemblage.api.deps import ReadToken, SessionDep, StoreDep
from assemblage.api.schemas import MAX_ID, BuildOut, Cursor, IdPath, Limit, decode_cursor, encode_cursor
from assemblage.db import models as m
from assemblage.storage.base import read_chunks

router = APIRouter(prefix="/builds", tags=["builds"])


def build_out(b: m.Build) -> BuildOut:
    return BuildOut(
        id=b.id,
        run_id=b.run_id,
        source_id=b.source_id,
        source=b.source.label,
        config=b.configuration.identifier,
        status=b.status,
        reason=b.reason,
        message=b.message,
        build_system=b.build_system,
        worker=b.worker,
        dependencies=list(b.dependencies or []),
        dependency_image_digest=b.dependency_image_digest,
        attempts=b.attempts,
        duration=b.duration,
        analysis_duration=b.analysis_duration,
        reused_from_id=b.reused_from_id,
        opt_mismatches=b.opt_mismatches,
        started_at=b.started_at,
        finished_at=b.finished_at,
        has_log=bool(b.log_key),
        sandbox=sandbox_of(b),
    )


class BuildPage(BaseModel):
    items: list[BuildOut]
    next: str | None


Values = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=1000, pattern=r"^[^\x00-\x1f\x7f]*$")]] | None,
    Query(description="repeat for several (OR-ed)"),
]


@router.get(
    "",
    response_model=BuildPage,
    summary="Builds, filtered; ordered by id, paged by cursor",
    description="Filters (repeat a parameter for several values; values of one filter are OR-ed, filters "
    "AND-ed): run, source (as the recipe names it, or its short name), config, status, reason. "
    "Unknown parameters are refused (422).",
)
def list_builds(
    s: SessionDep,
    token: ReadToken,
    run: Annotated[list[Annotated[int, Field(ge=1, le=MAX_ID)]] | None, Query()] = None,
    source: Values = None,
    config: Values = None,
    status: Annotated[list[Literal[m.BUILD_STATUSES]] | None, Query()] = None,  # type: ignore[valid-type]
    reason: Values = None,
    limit: Limit = 100,
    after: Cursor = None,
) -> BuildPage:
    q = select(m.Build).where(m.Build.id > decode_cursor(after))
    if run:
        q = q.where(m.Build.run_id.in_(sorted(set(run))))
    if source:
        names = sorted(set(source))
        q = q.where(
            m.Build.source_id.in_(select(m.Source.id).where(or_(m.Source.label.in_(names), m.Source.name.in_(names))))
        )
    if config:
        q = q.where(
            m.Build.configuration_id.in_(
                select(m.Configuration.id).where(m.Configuration.identifier.in_(sorted(set(config))))
            )
        )
    if status:
        q = q.where(m.Build.status.in_(sorted(set(status))))
    if reason:
        q = q.where(m.Build.reason.in_(sorted(set(reason))))
    rows = list(
        s.scalars(
            q.options(joinedload(m.Build.source), joinedload(m.Build.configuration))
            .order_by(m.Build.id)
            .limit(limit + 1)
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return BuildPage(items=[build_out(b) for b in rows], next=encode_cursor(rows[-1].id) if more else None)


@router.get("/{build_id}", response_model=BuildOut, summary="One build")
def get_build(build_id: IdPath, s: SessionDep, token: ReadToken) -> BuildOut:
    b = s.get(m.Build, build_id)
    if b is None:
        raise HTTPException(404, f"no build {build_id}")
    return build_out(b)


def sandbox_of(b: m.Build) -> str | None:
    """bubblewrap, docker or none (the build ran unsandboxed); None when no step ran."""
    if b.sandboxed is None:
        return None
    if not b.sandboxed:
        return "none"
    return "docker" if (b.environment or {}).get("runner") == "docker" else "bubblewrap"


@router.get(
    "/{build_id}/log",
    response_class=StreamingResponse,
    summary="The log of one build (streamed)",
    responses={200: {"content": {"text/plain": {}}}, 404: {"description": "No such build, or it has no log yet"}},
)
def get_log(build_id: IdPath, s: SessionDep, store: StoreDep, token: ReadToken) -> StreamingResponse:
    """The stored log as it is in the store, streamed in chunks (never loaded whole).

    A build's log keeps at most ``max_log_bytes``: its head and its tail, with a line saying what was cut.
    """
    b = s.get(m.Build, build_id)
    if b is None:
        raise HTTPException(404, f"no build {build_id}")
    if not b.log_key:
        raise HTTPException(404, f"build {build_id} has no log yet (status {b.status})")
    try:
        stream = store.open(b.log_key)
    except FileNotFoundError:
        raise HTTPException(404, f"the log of build {build_id} is not in the store") from None
    return StreamingResponse(read_chunks(stream, LOG_CHUNK), media_type="text/plain; charset=utf-8")


LOG_CHUNK = 1 << 16
