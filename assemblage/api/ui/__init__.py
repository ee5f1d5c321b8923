"""The web pages: server-rendered (Jinja2), a little vanilla JavaScript, charts as inline SVG.

No front-end build and nothing from a CDN: the templates and ``static/`` ship in the
package and are served by the same app, under ``/ui``. The pages log in with an API
token kept in an HttpOnly cookie (:mod:`assemblage.api.security`); everything a
repository put into the database is escaped (Jinja2's autoescape, MarkupSafe in the
charts), and a Content-Security-Policy that allows only the app's own scripts and
styles stands behind the escaping.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["mount_ui", "CSP"]

HERE = Path(__file__).resolve().parent
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def mount_ui(app: FastAPI) -> None:
    """Add the pages, their static files and their security headers to ``app``."""
    from assemblage.api.ui.pages import LoginRequired, router

    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> RedirectResponse:
        return RedirectResponse(f"/ui/login?next={exc.next}", status_code=303)

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        if request.url.path == "/ui" or request.url.path.startswith("/ui/"):
            response.headers.setdefault("Content-Security-Policy", CSP)
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "same-origin")
            response.headers.setdefault("X-Frame-Options", "DENY")
            if not request.url.path.startswith("/ui/static/"):
                response.headers.setdefault("Cache-Control", "no-store")
        return response
