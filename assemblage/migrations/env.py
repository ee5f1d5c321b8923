"""Alembic environment: one migration at a time, with bounded waits.

On PostgreSQL the migration takes a session advisory lock (two deploys cannot
migrate at once: the second waits, then finds nothing to do) and sets lock and
statement timeouts, so a migration never queues behind a long transaction
forever while blocking everyone behind it.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

import assemblage.db.auth  # noqa: F401 - the tokens table lives on the same Base
from assemblage.db.models import Base

ADVISORY_LOCK_KEY = 0x617373656D626C  # "assembl"
LOCK_TIMEOUT = "10s"
STATEMENT_TIMEOUT = "15min"

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if not url:
        from assemblage.settings import get_settings

        url = get_settings().database_url
    return url


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = _url()
    engine = create_engine(url, poolclass=pool.NullPool)
    postgres = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        if postgres:
            conn.execute(text(f"SET lock_timeout = '{LOCK_TIMEOUT}'"))
            conn.execute(text(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'"))
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
            conn.commit()  # the settings and the lock belong to the session, not to a transaction
        try:
            context.configure(
                connection=conn,
                target_metadata=target_metadata,
                compare_type=True,
                render_as_batch=engine.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                context.run_migrations()
            conn.commit()
        finally:
            if postgres:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
                conn.commit()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
