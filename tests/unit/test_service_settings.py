"""Settings: environment variables, a settings file, and refusing the default secret outside development."""

from __future__ import annotations

import pytest

from assemblage.settings import DEFAULT_SECRET, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for k in list(os.environ):
        if k.startswith("ASSEMBLAGE_"):
            monkeypatch.delenv(k)


def test_defaults_are_for_development():
    s = load_settings()
    assert s.environment == "development"
    assert s.database_url.startswith("sqlite")
    assert s.broker_url == "redis://127.0.0.1:6379/0"
    assert s.secret_key.get_secret_value() == DEFAULT_SECRET


def test_environment_variables(monkeypatch):
    monkeypatch.setenv("ASSEMBLAGE_DATABASE_URL", "postgresql+psycopg://u@db/assemblage")
    monkeypatch.setenv("ASSEMBLAGE_BROKER_URL", "redis://broker:6379/1")
    monkeypatch.setenv("ASSEMBLAGE_STORAGE_URL", "s3://bucket/prefix")
    monkeypatch.setenv("ASSEMBLAGE_S3_ENDPOINT_URL", "http://minio:9000")
    s = load_settings()
    assert s.is_postgres and s.broker_url.endswith("/1")
    assert (s.storage_url, s.s3_endpoint_url) == ("s3://bucket/prefix", "http://minio:9000")


def test_settings_are_frozen():
    s = load_settings()
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        s.broker_url = "redis://elsewhere"  # type: ignore[misc]


@pytest.mark.parametrize("env", ["test", "production"])
def test_default_secret_refused_outside_development(monkeypatch, env):
    monkeypatch.setenv("ASSEMBLAGE_ENVIRONMENT", env)
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        load_settings()
    monkeypatch.setenv("ASSEMBLAGE_SECRET_KEY", "short")
    with pytest.raises(SettingsError, match="at least 16"):
        load_settings()
    monkeypatch.setenv("ASSEMBLAGE_SECRET_KEY", "a-long-and-random-production-secret")
    assert load_settings().environment == env


def test_settings_file_adds_and_environment_wins(tmp_path, monkeypatch):
    f = tmp_path / "assemblage.toml"
    f.write_text('broker_url = "redis://from-file:6379/0"\nstorage_url = "s3://file-bucket/x"\n')
    monkeypatch.setenv("ASSEMBLAGE_STORAGE_URL", "s3://env-bucket/y")
    s = load_settings(f)
    assert s.broker_url == "redis://from-file:6379/0"
    assert s.storage_url == "s3://env-bucket/y"


def test_bad_values_are_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSEMBLAGE_HEARTBEAT_INTERVAL", "-1")
    with pytest.raises(SettingsError, match="heartbeat_interval"):
        load_settings()
    with pytest.raises(SettingsError, match="no such file"):
        load_settings(tmp_path / "missing.toml")


def test_settings_file_key_named_like_the_variable_is_an_error_not_ignored(tmp_path):
    """`ASSEMBLAGE_API_PORT = 9001` in the file used to pass the key check and then be ignored (api_port 8000)."""
    f = tmp_path / "assemblage.toml"
    f.write_text("ASSEMBLAGE_API_PORT = 9001\n")
    with pytest.raises(
        SettingsError, match=r"ASSEMBLAGE_API_PORT: .*without the ASSEMBLAGE_ prefix \(write api_port\)"
    ):
        load_settings(f)
    f.write_text("API_PORT = 9001\n")  # keys are case-insensitive, as the environment's are
    assert load_settings(f).api_port == 9001


def test_settings_error_is_in_the_errors_tree_with_exit_code_8():
    from assemblage import errors

    assert SettingsError is errors.SettingsError and issubclass(SettingsError, errors.AssemblageError)
    assert SettingsError.exit_code == 8 and "SettingsError" in errors.__all__


def test_settings_are_read_only_through_the_settings_module():
    """No module but assemblage/settings.py reads an ASSEMBLAGE_* variable from the environment (writing one
    for a child process is fine): every setting is typed, documented and checked in one place."""
    import ast
    from pathlib import Path

    import assemblage

    root = Path(assemblage.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "settings.py" and path.parent == root:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        consts = {
            t.id: n.value.value
            for n in ast.walk(tree)
            if isinstance(n, ast.Assign)
            for t in n.targets
            if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)
        }

        def name_of(node, consts=consts) -> str:
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                return node.value
            if isinstance(node, ast.Name):
                return str(consts.get(node.id, ""))
            return ""

        for node in ast.walk(tree):
            key = None
            if (
                isinstance(node, ast.Call)
                and node.args
                and (
                    (
                        isinstance(node.func, ast.Attribute)
                        and node.func.attr in ("get", "getenv", "pop")
                        and "environ" in ast.unparse(node.func.value) + node.func.attr
                    )
                    or ast.unparse(node.func) == "os.getenv"
                )
            ):
                key = name_of(node.args[0])
            elif (
                isinstance(node, ast.Subscript)
                and isinstance(node.ctx, ast.Load)
                and "environ" in ast.unparse(node.value)
            ):
                key = name_of(node.slice)
            elif (
                isinstance(node, ast.Compare)
                and any(isinstance(op, ast.In) for op in node.ops)
                and any("environ" in ast.unparse(c) for c in node.comparators)
            ):
                key = name_of(node.left)
            if key and key.startswith("ASSEMBLAGE_"):
                found.append(f"{path.relative_to(root.parent)}:{node.lineno} reads {key}")
    assert not found, "read these through assemblage.settings: " + "; ".join(found)


def test_read_setting_sees_every_change_of_the_environment_and_the_file(tmp_path, monkeypatch):
    from assemblage import settings

    f = tmp_path / "s.toml"
    f.write_text("keep_scratch = true\n")
    assert settings.read_setting("keep_scratch", "default") is False
    monkeypatch.setenv("ASSEMBLAGE_SETTINGS_FILE", str(f))
    assert settings.read_setting("keep_scratch", "default") is True
    f.write_text("keep_scratch = false\n")  # same size, maybe the same mtime: the bytes decide
    assert settings.read_setting("keep_scratch", "default") is False
    f.write_text("keep_scrach = true\n")  # a broken file: the default, and the error again on each read
    assert settings.read_setting("keep_scratch", "default") == "default"
    assert settings.read_setting("keep_scratch", "default") == "default"
    f.write_text("keep_scratch = true\n")
    monkeypatch.setenv("ASSEMBLAGE_KEEP_SCRATCH", "false")  # the environment wins, and is read afresh
    assert settings.read_setting("keep_scratch", "default") is False
    monkeypatch.delenv("ASSEMBLAGE_KEEP_SCRATCH")
    assert settings.read_setting("keep_scratch", "default") is True
