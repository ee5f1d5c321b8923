"""The service's commands: db upgrade (Alembic, here on SQLite), token create, worker's queue check."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from assemblage.cli.main import app

SECRET = "cli-test-secret-0123456789"


@pytest.fixture
def env(tmp_path, monkeypatch):
    from assemblage.settings import get_settings

    monkeypatch.setenv("ASSEMBLAGE_DATABASE_URL", f"sqlite:///{tmp_path}/svc.sqlite")
    monkeypatch.setenv("ASSEMBLAGE_SECRET_KEY", SECRET)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_db_upgrade_then_token_create(env):
    from sqlalchemy import create_engine, inspect

    from assemblage.db.auth import find_token
    from assemblage.db.session import make_sessionmaker

    runner = CliRunner()
    r = runner.invoke(app, ["db", "upgrade"])
    assert r.exit_code == 0, r.output
    engine = create_engine(f"sqlite:///{env}/svc.sqlite")
    assert {"api_tokens", "binaries", "workers", "alembic_version"} <= set(inspect(engine).get_table_names())
    r = runner.invoke(app, ["token", "create", "--scope", "submit", "--name", "ci"])
    assert r.exit_code == 0, r.output
    token = r.output.strip().splitlines()[-1]
    assert token.startswith("asm_")
    with make_sessionmaker(engine)() as s:
        row = find_token(s, token, SECRET)
        assert row is not None and row.scope == "submit" and row.name == "ci"
        assert find_token(s, token, "another-secret-entirely") is None


def test_token_scope_is_checked(env):
    r = CliRunner().invoke(app, ["token", "create", "--scope", "root"])
    assert r.exit_code != 0


def test_worker_refuses_unknown_queues(env):
    r = CliRunner().invoke(app, ["worker", "-Q", "linux,gpu"])
    assert r.exit_code != 0 and "gpu" in r.output


def test_commands_are_registered():
    r = CliRunner().invoke(app, ["--help"])
    for cmd in ("serve", "worker", "db", "token"):
        assert cmd in r.output


def test_token_create_before_db_upgrade_says_what_to_run(env):
    import subprocess
    import sys
    from pathlib import Path

    cli = Path(sys.executable).with_name("assemblage")
    r = subprocess.run([str(cli), "token", "create", "--scope", "read"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 7
    assert "Traceback" not in r.stderr and "no such table" not in r.stderr.lower()
    assert "run `assemblage db upgrade`" in r.stderr


def test_a_misspelt_setting_in_the_file_is_an_error(env):
    import subprocess
    import sys
    from pathlib import Path

    f = env / "settings.toml"
    f.write_text('databse_url = "sqlite:///elsewhere.sqlite"\nsweep_interval = 3\n')
    cli = Path(sys.executable).with_name("assemblage")
    r = subprocess.run([str(cli), "token", "list", "--settings", str(f)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 8, r.stderr
    assert "databse_url: unknown setting (did you mean database_url?)" in r.stderr
    assert "sweep_interval" not in r.stderr  # known keys are fine
    assert "Traceback" not in r.stderr
