"""Commands of the distributed mode: ``serve``, ``worker``, ``db upgrade``, ``token create|list|revoke``,
and ``ui DIR`` (the web pages over an embedded dataset)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated

import typer

from assemblage.db.migrate import alembic_config, upgrade_database  # re-exported: scripts and tests use them here

__all__ = ["register", "alembic_config", "upgrade_database"]

_SettingsFile = Annotated[Path | None, typer.Option("--settings", help="A TOML settings file (the environment wins)")]


def _settings(file: Path | None):
    from assemblage.settings import get_settings, load_settings

    if file is not None:
        load_settings(file)  # validates it
        os.environ["ASSEMBLAGE_SETTINGS_FILE"] = str(file)  # and names it for get_settings in this process
        get_settings.cache_clear()
    return get_settings()


def _service_sessions(database_url: str):
    """Sessions on the service's database, once it is reachable and migrated (else a clear error)."""
    from assemblage.db.session import make_engine, make_sessionmaker, require_schema

    engine = make_engine(database_url)
    require_schema(engine)
    return make_sessionmaker(engine)


def register(app: typer.Typer) -> None:
    db_app = typer.Typer(help="The service's database.", no_args_is_help=True)
    token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
    app.add_typer(db_app, name="db")
    app.add_typer(token_app, name="token")

    @app.command()
    def serve(
        host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
        port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
        sweep: Annotated[bool, typer.Option(help="Requeue builds of dead workers and resend lost messages")] = True,
        settings_file: _SettingsFile = None,
    ) -> None:
        """Run the coordinator: the REST API (OpenAPI at /docs) and the requeue sweeper."""
        import uvicorn

        from assemblage.api import create_app

        settings = _settings(settings_file)
        from assemblage.db.session import make_engine, require_schema

        require_schema(make_engine(settings.database_url))  # refuse to start on an unmigrated database
        store = None
        if settings.storage_url.startswith("s3://"):
            from assemblage.storage import store_from_settings
            from assemblage.storage.s3 import S3Store

            store = store_from_settings(settings)
            assert isinstance(store, S3Store)  # what an s3:// url opens
            store.ensure_bucket()
        from assemblage.monitoring.logs import configure_logging

        configure_logging(settings.log_format, settings.log_level)
        api = create_app(settings, store=store, sweep=sweep)
        fleet = None
        if sweep and settings.fleet.groups:  # the coordinator also sizes the EC2 worker groups
            from assemblage.fleet.reconcile import ReconcileLoop

            fleet = ReconcileLoop.from_settings(settings).start()
        try:
            uvicorn.run(
                api,
                host=host or settings.api_host,
                port=port or settings.api_port,
                log_level=settings.log_level.lower(),
                log_config=None,
                proxy_headers=True,
            )
        finally:
            if fleet is not None:
                fleet.stop()

    @app.command()
    def ui(
        dataset: Annotated[Path, typer.Argument(help="A dataset folder made by `assemblage build`")],
        port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1")] = 8765,
    ) -> None:
        """Serve the web pages over an embedded dataset, on 127.0.0.1 only, read-only.

        Prints a link with a key made for this server alone (in the part after ``#``, which the
        browser keeps to itself); the pages ask for it again after the server restarts.
        """
        import uvicorn

        from assemblage.api.ui.local import local_app

        app, key = local_app(dataset)
        typer.echo(f"serving {dataset.resolve()} at http://127.0.0.1:{port}/ui/", err=True)
        typer.echo(f"open: http://127.0.0.1:{port}/ui/login#{key}", err=True)
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")

    @app.command()
    def worker(
        queues: Annotated[
            str, typer.Option("--queues", "-Q", help="Comma-separated: crawl, linux, windows-cross, msvc")
        ] = "crawl,linux",
        concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, help="Tasks at once")] = max(
            1, os.cpu_count() or 1
        ),
        name: Annotated[str | None, typer.Option("--name", "-n", help="Node name (default linux@HOST)")] = None,
        pool: Annotated[str, typer.Option(help="prefork, threads or solo")] = "prefork",
        loglevel: Annotated[str, typer.Option(help="Log level")] = "INFO",
        prefetch: Annotated[int, typer.Option(min=1, help="Messages reserved per process (1 suits long builds)")] = 1,
        settings_file: _SettingsFile = None,
    ) -> None:
        """Run a Celery worker that takes tasks from QUEUES."""
        from assemblage.tasks.app import QUEUES

        _settings(settings_file)
        wanted = [q.strip() for q in queues.split(",") if q.strip()]
        unknown = sorted(set(wanted) - set(QUEUES))
        if unknown:
            raise typer.BadParameter(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(QUEUES)}")
        from assemblage.tasks import jobs

        node = name or f"{wanted[-1]}@{socket.gethostname()}"
        jobs.celery_app.worker_main(
            [
                "worker",
                "-Q",
                ",".join(wanted),
                "-c",
                str(concurrency),
                "-n",
                node,
                "--pool",
                pool,
                "--loglevel",
                loglevel,
                "--prefetch-multiplier",
                str(prefetch),
                "--without-gossip",
                "--without-mingle",
            ]
        )

    @db_app.command("upgrade")
    def db_upgrade(
        revision: Annotated[str, typer.Argument(help="Target revision")] = "head",
        settings_file: _SettingsFile = None,
    ) -> None:
        """Migrate the database (ASSEMBLAGE_DATABASE_URL) to REVISION with Alembic."""
        settings = _settings(settings_file)
        upgrade_database(settings.database_url, revision)
        typer.echo(f"database at {revision}")

    @token_app.command("create")
    def token_create(
        scope: Annotated[str, typer.Option(help="read, submit or admin")] = "read",
        name: Annotated[str, typer.Option(help="Who or what the token is for")] = "",
        settings_file: _SettingsFile = None,
    ) -> None:
        """Create an API token and print it (it is shown only this once)."""
        from assemblage.db.auth import SCOPES, create_token
        from assemblage.db.session import session_scope

        if scope not in SCOPES:
            raise typer.BadParameter(f"scope must be one of {', '.join(SCOPES)}")
        settings = _settings(settings_file)
        sessions = _service_sessions(settings.database_url)
        with session_scope(sessions) as s:
            token = create_token(s, scope=scope, name=name, secret=settings.secret_key.get_secret_value())
        typer.echo(token)

    @token_app.command("list")
    def token_list(settings_file: _SettingsFile = None) -> None:
        """List tokens: id, scope, name, first characters, created, last used, revoked."""
        from sqlalchemy import select

        from assemblage.db.auth import ApiToken
        from assemblage.db.session import session_scope

        settings = _settings(settings_file)
        sessions = _service_sessions(settings.database_url)
        with session_scope(sessions) as s:
            for t in s.scalars(select(ApiToken).order_by(ApiToken.id)):
                when = lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ") if d else "-"  # noqa: E731
                typer.echo(
                    "\t".join(
                        [
                            str(t.id),
                            t.scope,
                            t.name or "-",
                            t.hint + "...",
                            when(t.created_at),
                            when(t.last_used_at),
                            "revoked " + when(t.revoked_at) if t.revoked_at else "live",
                        ]
                    )
                )

    @token_app.command("revoke")
    def token_revoke(
        token_id: Annotated[int, typer.Argument(help="The token's id (assemblage token list)")],
        settings_file: _SettingsFile = None,
    ) -> None:
        """Revoke a token: every request that presents it is refused from now on."""
        from assemblage.db.auth import revoke_token
        from assemblage.db.session import session_scope

        settings = _settings(settings_file)
        sessions = _service_sessions(settings.database_url)
        try:
            with session_scope(sessions) as s:
                row = revoke_token(s, token_id)
                typer.echo(f"token {row.id} ({row.scope}, {row.hint}...) revoked")
        except LookupError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
