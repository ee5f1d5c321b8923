"""source text per function; repo_last_update in the published type

functions.top_comments, functions.source_codes and lines.source_code, as the
published Assemblage schema names them. binaries.repo_last_update becomes Unix
seconds (the published Integer); the timestamp it held moves to
binaries.repo_last_update_at.

Revision ID: h5_sourcetext_ui_a1
Revises: 0003_lead_labels
Create Date: 2026-11-30 06:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "h5_sourcetext_ui_a1"
down_revision: str | None = "0003_lead_labels"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("functions", sa.Column("top_comments", sa.Text(), nullable=True))
    op.add_column("functions", sa.Column("source_codes", sa.Text(), nullable=True))
    op.add_column("lines", sa.Column("source_code", sa.Text(), nullable=True))
    op.add_column("binaries", sa.Column("repo_last_update_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE binaries SET repo_last_update_at = repo_last_update")
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "binaries",
            "repo_last_update",
            type_=sa.BigInteger(),
            existing_nullable=True,
            postgresql_using="CAST(EXTRACT(EPOCH FROM repo_last_update) AS BIGINT)",
        )
    else:
        with op.batch_alter_table("binaries") as batch:
            batch.alter_column("repo_last_update", type_=sa.BigInteger(), existing_nullable=True)
        op.execute("UPDATE binaries SET repo_last_update = CAST(strftime('%s', repo_last_update_at) AS INTEGER)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "binaries",
            "repo_last_update",
            type_=sa.DateTime(timezone=True),
            existing_nullable=True,
            postgresql_using="repo_last_update_at",
        )
    else:
        with op.batch_alter_table("binaries") as batch:
            batch.alter_column("repo_last_update", type_=sa.DateTime(timezone=True), existing_nullable=True)
        op.execute("UPDATE binaries SET repo_last_update = repo_last_update_at")
    op.drop_column("binaries", "repo_last_update_at")
    op.drop_column("lines", "source_code")
    op.drop_column("functions", "source_codes")
    op.drop_column("functions", "top_comments")
