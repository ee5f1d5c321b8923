"""/exports: a curated corpus as a job (the same export as ``assemblage export``), its progress, its archive."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request, Response, status
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from assemblage.api.deps import DispatcherDep, ReadToken, SessionDep, SettingsDep, StoreDep, SubmitToken
from assemblage.api.schemas import Cursor, IdPath, Limit, decode_cursor, encode_cursor
from assemblage.corpus.jobs import PHASES, archive_name, create_export
from assemblage.corpus.request import ExportRequest, ExportSummary
from assemblage.db import models as m
from assemblage.storage.base import read_chunks

router = APIRouter(prefix="/exports", tags=["exports"])
log = logging.getLogger(__name__)


class ExportProgressOut(BaseModel):
    phase: str | None = Field(description="what the job is doing: " + ", ".join(PHASES))
    done: int = Field(description="rows or objects done in this phase")
    total: int | None = Field(description="out of this many, when known")
    step: int = Field(description="the phase's place in `steps`")
    steps: int


class ExportOut(BaseModel):
    id: int
    status: str = Field(description="pending, running, finished or failed")
    request: ExportRequest
    progress: ExportProgressOut
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime | None
    error: str | None = Field(description="why it failed")
    size: int | None = Field(description="bytes of the archive")
    sha256: str | None = Field(description="sha256 of the archive")
    url: str | None = Field(description="a presigned, time-limited link to the archive (S3), when finished")
    download: str | None = Field(description="this API's path to the archive (a redirect to `url`, or the bytes)")
    result: ExportSummary | None = Field(description="the export's summary (its export.json), when finished")


class ExportPage(BaseModel):
    items: list[ExportOut]
    next: str | None


def _out(row: m.Export, request: Request, store, settings) -> ExportOut:
    url = download = None
    if row.status == "finished" and row.key:
        download = f"{request.scope.get('root_path', '')}/api/v1/exports/{row.id}/download"
        url = _presign(store, row, settings.presign_expires)
    return ExportOut(
        id=row.id,
        status=row.status,
        request=ExportRequest.model_validate(row.request),
        progress=ExportProgressOut(
            phase=row.phase, done=row.done or 0, total=row.total, step=row.phases_done or 0, steps=len(PHASES) - 1
        ),
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        updated_at=row.updated_at,
        error=row.error,
        size=row.size,
        sha256=row.sha256,
        url=url,
        download=download,
        result=ExportSummary.model_validate(row.result) if row.result else None,
    )


def _presign(store, row: m.Export, expires: int) -> str | None:
    return store.download_url(row.key, expires=expires, filename=f"{archive_name(row.id)}.tar.zst")


_CREATED: dict[int | str, dict[str, Any]] = {
    201: {"description": "The export job was recorded and queued; follow it at `GET /exports/{id}`"},
    422: {"description": "The request does not validate (an unknown filter or option, a bad split, ...)"},
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ExportOut,
    responses=_CREATED,
    summary="Export a curated corpus as a job: select, deduplicate, split; Parquet, SQLite and binaries",
)
def create(
    request: Request,
    response: Response,
    body: Annotated[
        ExportRequest,
        Body(
            openapi_examples={
                "split": {
                    "summary": "O2 builds of permissive sources, split by source",
                    "value": {
                        "where": {"opt": ["O2"], "license": ["MIT", "BSD-3-Clause"]},
                        "split": {"ratios": {"train": 0.8, "valid": 0.1, "test": 0.1}},
                        "seed": 1,
                        "pairs": 4,
                        "drop_trivial": True,
                    },
                },
                "tables": {"summary": "Parquet only, no binaries", "value": {"formats": ["parquet"]}},
            }
        ),
    ],
    token: SubmitToken,
    dispatcher: DispatcherDep,
    store: StoreDep,
    settings: SettingsDep,
    s: SessionDep,
) -> ExportOut:
    export_id = create_export(request.app.state.sessions, body, token_id=token.id)
    try:  # committed above: the worker will find the row
        dispatcher.send("export", export_id)
    except Exception as exc:  # noqa: BLE001 - recorded; the sweeper sends it when the broker is back
        log.warning("export %s recorded, but the broker refused its task: %s", export_id, exc)
    response.headers["Location"] = f"/api/v1/exports/{export_id}"
    return _out(s.get_one(m.Export, export_id), request, store, settings)


@router.get("", response_model=ExportPage, summary="Exports, newest first, paged by cursor")
def list_exports(
    request: Request,
    s: SessionDep,
    token: ReadToken,
    store: StoreDep,
    settings: SettingsDep,
    limit: Limit = 50,
    after: Cursor = None,
) -> ExportPage:
    q = select(m.Export).order_by(m.Export.id.desc())
    last = decode_cursor(after)
    if last:
        q = q.where(m.Export.id < last)
    rows = list(s.scalars(q.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return ExportPage(
        items=[_out(r, request, store, settings) for r in rows], next=encode_cursor(rows[-1].id) if more else None
    )


def _row(s, export_id: int) -> m.Export:
    row = s.get(m.Export, export_id)
    if row is None:
        raise HTTPException(404, f"no export {export_id}")
    return row


@router.get(
    "/{export_id}",
    response_model=ExportOut,
    summary="An export: status, progress while it runs, a presigned link to the archive when finished",
)
def get_export(
    export_id: IdPath, request: Request, s: SessionDep, token: ReadToken, store: StoreDep, settings: SettingsDep
) -> ExportOut:
    return _out(_row(s, export_id), request, store, settings)


@router.get(
    "/{export_id}/download",
    summary="The export's archive: 307 to a presigned URL, or the bytes",
    responses={
        307: {"description": "Redirect to a time-limited URL of the object store"},
        200: {"content": {"application/zstd": {}}},
        409: {"description": "The export has not finished"},
    },
)
def download(export_id: IdPath, s: SessionDep, token: ReadToken, store: StoreDep, settings: SettingsDep):
    row = _row(s, export_id)
    if row.status != "finished" or not row.key:
        raise HTTPException(409, f"export {export_id} is {row.status}: nothing to download yet")
    url = _presign(store, row, settings.presign_expires)
    if url:
        return RedirectResponse(url, status_code=307)
    try:
        stream = store.open(row.key)
    except FileNotFoundError:
        raise HTTPException(404, f"the archive of export {export_id} is not in the store") from None

    return StreamingResponse(
        read_chunks(stream),
        media_type="application/zstd",
        headers={
            "Content-Disposition": f'attachment; filename="{archive_name(export_id)}.tar.zst"',
            "X-Checksum-Sha256": row.sha256 or "",
        },
    )
