"""Engines and sessions for SQLite (embedded) and PostgreSQL (service)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from assemblage.db.models import Base
from assemblage.errors import StorageError

__all__ = [
    "make_engine",
    "make_sessionmaker",
    "sqlite_url",
    "init_schema",
    "session_scope",
    "is_postgres",
    "reserve_ids",
    "copy_rows",
    "require_schema",
]


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def init_schema(engine: Engine) -> None:
    """Create the tables of an embedded SQLite dataset (PostgreSQL uses Alembic: ``assemblage db upgrade``)."""
    try:
        Base.metadata.create_all(engine)
    except OperationalError as exc:
        raise StorageError(f"cannot create the schema at {engine.url!r}: {exc.orig}") from None


def require_schema(engine: Engine) -> None:
    """Refuse, with the fix, a service database that cannot be reached or was never migrated.

    Without this, the first query of ``token create`` or of the API on an empty
    database ends in SQLAlchemy's "no such table" traceback.
    """
    from sqlalchemy import inspect

    where = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise StorageError(f"cannot reach the database at {where}: {reason}") from None
    missing = {"alembic_version", "runs", "builds", "api_tokens"} - tables
    if missing:
        raise StorageError(
            f"the database at {where} has no Assemblage schema yet "
            f"(missing {', '.join(sorted(missing))}): run `assemblage db upgrade`"
        )


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def is_postgres(s: Session) -> bool:
    return s.get_bind().dialect.name == "postgresql"


def reserve_ids(s: Session, table: str, n: int) -> list[int]:
    """``n`` fresh ids from a PostgreSQL table's id sequence (so rows can be COPYed with their ids)."""
    from sqlalchemy import text

    if n <= 0:
        return []
    # the sequence is looked up once: pg_get_serial_sequence() in the select list would run once
    # per row, which made this query cost more than COPYing the rows it numbers
    seq = s.scalar(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table})
    ids = s.scalar(
        text("SELECT array_agg(nextval(CAST(:seq AS regclass))) FROM generate_series(1, :n)"), {"seq": seq, "n": n}
    )
    return list(ids)


def copy_rows(s: Session, table: str, columns: list[str], rows) -> None:
    """Append rows with PostgreSQL's COPY, in the session's transaction (several times faster than INSERT)."""
    cols = ", ".join(f'"{c}"' for c in columns)
    raw = s.connection().connection.driver_connection
    assert raw is not None  # the session's live connection
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
