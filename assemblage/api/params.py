"""Unknown query parameters are refused (422), on every route, from what the route itself declares.

``/binaries?source=calc`` used to return everything when ``source`` was not a filter, and a misspelt
parameter (``?toolchian=gcc-12``) still would: a script cannot tell a filter that matched everything
from one that was ignored. :func:`reject_unknown_query` is an application-wide dependency; it reads
the matched route's declared query parameters (its own, its dependencies', and the fields of a
pydantic model taken as query parameters) once per route, and answers 422 with one located error per
unknown name. Nothing is listed by hand: a parameter added to a route is accepted at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

__all__ = ["declared_query", "reject_unknown_query"]

_CACHE_ATTR = "_assemblage_query_names"


def _fields(dependant: Any) -> Iterator[Any]:
    yield from dependant.query_params
    for sub in dependant.dependencies:
        yield from _fields(sub)


def declared_query(route: Any) -> frozenset[str] | None:
    """The query parameter names ``route`` accepts (None for a route that is not a FastAPI route)."""
    cached = getattr(route, _CACHE_ATTR, None)
    if cached is not None:
        return cached
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    names: set[str] = set()
    for field in _fields(dependant):
        annotation = field.field_info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for name, info in annotation.model_fields.items():
                names.add(info.alias or name)
        else:
            names.add(field.alias)
    found = frozenset(names)
    setattr(route, _CACHE_ATTR, found)
    return found


async def reject_unknown_query(request: Request) -> None:
    """422 naming every query parameter the matched route does not declare."""
    if not request.query_params:
        return
    known = declared_query(request.scope.get("route"))
    if known is None:
        return
    unknown = sorted({k for k in request.query_params if k not in known})
    if unknown:
        accepted = ", ".join(sorted(known)) or "none"
        raise RequestValidationError(
            [
                {
                    "type": "extra_forbidden",
                    "loc": ("query", name),
                    "input": request.query_params.getlist(name)[0],
                    "msg": f"unknown query parameter {name!r} (this route accepts: {accepted})",
                }
                for name in unknown
            ]
        )
