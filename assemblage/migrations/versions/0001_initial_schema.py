"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 20:44:17.174734
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("scope", sa.String(length=10), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("hint", sa.String(length=12), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_table(
        "configurations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("identifier", sa.String(length=100), nullable=False),
        sa.Column("platform", sa.String(length=20), nullable=False),
        sa.Column("arch", sa.String(length=20), nullable=False),
        sa.Column("toolchain", sa.String(length=40), nullable=False),
        sa.Column("opt", sa.String(length=10), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("identifier"),
    )
    op.create_table(
        "recipes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_recipes_name"), "recipes", ["name"], unique=False)
    op.create_index(op.f("ix_recipes_sha256"), "recipes", ["sha256"], unique=False)
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("node", sa.String(length=200), nullable=False),
        sa.Column("hostname", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", sa.JSON(), nullable=False),
        sa.Column("build_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_workers_last_seen"), "workers", ["last_seen"], unique=False)
    op.create_index(op.f("ix_workers_node"), "workers", ["node"], unique=False)
    op.create_table(
        "runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("recipe_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("notes", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["recipe_id"],
            ["recipes.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_runs_recipe_id"), "runs", ["recipe_id"], unique=False)
    op.create_table(
        "sources",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("pinned_spec", sa.JSON(), nullable=True),
        sa.Column("label", sa.String(length=1000), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("pin", sa.String(length=200), nullable=True),
        sa.Column("commit", sa.String(length=64), nullable=True),
        sa.Column("version", sa.String(length=200), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("license", sa.String(length=200), nullable=True),
        sa.Column("url", sa.String(length=1000), nullable=True),
        sa.Column("last_update", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checkout", sa.String(length=4000), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "position"),
    )
    op.create_index(op.f("ix_sources_run_id"), "sources", ["run_id"], unique=False)
    op.create_table(
        "builds",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("source_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("configuration_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("build_system", sa.String(length=20), nullable=True),
        sa.Column("flags_requested", sa.JSON(), nullable=False),
        sa.Column("sandboxed", sa.Boolean(), nullable=True),
        sa.Column("runner", sa.String(length=20), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("analysis_duration", sa.Float(), nullable=True),
        sa.Column("log_key", sa.String(length=200), nullable=True),
        sa.Column("reused_from_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("opt_mismatches", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["configuration_id"],
            ["configurations.id"],
        ),
        sa.ForeignKeyConstraint(
            ["reused_from_id"],
            ["builds.id"],
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "source_id", "configuration_id"),
    )
    op.create_index("ix_builds_key_status", "builds", ["key", "status"], unique=False)
    op.create_index(op.f("ix_builds_run_id"), "builds", ["run_id"], unique=False)
    op.create_index(op.f("ix_builds_source_id"), "builds", ["source_id"], unique=False)
    op.create_index(op.f("ix_builds_status"), "builds", ["status"], unique=False)
    op.create_table(
        "binaries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("file_name", sa.String(length=500), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("platform", sa.String(length=20), nullable=False),
        sa.Column("build_mode", sa.String(length=20), nullable=False),
        sa.Column("toolset_version", sa.String(length=100), nullable=True),
        sa.Column("github_url", sa.String(length=1000), nullable=True),
        sa.Column("optimization", sa.String(length=10), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("license", sa.String(length=200), nullable=True),
        sa.Column("repo_commit_hash", sa.String(length=64), nullable=True),
        sa.Column("repo_last_update", sa.DateTime(timezone=True), nullable=True),
        sa.Column("build_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("source", sa.String(length=1000), nullable=False),
        sa.Column("source_kind", sa.String(length=20), nullable=False),
        sa.Column("source_version", sa.String(length=200), nullable=True),
        sa.Column("arch", sa.String(length=20), nullable=False),
        sa.Column("format", sa.String(length=10), nullable=False),
        sa.Column("bits", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=True),
        sa.Column("toolchain", sa.String(length=40), nullable=False),
        sa.Column("config", sa.String(length=100), nullable=False),
        sa.Column("relpath", sa.String(length=2000), nullable=False),
        sa.Column("flags_requested", sa.JSON(), nullable=False),
        sa.Column("flags_observed", sa.JSON(), nullable=True),
        sa.Column("opt_observed", sa.String(length=10), nullable=True),
        sa.Column("opt_mismatch", sa.Boolean(), nullable=False),
        sa.Column("producer", sa.Text(), nullable=True),
        sa.Column("elf_build_id", sa.String(length=80), nullable=True),
        sa.Column("text_sha256", sa.String(length=64), nullable=True),
        sa.Column("stripped_hash", sa.String(length=64), nullable=True),
        sa.Column("stripped_path", sa.String(length=500), nullable=True),
        sa.Column("function_count", sa.Integer(), nullable=False),
        sa.Column("analysis_error", sa.Text(), nullable=True),
        sa.Column("notes", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["build_id"],
            ["builds.id"],
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("build_id", "relpath"),
    )
    op.create_index("ix_binaries_arch", "binaries", ["arch", "id"], unique=False)
    op.create_index(op.f("ix_binaries_build_id"), "binaries", ["build_id"], unique=False)
    op.create_index(op.f("ix_binaries_config"), "binaries", ["config"], unique=False)
    op.create_index(
        "ix_binaries_filter", "binaries", ["platform", "arch", "toolchain", "optimization", "id"], unique=False
    )
    op.create_index("ix_binaries_format", "binaries", ["format", "id"], unique=False)
    op.create_index(op.f("ix_binaries_hash"), "binaries", ["hash"], unique=False)
    op.create_index("ix_binaries_license", "binaries", ["license", "id"], unique=False)
    op.create_index("ix_binaries_optimization", "binaries", ["optimization", "id"], unique=False)
    op.create_index("ix_binaries_run_id", "binaries", ["run_id", "id"], unique=False)
    op.create_index("ix_binaries_toolchain", "binaries", ["toolchain", "id"], unique=False)
    op.create_table(
        "functions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("binary_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=True),
        sa.Column("source_file", sa.Text(), nullable=True),
        sa.Column("prototype", sa.Text(), nullable=True),
        sa.Column("linkage_name", sa.Text(), nullable=True),
        sa.Column("demangled", sa.Text(), nullable=True),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("end", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("decl_line", sa.Integer(), nullable=True),
        sa.Column("compilation_unit", sa.Text(), nullable=True),
        sa.Column("is_static", sa.Boolean(), nullable=True),
        sa.Column("label_source", sa.String(length=10), nullable=False),
        sa.Column("pic_hash", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["binary_id"],
            ["binaries.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_functions_binary_id", "functions", ["binary_id", "id"], unique=False)
    op.create_index("ix_functions_name", "functions", ["name", "id"], unique=False)
    op.create_index(op.f("ix_functions_pic_hash"), "functions", ["pic_hash"], unique=False)
    op.create_table(
        "inlines",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("binary_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("callee", sa.Text(), nullable=False),
        sa.Column("caller", sa.Text(), nullable=True),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("end", sa.BigInteger(), nullable=False),
        sa.Column("call_file", sa.Text(), nullable=True),
        sa.Column("call_line", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["binary_id"],
            ["binaries.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_inlines_binary_id"), "inlines", ["binary_id"], unique=False)
    op.create_table(
        "pdbs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("binary_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("pdb_path", sa.String(length=500), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=True),
        sa.Column("guid", sa.String(length=64), nullable=True),
        sa.Column("age", sa.Integer(), nullable=True),
        sa.Column("codeview_path", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["binary_id"],
            ["binaries.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_pdbs_binary_id"), "pdbs", ["binary_id"], unique=False)
    op.create_table(
        "lines",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("function_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("line_number", sa.Integer(), nullable=False),
        sa.Column("rva", sa.BigInteger(), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("source_file", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["function_id"],
            ["functions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_lines_function_id"), "lines", ["function_id"], unique=False)
    op.create_table(
        "rvas",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("function_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("end", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["function_id"],
            ["functions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_rvas_function_id"), "rvas", ["function_id"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        # the filter columns are correlated (windows -> pe, mingw -> windows): tell the planner,
        # so a filtered page of binaries is not planned as a walk along the primary key
        op.execute(
            "CREATE STATISTICS IF NOT EXISTS st_binaries_filter (mcv, dependencies) "
            "ON platform, arch, toolchain, optimization, format FROM binaries"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP STATISTICS IF EXISTS st_binaries_filter")
    op.drop_index(op.f("ix_rvas_function_id"), table_name="rvas")
    op.drop_table("rvas")
    op.drop_index(op.f("ix_lines_function_id"), table_name="lines")
    op.drop_table("lines")
    op.drop_index(op.f("ix_pdbs_binary_id"), table_name="pdbs")
    op.drop_table("pdbs")
    op.drop_index(op.f("ix_inlines_binary_id"), table_name="inlines")
    op.drop_table("inlines")
    op.drop_index(op.f("ix_functions_pic_hash"), table_name="functions")
    op.drop_index("ix_functions_name", table_name="functions")
    op.drop_index("ix_functions_binary_id", table_name="functions")
    op.drop_table("functions")
    op.drop_index("ix_binaries_toolchain", table_name="binaries")
    op.drop_index("ix_binaries_run_id", table_name="binaries")
    op.drop_index("ix_binaries_optimization", table_name="binaries")
    op.drop_index("ix_binaries_license", table_name="binaries")
    op.drop_index(op.f("ix_binaries_hash"), table_name="binaries")
    op.drop_index("ix_binaries_format", table_name="binaries")
    op.drop_index("ix_binaries_filter", table_name="binaries")
    op.drop_index(op.f("ix_binaries_config"), table_name="binaries")
    op.drop_index(op.f("ix_binaries_build_id"), table_name="binaries")
    op.drop_index("ix_binaries_arch", table_name="binaries")
    op.drop_table("binaries")
    op.drop_index(op.f("ix_builds_status"), table_name="builds")
    op.drop_index(op.f("ix_builds_source_id"), table_name="builds")
    op.drop_index(op.f("ix_builds_run_id"), table_name="builds")
    op.drop_index("ix_builds_key_status", table_name="builds")
    op.drop_table("builds")
    op.drop_index(op.f("ix_sources_run_id"), table_name="sources")
    op.drop_table("sources")
    op.drop_index(op.f("ix_runs_recipe_id"), table_name="runs")
    op.drop_table("runs")
    op.drop_index(op.f("ix_workers_node"), table_name="workers")
    op.drop_index(op.f("ix_workers_last_seen"), table_name="workers")
    op.drop_table("workers")
    op.drop_index(op.f("ix_recipes_sha256"), table_name="recipes")
    op.drop_index(op.f("ix_recipes_name"), table_name="recipes")
    op.drop_table("recipes")
    op.drop_table("configurations")
    op.drop_table("api_tokens")
