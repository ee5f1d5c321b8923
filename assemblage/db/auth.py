"""API tokens: bearer tokens with a scope, stored only as keyed hashes.

A token is shown once, when it is created (``assemblage token create``). The
database keeps ``HMAC-SHA256(secret key, token)``, so a copy of the database
does not give access, and changing ``ASSEMBLAGE_SECRET_KEY`` revokes every
token. Scopes are ordered: ``admin`` includes ``submit``, which includes
``read``.

``last_used_at`` is written when a token is used, at most once per
:data:`USE_RESOLUTION` per token (:func:`note_use`): the row is read on every
request anyway, so a fresh value costs nothing, and the write is a conditional
``UPDATE`` that two API replicas cannot both make. A write on every request would
turn every read of the API into a row lock on the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, DateTime, Integer, String, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from assemblage.db.models import Base, utcnow

__all__ = [
    "ApiToken",
    "SCOPES",
    "USE_RESOLUTION",
    "create_token",
    "find_token",
    "hash_token",
    "note_use",
    "revoke_token",
    "scope_allows",
]

SCOPES = ("read", "submit", "admin")
TOKEN_PREFIX = "asm_"
USE_RESOLUTION = timedelta(minutes=1)  # last_used_at is at most this stale


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


def note_use(s: Session, row: ApiToken, now: datetime | None = None) -> bool:
    """Record that ``row`` was used, in the caller's transaction, unless it was within :data:`USE_RESOLUTION`.

    Returns whether it wrote.
    """
    now = now or utcnow()
    last = row.last_used_at
    if last is not None and last.tzinfo is None:  # SQLite drops the zone
        last = last.replace(tzinfo=now.tzinfo)
    if last is not None and now - last < USE_RESOLUTION:
        return False
    stale = now - USE_RESOLUTION
    # an UPDATE's result is a CursorResult (it has rowcount); Session.execute is typed as any statement's Result
    done = cast(
        CursorResult[Any],
        s.execute(
            update(ApiToken)
            .where(ApiToken.id == row.id, or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at < stale))
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        ),
    )
    return bool(done.rowcount)


def revoke_token(s: Session, token_id: int) -> ApiToken:
    """Revoke a token by its id, in the caller's transaction; a ``LookupError`` when there is none."""
    row = s.get(ApiToken, token_id)
    if row is None:
        raise LookupError(f"no token with id {token_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row
