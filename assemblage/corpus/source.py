"""Where a corpus is read from: a database and an object store, embedded or service alike.

``assemblage select|export DATASET_OR_SERVICE`` takes either

* a dataset folder (``DIR/dataset.sqlite`` + ``DIR/objects``), the result of
  ``assemblage build``; or
* the word ``service``: the service's database and store from its settings
  (``ASSEMBLAGE_DATABASE_URL``, ``ASSEMBLAGE_STORAGE_URL``,
  ``ASSEMBLAGE_S3_ENDPOINT_URL``, ``--settings FILE``), each of which
  ``--database-url`` / ``--storage-url`` may override.

A folder wins over the word (a folder named ``service`` holding a
``dataset.sqlite`` is a dataset).

Reading is done in one **snapshot**: one connection, one transaction
(PostgreSQL ``REPEATABLE READ``; SQLite a deferred transaction opened before the
first read, which WAL mode keeps consistent while builds write). Every count,
table and object of an export therefore comes from the same state of the
corpus, even while a run is still adding binaries. The SQLite file is opened
read-only (``mode=ro``): an export never writes to the dataset (its working
tables are ``TEMPORARY``, which SQLite keeps in a separate database).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from assemblage.errors import Problem, SelectionError
from assemblage.storage import ObjectStore

__all__ = ["Corpus", "open_corpus", "DATASET_FILE"]

DATASET_FILE = "dataset.sqlite"


@dataclass(frozen=True)
class Corpus:
    """A corpus to read: its database URL, its object store and a description for reports."""

    database_url: str
    store: ObjectStore
    description: str

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path:
        """The SQLite file of an embedded corpus."""
        return Path(make_url(self.database_url).database or "")

    def _engine(self, attach: Path | None = None, functions: dict[str, tuple[int, Any]] | None = None) -> Engine:
        if self.is_sqlite:
            path = str(self.sqlite_path)
            engine = create_engine(
                f"sqlite:///file:{quote(path)}?mode=ro&uri=true", poolclass=NullPool, connect_args={"timeout": 60}
            )

            @event.listens_for(engine, "connect")
            def _prepare(dbapi_conn, _record) -> None:
                dbapi_conn.isolation_level = None  # pysqlite would BEGIN only before writes: no snapshot
                if attach is not None:  # before BEGIN: SQLite attaches no database inside a transaction
                    from assemblage.corpus.export.sqlite import PRAGMAS

                    dbapi_conn.execute("ATTACH DATABASE ? AS out", (f"file:{quote(str(attach))}?mode=rw",))
                    for pragma in PRAGMAS:
                        dbapi_conn.execute(f"PRAGMA out.{pragma}")
                for name, (nargs, fn) in (functions or {}).items():
                    dbapi_conn.create_function(name, nargs, fn, deterministic=True)

            @event.listens_for(engine, "begin")
            def _begin(conn) -> None:
                conn.exec_driver_sql("BEGIN")

            return engine
        return create_engine(self.database_url, poolclass=NullPool)

    @contextmanager
    def snapshot(
        self, *, attach: Path | None = None, functions: dict[str, tuple[int, Any]] | None = None
    ) -> Iterator[Connection]:
        """One connection in one transaction over a consistent state of the corpus (see the module).

        On SQLite, ``attach`` is a SQLite file attached as ``out`` (writable: the export copies rows into
        it with ``INSERT ... SELECT``) and ``functions`` are SQL functions (name -> (arguments, callable)).
        """
        engine = self._engine(attach, functions)
        try:
            with engine.connect() as conn:
                if not self.is_sqlite:
                    conn = conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    yield conn
        except OperationalError as exc:  # the database is away (the job's task retries this one)
            from assemblage.storage.s3 import TransientStorageError

            raise TransientStorageError(f"cannot read the corpus ({self.description}): {exc.orig}") from None
        finally:
            engine.dispose()


def _redacted(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is reported by the engine, not here
        return "the configured database"


def open_corpus(
    target: str, *, database_url: str | None = None, storage_url: str | None = None, settings=None
) -> Corpus:
    """A dataset folder, or ``service`` (the settings, overridden by the URLs given)."""
    folder = Path(target).expanduser()
    if (folder / DATASET_FILE).is_file() and not (database_url or storage_url):
        from assemblage.storage.local import LocalStore

        folder = folder.resolve()
        return Corpus(
            database_url=f"sqlite:///{folder / DATASET_FILE}",
            store=LocalStore(folder),
            description=f"dataset {folder.name}",
        )
    if target != "service":
        hint = "" if not folder.exists() else f" ({folder} has no {DATASET_FILE})"
        raise SelectionError(
            [Problem("DATASET_OR_SERVICE", f"{target!r} is neither a dataset folder nor 'service'{hint}")]
        )
    if settings is None:
        from assemblage.settings import get_settings

        settings = get_settings()
    db = database_url or settings.database_url
    from assemblage.storage import store_from_settings

    store = store_from_settings(settings, storage_url)
    return Corpus(database_url=db, store=store, description=f"service {_redacted(db)}")
