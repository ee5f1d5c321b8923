"""/runs/{id}/lock: a run's lock (assemblage.pipeline.lock), the same document `assemblage lock` prints."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from assemblage.api.deps import ReadToken, SessionDep
from assemblage.api.schemas import IdPath
from assemblage.pipeline.lock import Lock, lock_for_run

router = APIRouter(prefix="/runs", tags=["runs"])


@router.get(
    "/{run_id}/lock",
    response_model=Lock,
    summary="The run's lock: pinned sources, toolchains as probed, flags, environment, binaries' sha256",
)
def get_lock(run_id: IdPath, s: SessionDep, token: ReadToken) -> Lock:
    try:
        return lock_for_run(s, run_id)
    except LookupError:
        raise HTTPException(404, f"no run {run_id}") from None
