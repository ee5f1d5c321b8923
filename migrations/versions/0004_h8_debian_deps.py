"""builds: the Debian packages installed for a build and its dependency image

Revision ID: 0004_h8_debian_deps
Revises: 0003_lead_labels
Create Date: 2026-11-30 06:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_h8_debian_deps"
down_revision: str | None = "0003_lead_labels"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("builds", sa.Column("dependencies", sa.JSON(), nullable=True))
    op.add_column("builds", sa.Column("dependency_image", sa.String(length=200), nullable=True))
    op.add_column("builds", sa.Column("dependency_image_digest", sa.String(length=80), nullable=True))


def downgrade() -> None:
    op.drop_column("builds", "dependency_image_digest")
    op.drop_column("builds", "dependency_image")
    op.drop_column("builds", "dependencies")
