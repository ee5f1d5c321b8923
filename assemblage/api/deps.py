"""Dependencies of the routers, as ``Annotated`` aliases: sessions, store, settings, tokens."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from assemblage.db.auth import ApiToken, find_token, scope_allows
from assemblage.settings import Settings
from assemblage.storage import ObjectStore
from assemblage.tasks.dispatch import Dispatcher

__all__ = ["SessionDep", "StoreDep", "SettingsDep", "DispatcherDep", "ReadToken", "SubmitToken", "AdminToken",
           "require_scope"]

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
    """A dependency that admits a bearer token whose scope covers ``need`` (401 without one, 403 if too weak)."""

    def check(
        request: Request,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> ApiToken:
        if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})
        secret = request.app.state.settings.secret_key.get_secret_value()
        with request.app.state.sessions() as s:
            token = find_token(s, creds.credentials, secret)
        if token is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown or revoked token",
                                headers={"WWW-Authenticate": "Bearer"})
        if not scope_allows(token.scope, need):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs a token with scope {need}")
        return token

    check.__name__ = f"require_{need}"
    return check


ReadToken = Annotated[ApiToken, Depends(require_scope("read"))]
SubmitToken = Annotated[ApiToken, Depends(require_scope("submit"))]
AdminToken = Annotated[ApiToken, Depends(require_scope("admin"))]
