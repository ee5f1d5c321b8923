"""Schema versions: Alembic for the service's PostgreSQL and for the embedded SQLite datasets.

Every schema change is an Alembic migration (``assemblage/migrations``, shipped
inside the package so an installed wheel can migrate). The service migrates
with ``assemblage db upgrade``. An embedded dataset (``DIR/dataset.sqlite``) is
brought to the current schema when it is opened (:func:`prepare_dataset`):

* a new file gets every table at once (``create_all``, much faster than
  replaying the migrations) and is stamped with the head revision;
* a file stamped with an older revision is upgraded (SQLite through Alembic's
  batch mode, which ``migrations/env.py`` turns on);
* a file without a revision was made before datasets were versioned, by the
  release whose schema is revision ``0001``: it is stamped ``0001``, then
  upgraded, so its builds are kept and a rerun into the same folder reuses them.

A file whose revision this version does not know (made by a newer Assemblage)
is refused rather than guessed at.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from assemblage.errors import StorageError

__all__ = ["LEGACY_REVISION", "alembic_config", "head_revision", "prepare_dataset", "upgrade_database"]

# the schema of datasets made before they carried a revision (the first release)
LEGACY_REVISION = "0001"


def migrations_folder() -> Path:
    folder = Path(str(resources.files("assemblage") / "migrations"))
    if not (folder / "env.py").is_file():
        raise StorageError(f"the package has no migrations at {folder}: reinstall assemblage")
    return folder


def alembic_config(database_url: str):
    """Alembic's configuration for the package's migrations and ``database_url``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_folder()))
    cfg.attributes["database_url"] = database_url
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    if len(heads) != 1:
        raise StorageError(f"the migrations have {len(heads)} heads ({', '.join(heads)}): a broken install")
    return heads[0]


def upgrade_database(database_url: str, revision: str = "head") -> None:
    """Migrate ``database_url`` to ``revision`` (a :class:`StorageError` when the database is unreachable)."""
    from alembic import command

    try:
        command.upgrade(alembic_config(database_url), revision)
    except OperationalError as exc:
        raise StorageError(f"cannot migrate the database: {exc.orig}") from None


def _current(engine: Engine) -> tuple[str | None, set[str]]:
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        return MigrationContext.configure(conn).get_current_revision(), tables


def _known(script, revision: str) -> bool:
    from alembic.util import CommandError

    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


def prepare_dataset(engine: Engine) -> None:
    """Bring an embedded dataset's SQLite file to the current schema (see the module docstring)."""
    from alembic import command
    from alembic.script import ScriptDirectory

    from assemblage.db.models import Base

    url = engine.url.render_as_string(hide_password=False)
    try:
        current, tables = _current(engine)
        head = head_revision()
        if current == head:
            return
        if current is None and "runs" not in tables:  # a new dataset
            Base.metadata.create_all(engine)
            command.stamp(alembic_config(url), head)
            return
        if current is not None and not _known(ScriptDirectory.from_config(alembic_config(url)), current):
            raise StorageError(
                f"the dataset at {engine.url.database} has schema revision {current}, which this "
                "version of Assemblage does not know (made by a newer version?)"
            )
        if current is None:
            command.stamp(alembic_config(url), LEGACY_REVISION)
        engine.dispose()  # Alembic opens its own connection; SQLite must not see ours mid-migration
        command.upgrade(alembic_config(url), "head")
    except OperationalError as exc:
        raise StorageError(f"cannot prepare the dataset at {engine.url.database}: {exc.orig}") from None
