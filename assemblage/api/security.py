"""Who is asking: bearer tokens for programs, an HttpOnly cookie for browsers, CSRF for the cookie.

The browser never sees a token after it logs in: ``POST /ui/login`` checks the token
against the same token table as the API and puts it in the ``asm_session`` cookie
(``HttpOnly``, ``SameSite=Strict``, ``Secure`` over HTTPS, ``Path=/``). Every
request then presents it either as ``Authorization: Bearer`` (programs) or as that
cookie (the pages, and the pages' own calls to ``/api/v1``); both go through one
:class:`Authenticator`, so a revoked token stops working in the browser at once.

A cookie travels by itself, so a request that changes something and rides on the
cookie must also carry the CSRF token of that session (the ``X-CSRF-Token`` header
or a ``csrf`` form field): ``HMAC(secret key, "csrf:" + token hash)``, which pages
embed and which a page of another site cannot read. ``SameSite=Strict`` and the
check of ``Origin`` are two more walls in front of the same door. The login form
has its own double-submit token (a random ``asm_login`` cookie echoed by the form),
so another site cannot log a browser in with the attacker's token either.

``assemblage ui DIR`` has no token table: :class:`KeyAuthenticator` admits one
random key made at start and printed once, with the read scope.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Protocol

from fastapi import HTTPException, Request, status
from sqlalchemy.orm import Session, sessionmaker

__all__ = [
    "Principal",
    "Authenticator",
    "TokenAuthenticator",
    "KeyAuthenticator",
    "SESSION_COOKIE",
    "LOGIN_COOKIE",
    "SAFE_METHODS",
    "csrf_token",
    "check_csrf",
    "check_origin",
    "presented_secret",
]

log = logging.getLogger(__name__)
SESSION_COOKIE = "asm_session"
LOGIN_COOKIE = "asm_login"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the token's id, scope and name, and a stable secret-derived key."""

    id: int
    scope: str
    name: str
    key: str  # a hash that identifies the session's secret (never the secret itself)


class Authenticator(Protocol):
    def authenticate(self, secret: str) -> Principal | None:
        """The principal a presented secret stands for, or None."""
        ...


class TokenAuthenticator:
    """API tokens from the database (``assemblage token create``)."""

    def __init__(self, sessions: sessionmaker[Session], secret_key: str) -> None:
        self.sessions = sessions
        self.secret_key = secret_key

    def authenticate(self, secret: str) -> Principal | None:
        """The token's principal; its use is recorded (``last_used_at``, at most once a minute per token)."""
        from sqlalchemy.exc import SQLAlchemyError

        from assemblage.db.auth import find_token, note_use

        with self.sessions() as s:
            row = find_token(s, secret, self.secret_key)
            if row is None:
                return None
            principal = Principal(id=row.id, scope=row.scope, name=row.name, key=row.token_hash)
            try:
                if note_use(s, row):
                    s.commit()
            except SQLAlchemyError as exc:  # a failed write never fails the request
                s.rollback()
                log.warning("could not record the use of token %s: %s", principal.id, exc.__class__.__name__)
            return principal


class KeyAuthenticator:
    """One key for a local, single-user server (``assemblage ui DIR``)."""

    def __init__(self, key: str, scope: str = "read") -> None:
        self._key = key
        self._hash = hashlib.sha256(key.encode()).hexdigest()
        self.scope = scope

    def authenticate(self, secret: str) -> Principal | None:
        if len(secret) > 200 or not hmac.compare_digest(secret.encode(), self._key.encode()):
            return None
        return Principal(id=0, scope=self.scope, name="local", key=self._hash)

    @staticmethod
    def new_key() -> str:
        return "asm_" + secrets.token_urlsafe(32)


def csrf_token(principal: Principal, secret_key: str) -> str:
    """The CSRF token of a session (stable for the session's token, useless to anyone without the page)."""
    return hmac.new(secret_key.encode(), f"csrf:{principal.key}".encode(), hashlib.sha256).hexdigest()[:40]


def presented_secret(request: Request, bearer: str | None) -> tuple[str | None, bool]:
    """The secret a request presents and whether it came by cookie."""
    if bearer:
        return bearer, False
    cookie = request.cookies.get(SESSION_COOKIE)
    return (cookie, True) if cookie else (None, False)


def check_origin(request: Request) -> None:
    """Refuse a state-changing request whose ``Origin`` is another site (browsers send it with every POST)."""
    origin = request.headers.get("origin")
    if origin is None:
        return  # not a browser, or a browser's same-origin request without it
    if origin.split("://", 1)[-1] != request.headers.get("host", ""):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "cross-site request refused")


def check_csrf(request: Request, principal: Principal, secret_key: str, sent: str | None) -> None:
    """A state-changing request that rides on the cookie must carry the session's CSRF token ``sent``
    (the ``X-CSRF-Token`` header of the pages' scripts, or the ``csrf`` field of their forms)."""
    check_origin(request)
    if not sent or not hmac.compare_digest(sent.encode(), csrf_token(principal, secret_key).encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token")
