"""The service's database: Alembic migrations match the models, two upgrades at once are safe
(advisory lock), SQLite migrates too, and ground truth goes in fast in bulk."""

from __future__ import annotations

import subprocess
import time
import uuid
from datetime import UTC
from types import SimpleNamespace

import pytest
from sqlalchemy import create_engine, inspect, text

from tests.integration.service_stack import assemblage_cmd, create_database, drop_database, require_services

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, scope="module")
def _services_up() -> None:
    require_services("postgresql")


@pytest.fixture
def pg_db():
    name = f"asm_db_{uuid.uuid4().hex[:8]}"
    url = create_database(name)
    yield url
    drop_database(name)


def test_migrations_match_the_models(pg_db):
    """Fails when someone changes assemblage/db/models.py (or auth.py) without a migration."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import assemblage.db.auth  # noqa: F401
    from assemblage.db.models import Base

    engine = create_engine(pg_db)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations differ (write a migration: alembic revision --autogenerate): {diff}"


def test_upgrade_is_idempotent_and_concurrent_upgrades_wait_for_each_other(tmp_path):
    name = f"asm_db_{uuid.uuid4().hex[:8]}"
    from sqlalchemy import create_engine as ce

    from tests.integration.service_stack import PG_ADMIN_URL

    admin = ce(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        env = {"ASSEMBLAGE_DATABASE_URL": url, "PATH": "/usr/bin:/bin"}
        import os

        env = {**os.environ, **env}
        procs = [
            subprocess.Popen(
                assemblage_cmd("db", "upgrade"), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=120)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        again = subprocess.run(assemblage_cmd("db", "upgrade"), env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        engine = create_engine(url)
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as c:
            version = c.execute(text("SELECT version_num FROM alembic_version")).scalar()
        engine.dispose()
        assert {"binaries", "functions", "rvas", "lines", "api_tokens", "workers"} <= tables
        from alembic.script import ScriptDirectory

        from assemblage.cli.service import alembic_config

        heads = ScriptDirectory.from_config(alembic_config(url)).get_heads()
        assert len(heads) == 1, f"the migrations have several heads: {heads}"
        assert version == heads[0]
    finally:
        drop_database(name)


def test_sqlite_migrates_with_the_same_models(tmp_path):
    from assemblage.cli.service import upgrade_database

    url = f"sqlite:///{tmp_path}/x.sqlite"
    upgrade_database(url)
    engine = create_engine(url)
    assert "binaries" in inspect(engine).get_table_names()
    engine.dispose()


_ONE_BINARY = [
    "INSERT INTO recipes (id, name, description, text, sha256, created_at) VALUES (1, 'r', '', '', 'x', :t)",
    "INSERT INTO runs (id, recipe_id, status, notes, options, created_at) VALUES (1, 1, 'finished', '[]', '{}', :t)",
    "INSERT INTO sources (id, run_id, position, spec, label, kind, name, status, last_update)"
    " VALUES (1, 1, 0, '{}', 'p', 'path', 'p', 'fetched', :t)",
    "INSERT INTO configurations (id, identifier, platform, arch, toolchain, opt)"
    " VALUES (1, 'linux-x86_64-gcc-12-O2', 'linux', 'x86_64', 'gcc-12', 'O2')",
    "INSERT INTO builds (id, run_id, source_id, configuration_id, status, flags_requested, attempts, opt_mismatches)"
    " VALUES (1, 1, 1, 1, 'succeeded', '[]', 1, 0)",
    "INSERT INTO binaries (id, file_name, path, platform, build_mode, optimization, hash, size, repo_last_update,"
    " build_id, run_id, source, source_kind, arch, format, toolchain, config, relpath, flags_requested, opt_mismatch,"
    " function_count, notes) VALUES (1, 'a', 'objects/a', 'linux', 'Release', 'O2', 'h', 1, :t, 1, 1, 'p', 'path',"
    " 'x86_64', 'elf', 'gcc-12', 'linux-x86_64-gcc-12-O2', 'a', '[]', false, 0, '{}')",
]


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_source_text_migration_moves_repo_last_update_to_unix_seconds(backend, pg_db, tmp_path):
    """0001 kept repo_last_update as a timestamp; the published type is Unix seconds, ours moves beside it."""
    from datetime import datetime

    from assemblage.cli.service import upgrade_database

    url = f"sqlite:///{tmp_path}/m.sqlite" if backend == "sqlite" else pg_db
    when = datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)
    if backend == "postgresql":  # pg_db is at head: start again from 0001
        from alembic import command

        from assemblage.cli.service import alembic_config

        command.downgrade(alembic_config(url), "0001")
    else:
        upgrade_database(url, "0001")
    engine = create_engine(url)
    with engine.begin() as c:
        for stmt in _ONE_BINARY:
            c.execute(text(stmt), {"t": when if backend == "postgresql" else "2024-03-04 05:06:07.000000"})
    engine.dispose()
    upgrade_database(url)
    engine = create_engine(url)
    with engine.connect() as c:
        seconds, at = c.execute(text("SELECT repo_last_update, repo_last_update_at FROM binaries")).one()
        cols = {col["name"] for t in ("functions", "lines") for col in inspect(c).get_columns(t)}
    engine.dispose()
    assert seconds == int(when.timestamp()) == 1709528767
    assert {"top_comments", "source_codes", "source_code"} <= cols
    assert at is not None


def test_indexes_serve_the_api_queries(pg_db):
    engine = create_engine(pg_db)
    insp = inspect(engine)
    idx = {i["name"]: i["column_names"] for t in ("binaries", "functions") for i in insp.get_indexes(t)}
    engine.dispose()
    assert idx["ix_binaries_filter"] == ["platform", "arch", "toolchain", "optimization", "id"]
    assert idx["ix_functions_name"] == ["name", "id"]
    assert idx["ix_functions_binary_id"] == ["binary_id", "id"]


def synthetic_analysis(n_funcs: int, lines_per: int):
    f = [
        SimpleNamespace(
            name=f"fn_{i}",
            sha256="a" * 64,
            source_file="src/x.c",
            prototype=None,
            linkage_name=None,
            demangled=None,
            start=0x1000 + 64 * i,
            end=0x1000 + 64 * i + 60,
            size=60,
            decl_line=i,
            compilation_unit="x.c",
            is_static=False,
            label_source="dwarf",
            pic_hash=None,
            size_inferred=False,
            ranges=[SimpleNamespace(start=0x1000 + 64 * i, end=0x1000 + 64 * i + 60)],
            lines=[
                SimpleNamespace(line=i + k, address=0x1000 + 64 * i + 4 * k, length=4, source_file="src/x.c")
                for k in range(lines_per)
            ],
        )
        for i in range(n_funcs)
    ]
    return SimpleNamespace(functions=f, inlinings=[])


def test_bulk_insert_of_ground_truth_is_fast(pg_db):
    from assemblage.db import models as m
    from assemblage.db.session import make_engine, make_sessionmaker, session_scope
    from assemblage.pipeline.steps import insert_ground_truth

    sessions = make_sessionmaker(make_engine(pg_db))
    with session_scope(sessions) as s:
        bid = _binary_row(s, m)
    a = synthetic_analysis(10_000, 3)  # 10k functions + 10k ranges + 30k lines = 50k rows
    t0 = time.perf_counter()
    with session_scope(sessions) as s:
        insert_ground_truth(s, bid, a)
    elapsed = time.perf_counter() - t0
    with sessions() as s:
        assert s.scalar(text("SELECT count(*) FROM functions WHERE binary_id = :b"), {"b": bid}) == 10_000
        assert s.scalar(text("SELECT count(*) FROM lines")) == 30_000
        first = s.execute(
            text(
                "SELECT f.name, r.start FROM functions f JOIN rvas r ON r.function_id = f.id"
                " WHERE f.binary_id = :b ORDER BY f.id LIMIT 1"
            ),
            {"b": bid},
        ).one()
    assert tuple(first) == ("fn_0", 0x1000)
    rate = 50_000 / elapsed
    print(f"ground truth insert: 50,000 rows in {elapsed:.2f}s = {rate:,.0f} rows/s")
    assert rate > 8_000, (
        f"{rate:,.0f} rows/s"
    )  # a regression guard on a shared 2-core machine; bench/service.py measures


def _binary_row(s, m) -> int:
    """A recipe, run, source, configuration, build and one binary; returns the binary's id."""
    rec = m.Recipe(name="b", text="x", sha256="0" * 64)
    s.add(rec)
    s.flush()
    run = m.Run(recipe_id=rec.id)
    s.add(run)
    s.flush()
    src = m.Source(run_id=run.id, position=0, spec={}, label="x", kind="path", name="x")
    cfg = m.Configuration(
        identifier="linux-x86_64-gcc-12-O0", platform="linux", arch="x86_64", toolchain="gcc-12", opt="O0"
    )
    s.add_all([src, cfg])
    s.flush()
    b = m.Build(run_id=run.id, source_id=src.id, configuration_id=cfg.id)
    s.add(b)
    s.flush()
    binary = m.Binary(
        file_name="x",
        path="k",
        platform="linux",
        build_mode="Debug",
        optimization="O0",
        hash="0" * 64,
        size=1,
        build_id=b.id,
        run_id=run.id,
        source="x",
        source_kind="path",
        arch="x86_64",
        format="elf",
        toolchain="gcc-12",
        config=cfg.identifier,
        relpath="x",
    )
    s.add(binary)
    s.flush()
    return binary.id


