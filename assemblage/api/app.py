"""The coordinator's HTTP API (FastAPI): ``create_app`` wires settings, database, store and dispatcher."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from sqlalchemy.orm import Session, sessionmaker

from assemblage.api.docs import mount_docs
from assemblage.api.params import reject_unknown_query
from assemblage.api.problems import document_problems, install_problem_handlers
from assemblage.api.security import Authenticator, TokenAuthenticator
from assemblage.settings import Settings, get_settings
from assemblage.storage import ObjectStore
from assemblage.tasks.dispatch import Dispatcher

__all__ = ["create_app", "API_PREFIX"]

API_PREFIX = "/api/v1"


def create_app(
    settings: Settings | None = None,
    *,
    sessions: sessionmaker[Session] | None = None,
    store: ObjectStore | None = None,
    dispatcher: Dispatcher | None = None,
    sweep: bool = False,
    auth: Authenticator | None = None,
    ui: bool = True,
) -> FastAPI:
    """The API and the pages (``/ui``). Missing parts are made from the settings; ``sweep`` runs the
    requeue sweeper in this process; ``auth`` decides who a presented token is (default: the token table)."""
    from assemblage.api.routers import binaries, builds, exports, functions, locks, runs, tokens, workers
    from assemblage.db.session import make_engine, make_sessionmaker

    settings = settings or get_settings()
    if sessions is None:
        sessions = make_sessionmaker(make_engine(settings.database_url))
    if store is None:
        from assemblage.storage import store_from_settings

        store = store_from_settings(settings)
    if dispatcher is None:
        from assemblage.tasks.dispatch import CeleryDispatcher

        dispatcher = CeleryDispatcher()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        sweeper = None
        if sweep:
            from assemblage.tasks.coordinator import Sweeper

            sweeper = Sweeper(
                sessions=sessions,
                broker_url=settings.broker_url,
                dead_after=settings.worker_dead_after,
                interval=settings.sweep_interval,
                send=dispatcher.send,
            ).start()
        try:
            yield
        finally:
            if sweeper is not None:
                sweeper.stop()

    app = FastAPI(
        title="Assemblage",
        version=_version(),
        description="Submit recipes, follow runs, query and download binaries and their ground truth.",
        docs_url=None,  # served by mount_docs, with local assets
        redoc_url=None,  # ReDoc needs a CDN
        openapi_url=f"{API_PREFIX}/openapi.json",
        lifespan=lifespan,
        # refused with 413 while the body streams in: a declared Content-Length past the cap before a byte is
        # read, a chunked body as soon as it passes it (Starlette's RequestBodyLimitMiddleware counts what
        # the application receives, and uvicorn stops reading the socket while nobody asks for more).
        # Before, a 400 MB body was buffered whole before the recipe's own size check ran.
        max_body_size=settings.max_request_bytes,
        # every route: a query parameter the route does not declare is a 422, never silently ignored
        dependencies=[Depends(reject_unknown_query)],
    )
    app.state.settings = settings
    app.state.fetch_policy = _fetch_policy(settings)
    app.state.sessions = sessions
    app.state.store = store
    app.state.dispatcher = dispatcher
    app.state.auth = auth or TokenAuthenticator(sessions, settings.secret_key.get_secret_value())
    mount_docs(app, f"{API_PREFIX}/openapi.json")
    for r in (
        runs.router,
        locks.router,
        builds.router,
        binaries.router,
        functions.router,
        exports.router,
        workers.router,
        tokens.router,
    ):
        app.include_router(r, prefix=API_PREFIX)
    if ui:
        from assemblage.api.ui import mount_ui

        mount_ui(app)

    from assemblage.monitoring.metrics import install_metrics  # GET /metrics and request timing

    install_metrics(
        app,
        sessions=sessions,
        depths=dispatcher.depths,
        ttl=settings.metrics_cache_seconds,
        dead_after=settings.worker_dead_after,
    )

    install_problem_handlers(app)  # every error as RFC 9457 problem details
    document_problems(app)

    return app


def _fetch_policy(settings: Settings):
    from assemblage.sources.policy import FetchPolicy

    return FetchPolicy.for_service(settings)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("assemblage")
    except PackageNotFoundError:
        return "0"
