"""workers.instance_id: the EC2 instance of a worker (for scale-in protection of busy instances)

Revision ID: h7_ops_worker_instance_id
Revises: h5_sourcetext_ui_a1
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "h7_ops_worker_instance_id"
down_revision: str | None = "h5_sourcetext_ui_a1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("workers", sa.Column("instance_id", sa.String(length=40), nullable=True))


def downgrade() -> None:
    op.drop_column("workers", "instance_id")