def _awkward_analysis():
    """Functions whose text needs escaping in COPY, NULLs everywhere they may be, and ranges of every shape."""
    names = ["plain", "tab\there", "new\nline", "back\\slash", "cr\rhere", "\\N", "ünïcødé", "operator<<(a, b)", ""]
    fs = []
    for i, name in enumerate(names):
        ranges = (
            []
            if i % 3 == 0
            else [
                SimpleNamespace(start=0x2000 + 256 * i + 16 * k, end=0x2000 + 256 * i + 16 * k + 8)
                for k in range(i % 3)
            ]
        )
        fs.append(
            SimpleNamespace(
                name=name,
                sha256=None if i % 2 else f"{i:064x}",
                source_file=None if i == 1 else f"src/{name}.c",
                prototype=f"int {name}(void)\t// {i}" if i % 2 else None,
                linkage_name=f"_Z{i}{name}" if i % 4 else None,
                demangled=None if i % 4 else name,
                start=0x2000 + 256 * i,
                end=0x2000 + 256 * i + 200 + i,
                size=200 + i,
                decl_line=None if i == 2 else i * 10,
                compilation_unit=None if i == 3 else "cu\\1.c",
                is_static=None if i == 4 else bool(i % 2),
                label_source="dwarf" if i % 2 else "symtab",
                pic_hash=f"{i + 7:064x}" if i % 2 else None,
                ranges=ranges,
                size_inferred=i == 6,
                lines=[
                    SimpleNamespace(
                        line=i + k,
                        address=0x2000 + 256 * i + 4 * k,
                        length=4 + k,
                        source_file=None if k == 1 else f"src/{name}.c",
                    )
                    for k in range(i % 4)
                ],
            )
        )
    return SimpleNamespace(functions=fs, inlinings=[])


