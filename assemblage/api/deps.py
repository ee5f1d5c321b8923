"""Dependencies of the routers, as ``Annotated`` aliases: sessions, store, settings, tokens."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from assemblage.api.security import SAFE_METHODS, Principal, check_csrf, presented_secret
from assemblage.db.auth import scope_allows
from assemblage.settings import Settings
from assemblage.storage import ObjectStore
from assemblage.tasks.dispatch import Dispatcher

__all__ = [
    "SessionDep",
    "StoreDep",
    "SettingsDep",
    "DispatcherDep",
    "ReadToken",
    "SubmitToken",
    "AdminToken",
    "require_scope",
]

_bearer = HTTPBearer(auto_error=False, description="A token from `assemblage token create --scope read|submit|admin`")


def _session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as s:
        yield s


def _store(request: Request) -> ObjectStore:
    return request.app.state.store


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


SessionDep = Annotated[Session, Depends(_session)]
StoreDep = Annotated[ObjectStore, Depends(_store)]
SettingsDep = Annotated[Settings, Depends(_settings)]
DispatcherDep = Annotated[Dispatcher, Depends(_dispatcher)]


def require_scope(need: str):
    """A dependency that admits a caller whose scope covers ``need`` (401 without one, 403 if too weak).

    Programs present a bearer token; the pages present the session cookie (see
    :mod:`assemblage.api.security`), which must come with the CSRF token on a request that
    changes something.

    The scope is declared with ``Security(..., scopes=[need])``, so the OpenAPI
    document states it on every operation (``security: [{"HTTPBearer": [need]}]``,
    role names as OpenAPI 3.1 allows for bearer schemes); the auth test
    (tests/unit/test_api_auth.py) reads it there and checks the behaviour.
    """

    def check(request: Request, creds: HTTPAuthorizationCredentials | None) -> Principal:
        bearer = creds.credentials if creds is not None and creds.scheme.lower() == "bearer" else None
        secret, by_cookie = presented_secret(request, bearer)
        if not secret:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )
        principal = request.app.state.auth.authenticate(secret)
        if principal is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"}
            )
        if by_cookie and request.method not in SAFE_METHODS:
            check_csrf(
                request,
                principal,
                request.app.state.settings.secret_key.get_secret_value(),
                request.headers.get("x-csrf-token"),
            )
        if not scope_allows(principal.scope, need):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs a token with scope {need}")
        return principal

    check.__name__ = f"require_{need}"
    # an object, not a string: the scope is a local that FastAPI could not resolve from the module
    check.__annotations__["creds"] = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer, scopes=[need])]
    return check


ReadToken = Annotated[Principal, Depends(require_scope("read"))]
SubmitToken = Annotated[Principal, Depends(require_scope("submit"))]
AdminToken = Annotated[Principal, Depends(require_scope("admin"))]
