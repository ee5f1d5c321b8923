"""functions.size_inferred: the extent of a size-0 symbol was inferred

Revision ID: 0003_lead_labels
Revises: 0002_lead_crawl
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_lead_labels"
down_revision: str | None = "0002_lead_crawl"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("functions", sa.Column("size_inferred", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.drop_column("functions", "size_inferred")