def _stored(s, bid: int):
    funcs = s.execute(
        text(
            'SELECT id, name, hash, source_file, prototype, linkage_name, demangled, start, "end", size, decl_line,'
            " compilation_unit, is_static, label_source, pic_hash, size_inferred FROM functions WHERE binary_id = :b"
            " ORDER BY id"
        ),
        {"b": bid},
    ).all()
    out = []
    for fid, *cols in funcs:
        rvas = s.execute(text('SELECT start, "end" FROM rvas WHERE function_id = :f ORDER BY id'), {"f": fid}).all()
        lines = s.execute(
            text("SELECT line_number, rva, length, source_file FROM lines WHERE function_id = :f ORDER BY id"),
            {"f": fid},
        ).all()
        out.append((tuple(cols), [tuple(r) for r in rvas], [tuple(r) for r in lines]))
    return out


def _expected(a):
    return [
        (
            (
                f.name,
                f.sha256,
                f.source_file,
                f.prototype,
                f.linkage_name,
                f.demangled,
                f.start,
                f.end,
                f.size,
                f.decl_line,
                f.compilation_unit,
                f.is_static,
                f.label_source,
                f.pic_hash,
                f.size_inferred,
            ),
            [(r.start, r.end) for r in f.ranges] or [(f.start, f.end)],
            [(ln.line, ln.address, ln.length, ln.source_file) for ln in f.lines],
        )
        for f in a.functions
    ]


def test_stored_ground_truth_equals_the_analysis_on_postgres_and_sqlite(pg_db, tmp_path):
    """The COPY path (PostgreSQL) and the INSERT path (SQLite) store exactly the analysis, in its order."""
    from assemblage.db import models as m
    from assemblage.db.session import init_schema, make_engine, make_sessionmaker, session_scope, sqlite_url
    from assemblage.pipeline.steps import insert_ground_truth

    a = _awkward_analysis()
    for url in (pg_db, sqlite_url(tmp_path / "gt.sqlite")):
        engine = make_engine(url)
        if url.startswith("sqlite"):
            init_schema(engine)
        sessions = make_sessionmaker(engine)
        with session_scope(sessions) as s:
            bid = _binary_row(s, m)
            insert_ground_truth(s, bid, a)
        with sessions() as s:
            assert _stored(s, bid) == _expected(a), url
        engine.dispose()
