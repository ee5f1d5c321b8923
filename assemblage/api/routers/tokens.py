"""/tokens: token management over the API, for admin tokens (the same as ``assemblage token create|list|revoke``).

A created token is shown once, in the answer to ``POST /tokens``; the database keeps its
keyed hash (:mod:`assemblage.db.auth`). Nothing here ever returns a secret again.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from assemblage.api.deps import AdminToken, SessionDep, SettingsDep
from assemblage.db.auth import ApiToken, create_token, find_token, revoke_token

router = APIRouter(prefix="/tokens", tags=["tokens"])
log = logging.getLogger(__name__)

Scope = Literal["read", "submit", "admin"]
# api_tokens.id is a 32-bit integer column (PostgreSQL INTEGER): a larger id is no token, not a database error
TokenIdPath = Annotated[int, Path(ge=1, le=2**31 - 1)]


class TokenOut(BaseModel):
    id: int
    name: str
    scope: Scope
    hint: str = Field(description="the token's first characters, to tell tokens apart")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: Scope = "read"
    name: str = Field("", max_length=200, description="who or what the token is for")


class TokenCreated(TokenOut):
    token: str = Field(description="the secret: shown in this answer only, never again")


def _out(row: ApiToken) -> dict:
    return {
        "id": row.id,
        "name": row.name,
        "scope": row.scope,
        "hint": row.hint,
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
        "revoked_at": row.revoked_at,
    }


@router.get("", response_model=list[TokenOut], summary="Every token (admin): scope, name, use, revocation")
def list_tokens(s: SessionDep, token: AdminToken) -> list[TokenOut]:
    return [TokenOut(**_out(row)) for row in s.scalars(select(ApiToken).order_by(ApiToken.id))]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenCreated,
    summary="Create a token (admin); its secret is in this answer only",
)
def create(body: TokenCreate, s: SessionDep, settings: SettingsDep, token: AdminToken) -> TokenCreated:
    key = settings.secret_key.get_secret_value()
    secret = create_token(s, scope=body.scope, secret=key, name=body.name)
    row = find_token(s, secret, key)
    assert row is not None  # created just above, in this transaction
    s.commit()
    log.warning("token %s (%s, %s) created by token %s (%s)", row.id, body.scope, body.name, token.id, token.name)
    return TokenCreated(**_out(row), token=secret)


@router.delete(
    "/{token_id}",
    response_model=TokenOut,
    summary="Revoke a token (admin): every request that presents it is refused from now on",
    responses={404: {"description": "No such token"}},
)
def revoke(token_id: TokenIdPath, s: SessionDep, token: AdminToken) -> TokenOut:
    try:
        row = revoke_token(s, token_id)
    except LookupError:
        raise HTTPException(404, f"no token {token_id}") from None
    s.commit()
    log.warning("token %s revoked by token %s (%s)", token_id, token.id, token.name)
    return TokenOut(**_out(row))
