"""API tokens: bearer tokens with a scope, stored only as keyed hashes.

A token is shown once, when it is created (``assemblage token create``). The
database keeps ``HMAC-SHA256(secret key, token)``, so a copy of the database
does not give access, and changing ``ASSEMBLAGE_SECRET_KEY`` revokes every
token. Scopes are ordered: ``admin`` includes ``submit``, which includes
``read``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from sqlalchemy import DateTime, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from assemblage.db.models import Base, utcnow

__all__ = ["ApiToken", "SCOPES", "create_token", "find_token", "hash_token", "revoke_token", "scope_allows"]

SCOPES = ("read", "submit", "admin")
TOKEN_PREFIX = "asm_"


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    scope: Mapped[str] = mapped_column(String(10))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(12))  # the first characters, to tell tokens apart
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


def scope_allows(have: str, need: str) -> bool:
    """Whether a token of scope ``have`` may do what needs ``need``."""
    if have not in SCOPES or need not in SCOPES:
        return False
    return SCOPES.index(have) >= SCOPES.index(need)


def hash_token(token: str, secret: str) -> str:
    return hmac.new(secret.encode(), token.encode(), hashlib.sha256).hexdigest()


def create_token(s: Session, *, scope: str, secret: str, name: str = "") -> str:
    """Add a token in the caller's transaction; returns the plain token (the only time it is seen)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r} (expected one of {', '.join(SCOPES)})")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    s.add(ApiToken(name=name, scope=scope, token_hash=hash_token(token, secret), hint=token[:10]))
    s.flush()
    return token


def find_token(s: Session, token: str, secret: str) -> ApiToken | None:
    """The live token row for a presented token, or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token, secret)))
    if row is None or row.revoked_at is not None:
        return None
    return row


def revoke_token(s: Session, token_id: int) -> ApiToken:
    """Revoke a token by its id, in the caller's transaction; a ``LookupError`` when there is none."""
    row = s.get(ApiToken, token_id)
    if row is None:
        raise LookupError(f"no token with id {token_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row
