"""/binaries: the corpus, filtered and paged by keyset; one binary, its functions, its bytes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import false, select

from assemblage.api.deps import ReadToken, SessionDep, SettingsDep, StoreDep
from assemblage.api.schemas import (
    BinaryDetail,
    BinaryOut,
    Cursor,
    FunctionOut,
    IdPath,
    Include,
    InlineOut,
    Limit,
    LineOut,
    RvaOut,
    decode_cursor,
    encode_cursor,
    parse_include,
)
from assemblage.corpus.select import Selection
from assemblage.db import models as m
from assemblage.storage.base import read_chunks, safe_filename

router = APIRouter(prefix="/binaries", tags=["binaries"])


class BinaryPage(BaseModel):
    items: list[BinaryOut]
    next: str | None


class FunctionPage(BaseModel):
    items: list[FunctionOut]
    next: str | None


class BinaryQuery(Selection):
    """The corpus selection (assemblage/corpus/select.py) plus paging; unknown parameters are 422."""

    limit: int = Field(100, ge=1, le=1000)
    after: str | None = Field(
        None, max_length=100, pattern=r"^[A-Za-z0-9_=-]*$", description="the `next` of the previous page"
    )


MAX_SAMPLED = 100_000


@router.get(
    "",
    response_model=BinaryPage,
    summary="Binaries, filtered; ordered by id, paged by cursor",
    description="Filters (repeat a parameter or separate values with commas; values of one filter are OR-ed): "
    "platform, arch, toolchain, compiler, version, opt, config, format, kind, license (an SPDX "
    "allow-list), source, source_kind, run, build, size and functions (ranges LO..HI), has_pdb, "
    "opt_mismatch, sample or sample_per_config with seed. Unknown parameters are refused (422).",
)
def list_binaries(s: SessionDep, token: ReadToken, query: Annotated[BinaryQuery, Query()]) -> BinaryPage:
    selection = Selection.model_validate(query.model_dump(exclude={"limit", "after"}, exclude_unset=True))
    if selection.sampled and (selection.sample or selection.sample_per_config or 0) > MAX_SAMPLED:
        raise HTTPException(
            422,
            [
                {
                    "location": "query.sample",
                    "message": f"at most {MAX_SAMPLED} binaries can be sampled in a listing "
                    "(an export samples any number)",
                }
            ],
        )
    if _no_such_configuration(s, selection):
        return BinaryPage(items=[], next=None)  # e.g. linux + mingw: nothing to scan for
    conds = selection.conditions(s)
    q = select(m.Binary).where(m.Binary.id > decode_cursor(query.after), *conds)
    if selection.sampled:
        picked = selection.sample_ids(s, conds) or []
        q = q.where(m.Binary.id.in_(picked)) if picked else q.where(false())
    rows = list(s.scalars(q.order_by(m.Binary.id).limit(query.limit + 1)))
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return BinaryPage(
        items=[BinaryOut.model_validate(b) for b in rows], next=encode_cursor(rows[-1].id) if more else None
    )


def _no_such_configuration(s, selection: Selection) -> bool:
    """Whether no configuration was ever built with these values (the configurations table is small)."""
    given = [
        (c, v)
        for c, v in (
            (m.Configuration.platform, selection.platform),
            (m.Configuration.arch, selection.arch),
            (m.Configuration.toolchain, selection.toolchain),
            (m.Configuration.opt, selection.opt),
            (m.Configuration.identifier, selection.config),
        )
        if v
    ]
    if not given:
        return False
    q = select(m.Configuration.id)
    for column, values in given:
        q = q.where(column.in_(values))
    return s.scalar(q.limit(1)) is None


def _binary(s, binary_id: int) -> m.Binary:
    b = s.get(m.Binary, binary_id)
    if b is None:
        raise HTTPException(404, f"no binary {binary_id}")
    return b


@router.get("/{binary_id}", response_model=BinaryDetail, summary="One binary with its labels")
def get_binary(binary_id: IdPath, s: SessionDep, token: ReadToken) -> BinaryDetail:
    return BinaryDetail.model_validate(_binary(s, binary_id))


def functions_page(s, q, limit: int, after: str | None, include: frozenset[str] = frozenset()) -> FunctionPage:
    """One page of functions with their ranges, and their lines and inlines when ``include`` asks."""
    q = q.where(m.Function.id > decode_cursor(after)).order_by(m.Function.id).limit(limit + 1)
    funcs = list(s.scalars(q))
    more = len(funcs) > limit
    funcs = funcs[:limit]
    ids = [f.id for f in funcs]
    ranges: dict[int, list[RvaOut]] = {}
    lines: dict[int, list[LineOut]] = {}
    inlines: dict[int, list[InlineOut]] = {}
    if funcs:
        for r in s.scalars(select(m.Rva).where(m.Rva.function_id.in_(ids)).order_by(m.Rva.id)):
            ranges.setdefault(r.function_id, []).append(RvaOut(start=r.start, end=r.end))
    if funcs and "lines" in include:
        for ln in s.scalars(select(m.Line).where(m.Line.function_id.in_(ids)).order_by(m.Line.rva, m.Line.id)):
            lines.setdefault(ln.function_id, []).append(LineOut.model_validate(ln))
    if funcs and "inlines" in include:
        inlines = _inlines_of(s, funcs, ranges)
    items = [
        FunctionOut(
            id=f.id,
            binary_id=f.binary_id,
            name=f.name,
            start=f.start,
            end=f.end,
            size=f.size,
            source_file=f.source_file,
            decl_line=f.decl_line,
            hash=f.hash,
            pic_hash=f.pic_hash,
            linkage_name=f.linkage_name,
            demangled=f.demangled,
            size_inferred=bool(f.size_inferred),
            label_source=f.label_source,
            rvas=ranges.get(f.id, []),
            lines=lines.get(f.id, []) if "lines" in include else None,
            inlines=inlines.get(f.id, []) if "inlines" in include else None,
        )
        for f in funcs
    ]
    return FunctionPage(items=items, next=encode_cursor(funcs[-1].id) if more else None)


def _inlines_of(s, funcs: list[m.Function], ranges: dict[int, list[RvaOut]]) -> dict[int, list[InlineOut]]:
    """The inlined copies inside each function: same binary, and the copy starts inside one of its ranges
    (``inlines.caller`` names the function, but two static functions may share a name)."""
    out: dict[int, list[InlineOut]] = {}
    by_binary: dict[int, list[m.Function]] = {}
    for f in funcs:
        by_binary.setdefault(f.binary_id, []).append(f)
    for binary_id, group in by_binary.items():
        names = sorted({f.name for f in group} | {f.linkage_name for f in group if f.linkage_name})
        for inl in s.scalars(
            select(m.Inline)
            .where(m.Inline.binary_id == binary_id, m.Inline.caller.in_(names))
            .order_by(m.Inline.start, m.Inline.id)
        ):
            for f in group:
                if inl.caller not in (f.name, f.linkage_name):
                    continue
                spans = ranges.get(f.id) or [RvaOut(start=f.start, end=f.end)]
                if any(r.start <= inl.start < r.end for r in spans):
                    out.setdefault(f.id, []).append(InlineOut.model_validate(inl))
                    break
    return out


@router.get(
    "/{binary_id}/functions",
    response_model=FunctionPage,
    summary="A binary's functions with their ranges and hashes (lines and inlines on request)",
)
def binary_functions(
    binary_id: IdPath,
    s: SessionDep,
    token: ReadToken,
    limit: Limit = 1000,
    after: Cursor = None,
    include: Include = None,
) -> FunctionPage:
    wanted = parse_include(include)
    _binary(s, binary_id)
    return functions_page(s, select(m.Function).where(m.Function.binary_id == binary_id), limit, after, wanted)


@router.get(
    "/{binary_id}/download",
    summary="The binary's bytes: 307 to a presigned URL, or the bytes",
    responses={
        307: {"description": "Redirect to a time-limited URL of the object store"},
        200: {"content": {"application/octet-stream": {}}},
    },
)
def download(
    binary_id: IdPath, request: Request, s: SessionDep, store: StoreDep, settings: SettingsDep, token: ReadToken
):
    b = _binary(s, binary_id)
    url = store.download_url(b.path, expires=settings.presign_expires, filename=b.file_name)
    if url:
        return RedirectResponse(url, status_code=307)
    try:
        stream = store.open(b.path)
    except FileNotFoundError:
        raise HTTPException(404, f"binary {binary_id} is not in the store") from None
    disposition = f'attachment; filename="{safe_filename(b.file_name, "binary")}"'
    return StreamingResponse(
        read_chunks(stream),
        media_type="application/octet-stream",
        headers={"Content-Disposition": disposition, "X-Checksum-Sha256": b.hash},
    )
