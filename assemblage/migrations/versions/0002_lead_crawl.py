"""GitHub crawls as resumable jobs: crawls, crawl_windows, crawl_repos, http_cache; runs.expanded

Revision ID: 0002_lead_crawl
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_lead_crawl"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("runs", sa.Column("expanded", sa.Boolean(), nullable=False, server_default=sa.false()))
    # runs made before this revision were expanded when they got their sources
    op.execute("UPDATE runs SET expanded = TRUE WHERE EXISTS (SELECT 1 FROM sources WHERE sources.run_id = runs.id)")
    op.create_table(
        "crawls",
        sa.Column("id", Id, primary_key=True),
        sa.Column("run_id", Id, sa.ForeignKey("runs.id"), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("not_modified", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_crawls_run_id", "crawls", ["run_id"])
    op.create_table(
        "crawl_windows",
        sa.Column("id", Id, primary_key=True),
        sa.Column("crawl_id", Id, sa.ForeignKey("crawls.id"), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("base", sa.Text(), nullable=False),
        sa.Column("created", sa.String(30), nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("next_url", sa.Text(), nullable=True),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=True),
    )
    op.create_index("ix_crawl_windows_crawl", "crawl_windows", ["crawl_id", "status", "id"])
    op.create_table(
        "crawl_repos",
        sa.Column("id", Id, primary_key=True),
        sa.Column("crawl_id", Id, sa.ForeignKey("crawls.id"), nullable=False),
        sa.Column("full_name", sa.String(300), nullable=False),
        sa.Column("clone_url", sa.String(1000), nullable=False),
        sa.Column("default_branch", sa.String(300), nullable=False),
        sa.Column("license", sa.String(100), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(40), nullable=True),
        sa.Column("commit", sa.String(40), nullable=True),
        sa.Column("tree", sa.String(40), nullable=True),
        sa.Column("build_system", sa.String(20), nullable=True),
        sa.Column("source_id", Id, sa.ForeignKey("sources.id"), nullable=True),
        sa.UniqueConstraint("crawl_id", "full_name"),
    )
    op.create_index("ix_crawl_repos_todo", "crawl_repos", ["crawl_id", "status", "id"])
    op.create_table(
        "http_cache",
        sa.Column("url", sa.String(2000), primary_key=True),
        sa.Column("etag", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("http_cache")
    op.drop_index("ix_crawl_repos_todo", table_name="crawl_repos")
    op.drop_table("crawl_repos")
    op.drop_index("ix_crawl_windows_crawl", table_name="crawl_windows")
    op.drop_table("crawl_windows")
    op.drop_index("ix_crawls_run_id", table_name="crawls")
    op.drop_table("crawls")
    op.drop_column("runs", "expanded")
