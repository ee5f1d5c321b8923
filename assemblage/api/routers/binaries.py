"""/binaries: the corpus, filtered and paged by keyset; one binary, its functions, its bytes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import BaseModel
from sqlalchemy import select

from assemblage.api.deps import ReadToken, SessionDep, SettingsDep, StoreDep
from assemblage.api.schemas import (
    BinaryDetail,
    BinaryOut,
    Cursor,
    Filter,
    FunctionOut,
    IdPath,
    MAX_ID,
    Limit,
    RvaOut,
    decode_cursor,
    encode_cursor,
)
from assemblage.db import models as m

router = APIRouter(prefix="/binaries", tags=["binaries"])


class BinaryPage(BaseModel):
    items: list[BinaryOut]
    next: str | None


class FunctionPage(BaseModel):
    items: list[FunctionOut]
    next: str | None


@router.get("", response_model=BinaryPage, summary="Binaries, filtered; ordered by id, paged by cursor")
def list_binaries(
    s: SessionDep,
    token: ReadToken,
    platform: Filter = None,
    arch: Filter = None,
    toolchain: Filter = None,
    opt: Filter = None,
    format: Filter = None,
    license: Filter = None,
    run: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Limit = 100,
    after: Cursor = None,
) -> BinaryPage:
    q = select(m.Binary).where(m.Binary.id > decode_cursor(after))
    if _no_such_configuration(s, platform, arch, toolchain, opt):
        return BinaryPage(items=[], next=None)  # e.g. linux + mingw: nothing to scan for
    for column, value in ((m.Binary.platform, platform), (m.Binary.arch, arch), (m.Binary.toolchain, toolchain),
                          (m.Binary.optimization, opt), (m.Binary.format, format), (m.Binary.license, license)):
        if value is not None:
            q = q.where(column == value)
    if run is not None:
        q = q.where(m.Binary.run_id == run)
    rows = list(s.scalars(q.order_by(m.Binary.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return BinaryPage(items=[BinaryOut.model_validate(b) for b in rows],
                      next=encode_cursor(rows[-1].id) if more else None)


def _no_such_configuration(s, platform, arch, toolchain, opt) -> bool:
    """Whether no configuration was ever built with these values (the configurations table is small)."""
    given = [(c, v) for c, v in ((m.Configuration.platform, platform), (m.Configuration.arch, arch),
                                 (m.Configuration.toolchain, toolchain), (m.Configuration.opt, opt)) if v is not None]
    if not given:
        return False
    q = select(m.Configuration.id)
    for column, value in given:
        q = q.where(column == value)
    return s.scalar(q.limit(1)) is None


def _binary(s, binary_id: int) -> m.Binary:
    b = s.get(m.Binary, binary_id)
    if b is None:
        raise HTTPException(404, f"no binary {binary_id}")
    return b


@router.get("/{binary_id}", response_model=BinaryDetail, summary="One binary with its labels")
def get_binary(binary_id: IdPath, s: SessionDep, token: ReadToken) -> BinaryDetail:
    return BinaryDetail.model_validate(_binary(s, binary_id))


def functions_page(s, q, limit: int, after: str | None) -> FunctionPage:
    q = q.where(m.Function.id > decode_cursor(after)).order_by(m.Function.id).limit(limit + 1)
    funcs = list(s.scalars(q))
    more = len(funcs) > limit
    funcs = funcs[:limit]
    ranges: dict[int, list[RvaOut]] = {}
    if funcs:
        for r in s.scalars(select(m.Rva).where(m.Rva.function_id.in_([f.id for f in funcs])).order_by(m.Rva.id)):
            ranges.setdefault(r.function_id, []).append(RvaOut(start=r.start, end=r.end))
    items = [FunctionOut(id=f.id, binary_id=f.binary_id, name=f.name, start=f.start, end=f.end, size=f.size,
                         source_file=f.source_file, decl_line=f.decl_line, hash=f.hash, label_source=f.label_source,
                         rvas=ranges.get(f.id, [])) for f in funcs]
    return FunctionPage(items=items, next=encode_cursor(funcs[-1].id) if more else None)


@router.get("/{binary_id}/functions", response_model=FunctionPage, summary="A binary's functions with their ranges")
def binary_functions(binary_id: IdPath, s: SessionDep, token: ReadToken, limit: Limit = 1000,
                     after: Cursor = None) -> FunctionPage:
    _binary(s, binary_id)
    return functions_page(s, select(m.Function).where(m.Function.binary_id == binary_id), limit, after)


@router.get("/{binary_id}/download", summary="The binary's bytes: 307 to a presigned URL, or the bytes",
            responses={307: {"description": "Redirect to a time-limited URL of the object store"},
                       200: {"content": {"application/octet-stream": {}}}})
def download(binary_id: IdPath, request: Request, s: SessionDep, store: StoreDep, settings: SettingsDep, token: ReadToken):
    b = _binary(s, binary_id)
    url = store.download_url(b.path, expires=settings.presign_expires, filename=b.file_name) \
        if _takes_filename(store) else store.download_url(b.path, expires=settings.presign_expires)
    if url:
        return RedirectResponse(url, status_code=307)
    try:
        stream = store.open(b.path)
    except FileNotFoundError:
        raise HTTPException(404, f"binary {binary_id} is not in the store") from None
    safe = "".join(c for c in b.file_name if c.isalnum() or c in "._-") or "binary"
    return StreamingResponse(_chunks(stream), media_type="application/octet-stream",
                             headers={"Content-Disposition": f'attachment; filename="{safe}"',
                                      "X-Checksum-Sha256": b.hash})


def _takes_filename(store) -> bool:
    import inspect

    try:
        return "filename" in inspect.signature(store.download_url).parameters
    except (TypeError, ValueError):
        return False


def _chunks(stream, size: int = 1 << 20):
    try:
        while block := stream.read(size):
            yield block
    finally:
        stream.close()
