"""``/docs``: Swagger UI served from this process, so the API's documentation works offline.

FastAPI's default page loads Swagger UI's JavaScript and CSS from a CDN (and a favicon from
fastapi.tiangolo.com): on a machine without Internet access, or behind a strict proxy, ``/docs``
stayed blank. The assets come from the ``swagger-ui-bundle-v2`` package (Swagger UI 5, which
renders OpenAPI 3.1; part of the ``service`` extra) and are served under ``/docs/assets``; the
online validator badge is off (``validatorUrl: null``), so the page asks no other host for anything.
ReDoc (``/redoc``) loaded from a CDN too and is not served.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS", "mount_docs"]

ASSETS = "/docs/assets"
log = logging.getLogger(__name__)


def mount_docs(app: FastAPI, openapi_url: str) -> bool:
    """Serve ``/docs`` and its assets; False (and no ``/docs``) when Swagger UI is not installed."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        log.warning("/docs is off: Swagger UI is not installed (pip install 'assemblage[service]')")
        return False
    app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")
    redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API",
            oauth2_redirect_url=redirect,
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},  # no request to validator.swagger.io
        )

    @app.get(redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    return True
