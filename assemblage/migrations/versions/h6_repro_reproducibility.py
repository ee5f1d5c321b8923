"""h6-repro: build environments, source dates, rebuild origin, verifications

Revision ID: h6_repro_a1
Revises: h7_ops_worker_instance_id
Create Date: 2026-11-30 05:56:31.752655
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "h6_repro_a1"
down_revision: str | None = "h7_ops_worker_instance_id"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "verifications",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("lock_sha256", sa.String(length=64), nullable=False),
        sa.Column("sample", sa.Integer(), nullable=True),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("builds", sa.Integer(), nullable=False),
        sa.Column("compared", sa.Integer(), nullable=False),
        sa.Column("identical", sa.Integer(), nullable=False),
        sa.Column("drift", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_verifications_run_id"), "verifications", ["run_id"], unique=False)
    op.create_table(
        "verification_differences",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("verification_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("build_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("binary_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("source", sa.String(length=1000), nullable=False),
        sa.Column("config", sa.String(length=100), nullable=False),
        sa.Column("relpath", sa.String(length=2000), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("original_sha256", sa.String(length=64), nullable=True),
        sa.Column("rebuilt_sha256", sa.String(length=64), nullable=True),
        sa.Column("causes", sa.JSON(), nullable=False),
        sa.Column("sections", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["binary_id"],
            ["binaries.id"],
        ),
        sa.ForeignKeyConstraint(
            ["build_id"],
            ["builds.id"],
        ),
        sa.ForeignKeyConstraint(
            ["verification_id"],
            ["verifications.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_verification_differences_verification_id"),
        "verification_differences",
        ["verification_id"],
        unique=False,
    )
    op.add_column("builds", sa.Column("environment", sa.JSON(), nullable=True))
    op.add_column("runs", sa.Column("lock_origin", sa.JSON(), nullable=True))
    op.add_column("sources", sa.Column("source_date_epoch", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("sources", "source_date_epoch")
    op.drop_column("runs", "lock_origin")
    op.drop_column("builds", "environment")
    op.drop_index(op.f("ix_verification_differences_verification_id"), table_name="verification_differences")
    op.drop_table("verification_differences")
    op.drop_index(op.f("ix_verifications_run_id"), table_name="verifications")
    op.drop_table("verifications")
