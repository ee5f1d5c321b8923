"""runs.submitted_by: the API token that submitted a run (only it, or an admin token, may cancel the run)

Revision ID: 0005_lead_run_owner
Revises: 0004_lead_leases
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_lead_run_owner"
down_revision: str | None = "0004_lead_leases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("submitted_by", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("runs", "submitted_by")
