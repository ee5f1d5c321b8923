"""/workers and /health: who is working, what is queued, whether the parts answer."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import select, text
from starlette.concurrency import run_in_threadpool

from assemblage.api.deps import DispatcherDep, ReadToken, SessionDep, SettingsDep, StoreDep
from assemblage.api.schemas import HealthOut, WorkerOut, WorkersOut
from assemblage.db import models as m

router = APIRouter(tags=["workers"])


def _aware(dt):
    return dt.replace(tzinfo=m.utcnow().tzinfo) if dt is not None and dt.tzinfo is None else dt


@router.get("/workers", response_model=WorkersOut, summary="Workers with their heartbeats and builds; queue depths")
def workers(s: SessionDep, settings: SettingsDep, dispatcher: DispatcherDep, token: ReadToken) -> WorkersOut:
    cutoff = m.utcnow() - timedelta(seconds=settings.worker_dead_after)
    rows = list(s.scalars(select(m.Worker).order_by(m.Worker.node, m.Worker.id)))
    busy: dict[str, list[int]] = {}
    for w in rows:
        if w.kind == "process" and w.build_id is not None and _aware(w.last_seen) >= cutoff:
            node = w.id.rsplit("/", 1)[0]
            busy.setdefault(node, []).append(w.build_id)
    out = [
        WorkerOut(
            id=w.id,
            node=w.node,
            hostname=w.hostname,
            pid=w.pid,
            queues=list(w.queues or []),
            started_at=_aware(w.started_at),
            last_seen=_aware(w.last_seen),
            alive=_aware(w.last_seen) >= cutoff,
            busy=sorted(busy.get(w.id, [])),
        )
        for w in rows
        if w.kind == "node"
    ]
    try:
        depths = dispatcher.depths()
    except Exception:  # noqa: BLE001 - the broker is away: say so by omission
        depths = None
    return WorkersOut(workers=out, queues=depths)


@router.get(
    "/health",
    response_model=HealthOut,
    tags=["health"],
    summary="Liveness of the database, the broker and the object store (no token needed)",
    responses={503: {"model": HealthOut, "description": "A part does not answer"}},
)
async def health(s: SessionDep, store: StoreDep, dispatcher: DispatcherDep):
    def db() -> str:
        s.execute(text("SELECT 1"))
        return "ok"

    def st() -> str:
        ping = getattr(store, "ping", None)
        if ping is not None:
            ping()
        return "ok"

    def probe(fn) -> str:
        try:
            fn()
            return "ok"
        except Exception as exc:  # noqa: BLE001 - a health check reports, it does not raise
            return f"error: {type(exc).__name__}"

    result = {
        "database": await run_in_threadpool(probe, db),
        "broker": await run_in_threadpool(probe, dispatcher.ping),
        "store": await run_in_threadpool(probe, st),
    }
    ok = all(v == "ok" for v in result.values())
    body = HealthOut(status="ok" if ok else "degraded", **result)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
