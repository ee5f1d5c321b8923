"""``assemblage ui DIR``: the service's app over an embedded dataset, read-only, for one local user.

The same routes and pages as ``assemblage serve``; the database is ``DIR/dataset.sqlite``
opened read-only (SQLite's ``mode=ro``: nothing here can change the dataset, while a build
may go on writing it), the objects come from ``DIR/objects``. There is no token table: one
random key, made at start, logs in with the read scope. Nothing is sent anywhere, so
submitting runs is refused with the scope, and the export page gives the command line.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy import create_engine, event

from assemblage.errors import StorageError

__all__ = ["local_app", "ReadOnlyDispatcher"]


class ReadOnlyDispatcher:
    """No broker: nothing is ever sent from a local, read-only server."""

    def send(self, kind: str, obj_id: int, config: str | None = None) -> None:
        raise StorageError("assemblage ui serves a dataset read-only; build with `assemblage build`")

    def ping(self) -> None:
        return None

    def depths(self) -> dict[str, int] | None:
        return None


def local_app(dataset: Path) -> tuple[FastAPI, str]:
    """The app over ``dataset`` and the key that logs in to it."""
    from assemblage.api import create_app
    from assemblage.api.security import KeyAuthenticator
    from assemblage.db.session import make_sessionmaker
    from assemblage.pipeline.embedded import DATASET_FILE
    from assemblage.settings import Settings
    from assemblage.storage.local import LocalStore

    root = Path(dataset).resolve()
    db = root / DATASET_FILE
    if not db.is_file():
        raise StorageError(f"{dataset}: no {DATASET_FILE} here (make one with `assemblage build RECIPE --out DIR`)")
    engine = create_engine(f"sqlite:///file:{db}?mode=ro&uri=true", connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _wait(dbapi_conn, _record) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=10000")

    settings = Settings(
        environment="development",
        database_url=f"sqlite:///{db}",
        storage_url=f"file://{root}",
        secret_key=secrets.token_urlsafe(32),
        source_root=root,
    )
    key = KeyAuthenticator.new_key()
    app = create_app(
        settings,
        sessions=make_sessionmaker(engine),
        store=LocalStore(root),
        dispatcher=ReadOnlyDispatcher(),
        auth=KeyAuthenticator(key, scope="read"),
    )
    app.state.export_target = str(root)  # the export page's command line exports this folder
    return app, key
