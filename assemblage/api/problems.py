"""One error shape for every answer that is not a success: RFC 9457 problem details.

Every error of the API (an ``HTTPException`` of a route, a request that does not validate, a 404 or
405 of the router, the database or object store being away, an unhandled exception) is answered as
``application/problem+json``::

    {"type": "about:blank", "title": "Unprocessable Content", "status": 422,
     "detail": "query.source: unknown query parameter ...", "instance": "/api/v1/binaries",
     "errors": [{"location": "query.source", "message": "unknown query parameter ..."}]}

``type`` is ``about:blank`` (the status says what kind of problem it is) and ``title`` the status's
phrase; ``detail`` says what went wrong with this request; ``instance`` is the request's path.
``errors`` is present on validation problems (422, and an invalid recipe): one entry per problem with
its place (``query.after``, ``matrix.opt``, ``sources[0].path``, ``body``). Before, the API answered
``{"detail": "..."}``, ``{"detail": [{"location", "message"}]}`` or FastAPI's ``{"detail": [{"loc",
"msg", "type"}]}`` depending on who refused the request.

:func:`document_problems` writes the shape into the OpenAPI document: the ``Problem`` schema in the
components, and every error response of every operation (``422`` and the ``default`` response)
pointing at it with the ``application/problem+json`` media type.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "Problem",
    "ProblemError",
    "install_problem_handlers",
    "document_problems",
    "problem_response",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"
MAX_DETAIL = 2000
log = logging.getLogger(__name__)


class ProblemError(BaseModel):
    """One problem with the request, and where it is."""

    location: str = Field(
        description="where: query.NAME, path.NAME, header.NAME, body, or a place in the recipe "
        "(matrix.opt, sources[0].path)"
    )
    message: str


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (``application/problem+json``)."""

    type: str = Field("about:blank", description="a URI naming the kind of problem; about:blank: the status says it")
    title: str = Field(description="the HTTP status phrase")
    status: int
    detail: str = Field(description="what went wrong with this request")
    instance: str = Field(description="the request's path")
    errors: list[ProblemError] | None = Field(None, description="validation problems, each with its location")


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> ProblemResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _title(status),
        "status": status,
        "detail": detail[:MAX_DETAIL],
        "instance": request.url.path,
    }
    if errors is not None:
        body["errors"] = errors
    return ProblemResponse(body, status_code=status, headers=headers)


def _location(loc: Any) -> str:
    out = ""
    for part in loc or ():
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "request"


def _summary(errors: list[dict[str, str]]) -> str:
    return "; ".join(f"{e['location']}: {e['message']}" for e in errors) or "the request does not validate"


def _errors_of(detail: Any) -> list[dict[str, str]] | None:
    """A route's list of {location, message} (an invalid recipe, a bad cursor) as problem errors."""
    if not isinstance(detail, list):
        return None
    out = []
    for item in detail:
        if isinstance(item, dict):
            out.append({"location": str(item.get("location", "request")), "message": str(item.get("message", item))})
        else:
            out.append({"location": "request", "message": str(item)})
    return out


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` as problem details (the handlers of the database and store included)."""
    from sqlalchemy.exc import OperationalError, SQLAlchemyError

    from assemblage.errors import StorageError

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> ProblemResponse:
        errors = _errors_of(exc.detail)
        detail = _summary(errors) if errors is not None else str(exc.detail or _title(exc.status_code))
        return problem_response(request, exc.status_code, detail, errors=errors, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> ProblemResponse:
        errors = [{"location": _location(e.get("loc")), "message": str(e.get("msg", "invalid"))} for e in exc.errors()]
        return problem_response(request, 422, _summary(errors), errors=errors)

    @app.exception_handler(StorageError)
    async def _storage(request: Request, exc: StorageError) -> ProblemResponse:
        log.warning("object store: %s", exc)
        return problem_response(request, 503, "the object store is unavailable")

    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: OperationalError) -> ProblemResponse:
        log.warning("database: %s", exc.__class__.__name__)
        return problem_response(request, 503, "the database is unavailable")

    @app.exception_handler(SQLAlchemyError)
    async def _db_error(request: Request, exc: SQLAlchemyError) -> ProblemResponse:
        log.error("database error: %s", exc)
        return problem_response(request, 500, "database error")

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> ProblemResponse:
        # Starlette's ServerErrorMiddleware calls this, then re-raises for the server's log
        log.error("unhandled error on %s %s: %r", request.method, request.url.path, exc)
        return problem_response(request, 500, "internal server error (the server's log has the traceback)")


def document_problems(app: FastAPI) -> None:
    """Have ``app.openapi()`` state the problem shape: components, and every operation's error responses."""
    original = app.openapi
    done: list[bool] = []

    def openapi() -> dict[str, Any]:
        doc = original()  # FastAPI's document (cached in app.openapi_schema, so it is changed once, in place)
        if done:
            return doc
        done.append(True)
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for model in (ProblemError, Problem):
            schemas[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
        content = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for item in doc.get("paths", {}).values():
            for op in item.values():
                if not isinstance(op, dict) or "responses" not in op:
                    continue
                responses = op["responses"]
                for code, resp in responses.items():
                    if code == "default" or (code[:1] in "45" and code[:1].isdigit()):
                        resp["content"] = content
                if "422" in responses:
                    responses["422"]["description"] = (
                        responses["422"]
                        .get("description", "Validation Error")
                        .replace(
                            "Validation Error",
                            "The request does not validate: `errors` lists each problem with its location",
                        )
                    )
                responses["default"] = {"description": "An error, as RFC 9457 problem details", "content": content}
        for unused in ("HTTPValidationError", "ValidationError"):
            if not _referenced(doc, f"#/components/schemas/{unused}"):
                schemas.pop(unused, None)
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def _referenced(doc: Any, ref: str) -> bool:
    if isinstance(doc, dict):
        if doc.get("$ref") == ref:
            return True
        return any(_referenced(v, ref) for k, v in doc.items() if not (k == "schemas"))
    if isinstance(doc, list):
        return any(_referenced(v, ref) for v in doc)
    return False
