"""/functions: functions across the corpus."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from assemblage.api.deps import ReadToken, SessionDep
from assemblage.api.routers.binaries import FunctionPage, functions_page
from assemblage.api.schemas import MAX_ID, Cursor, Include, Limit, parse_include
from assemblage.db import models as m

router = APIRouter(prefix="/functions", tags=["functions"])


@router.get("", response_model=FunctionPage, summary="Functions by name and/or binary; ordered by id, paged by cursor")
def list_functions(
    s: SessionDep,
    token: ReadToken,
    name: Annotated[str | None, Query(max_length=1000, pattern=r"^[^\x00]*$")] = None,
    binary: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Limit = 100,
    after: Cursor = None,
    include: Include = None,
) -> FunctionPage:
    wanted = parse_include(include)
    q = select(m.Function)
    if name is not None:
        q = q.where(m.Function.name == name)
    if binary is not None:
        q = q.where(m.Function.binary_id == binary)
    return functions_page(s, q, limit, after, wanted)
