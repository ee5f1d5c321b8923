"""/builds: one build and its log."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, HTTPException
from fastapi.responses import StreamingResponse

from assemblage.api.deps import ReadToken, SessionDep, StoreDep
from assemblage.api.schemas import BuildOut, IdPath
from assemblage.db import models as m

router = APIRouter(prefix="/builds", tags=["builds"])


@router.get("/{build_id}", response_model=BuildOut, summary="One build")
def get_build(build_id: IdPath, s: SessionDep, token: ReadToken) -> BuildOut:
    b = s.get(m.Build, build_id)
    if b is None:
        raise HTTPException(404, f"no build {build_id}")
    return BuildOut(
        id=b.id, run_id=b.run_id, source_id=b.source_id, source=b.source.label, config=b.configuration.identifier,
        status=b.status, reason=b.reason, message=b.message, build_system=b.build_system, worker=b.worker,
        dependencies=list(b.dependencies or []), dependency_image_digest=b.dependency_image_digest,
        attempts=b.attempts, duration=b.duration, analysis_duration=b.analysis_duration,
        reused_from_id=b.reused_from_id, opt_mismatches=b.opt_mismatches, started_at=b.started_at,
        finished_at=b.finished_at, has_log=bool(b.log_key), sandbox=sandbox_of(b),
    )


def sandbox_of(b: m.Build) -> str | None:
    """bubblewrap, docker or none (the build ran unsandboxed); None when no step ran."""
    if b.sandboxed is None:
        return None
    if not b.sandboxed:
        return "none"
    return "docker" if (b.environment or {}).get("runner") == "docker" else "bubblewrap"


@router.get("/{build_id}/log", response_class=StreamingResponse, summary="The log of one build (streamed)",
            responses={200: {"content": {"text/plain": {}}},
                       404: {"description": "No such build, or it has no log yet"}})
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
    return StreamingResponse(_chunks(stream), media_type="text/plain; charset=utf-8")


LOG_CHUNK = 1 << 16


def _chunks(stream) -> Iterator[bytes]:  # noqa: ANN001 - a file or an S3 body
    try:
        while chunk := stream.read(LOG_CHUNK):
            yield chunk
    finally:
        stream.close()
