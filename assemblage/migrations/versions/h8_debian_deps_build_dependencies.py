"""builds: the Debian packages installed for a build and its dependency image

Revision ID: h8_debian_deps_build_deps
Revises: h4_corpus_export
Create Date: 2026-11-30 06:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "h8_debian_deps_build_deps"
down_revision: str | None = "h4_corpus_export"
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
