"""sources.worker and crawls.worker: the process holding a fetch or a crawl, so a dead one's work is sent again

Revision ID: 0004_lead_leases
Revises: h8_debian_deps_build_deps
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_lead_leases"
down_revision: str | None = "h8_debian_deps_build_deps"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sources", sa.Column("worker", sa.String(200), nullable=True))
    op.add_column("crawls", sa.Column("worker", sa.String(200), nullable=True))


def downgrade() -> None:
    op.drop_column("crawls", "worker")
    op.drop_column("sources", "worker")
