"""`assemblage fleet user-data`: cloud-init that parses and a setup script that shellcheck passes, PowerShell for
MSVC hosts, and no secret in either."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from assemblage.cli.main import app
from assemblage.errors import FleetError
from assemblage.fleet.userdata import SETUP_PATH, linux_user_data, windows_user_data
from assemblage.settings import load_settings
from tests.conftest import need

SETTINGS = """\
environment = "production"
database_url = "postgresql+psycopg://assemblage:db-pass-s3cret@db.example:5432/assemblage"
broker_url = "redis://:broker-pass-s3cret@broker.example:6379/0"
storage_url = "s3://assemblage-corpus/v1"
secret_key = "the-secret-key-never-in-user-data"
drain_timeout = 80

[fleet]
region = "eu-west-1"
secrets_parameter = "/assemblage/worker"
package = "assemblage[service]==0.1.0"

[fleet.groups.linux]
name = "assemblage-linux"
max = 10
builds_per_instance = 3
queues = ["crawl", "linux"]
"""
SECRETS = ("db-pass-s3cret", "broker-pass-s3cret", "the-secret-key-never-in-user-data")


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    p = tmp_path / "fleet.toml"
    p.write_text(SETTINGS)
    return p


def test_cloud_init_parses_and_runs_the_worker_unit(settings_file):
    text = linux_user_data(load_settings(settings_file), ["crawl", "linux"])
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    files = {f["path"]: f for f in doc["write_files"]}
    assert doc["runcmd"] == [[SETUP_PATH]] and files[SETUP_PATH]["permissions"] == "0700"
    unit = files["/etc/systemd/system/assemblage-worker.service"]["content"]
    assert "ExecStart=/opt/assemblage/venv/bin/assemblage worker -Q crawl,linux -c 3 -n linux@%H" in unit
    assert "KillMode=mixed" in unit and "TimeoutStopSec=140" in unit  # drains before systemd kills
    assert "EnvironmentFile=-/etc/assemblage/secrets.env" in unit
    env = dict(line.split("=", 1) for line in files["/etc/assemblage/worker.env"]["content"].splitlines())
    assert env["ASSEMBLAGE_INSTANCE_METADATA_URL"] == '"http://169.254.169.254"'  # heartbeats carry the instance
    assert env["ASSEMBLAGE_STORAGE_URL"] == '"s3://assemblage-corpus/v1"'
    assert "ASSEMBLAGE_DATABASE_URL" not in env and "ASSEMBLAGE_BROKER_URL" not in env  # passwords: from SSM
    script = files[SETUP_PATH]["content"]
    assert "gcc-12" in script and "clang-19" in script and "gcc-mingw-w64" not in script
    assert "assemblage fleet secrets --parameter" in script and "set -x" not in script
    for secret in SECRETS:
        assert secret not in text


def test_setup_script_passes_shellcheck(settings_file, tmp_path):
    need("shellcheck")
    for queues in (["crawl", "linux"], ["windows-cross"]):
        doc = yaml.safe_load(linux_user_data(load_settings(settings_file), queues))
        script = next(f["content"] for f in doc["write_files"] if f["path"] == SETUP_PATH)
        path = tmp_path / "setup.sh"
        path.write_text(script)
        r = subprocess.run(
            ["shellcheck", "--shell=bash", "--severity=style", str(path)], capture_output=True, text=True
        )
        assert r.returncode == 0, r.stdout + r.stderr


def test_shellcheck_catches_a_broken_script(tmp_path):
    """The check above can fail: an unquoted variable is reported."""
    need("shellcheck")
    path = tmp_path / "bad.sh"
    path.write_text("#!/bin/bash\nrm -rf $DIR/*\n")
    assert subprocess.run(["shellcheck", str(path)], capture_output=True).returncode != 0


def test_windows_user_data_is_powershell_without_secrets(settings_file):
    text = windows_user_data(load_settings(settings_file), ["msvc"], concurrency=2)
    assert text.startswith("<powershell>\n") and "</powershell>" in text
    assert "worker -Q 'msvc' --pool solo -c 1" in text and "$i -le 2" in text
    assert "Get-SSMParameterValue -Name $parameter -WithDecryption $true" in text
    assert "'ASSEMBLAGE_STORAGE_URL=s3://assemblage-corpus/v1'" in text
    for secret in SECRETS:
        assert secret not in text


def test_queue_families_must_match_the_platform(settings_file):
    s = load_settings(settings_file)
    with pytest.raises(FleetError, match="Windows hosts"):
        linux_user_data(s, ["msvc"])
    with pytest.raises(FleetError, match="unknown queue"):
        linux_user_data(s, ["gpu"])


def test_secrets_without_a_parameter_are_refused(tmp_path):
    p = tmp_path / "leaky.toml"
    p.write_text(SETTINGS.replace('secrets_parameter = "/assemblage/worker"\n', ""))
    with pytest.raises(FleetError, match="must not go into user-data") as exc:
        linux_user_data(load_settings(p), ["linux"])
    assert "ASSEMBLAGE_DATABASE_URL" in str(exc.value) and "db-pass" not in str(exc.value)


def test_cli_prints_user_data(settings_file, monkeypatch):
    monkeypatch.delenv("ASSEMBLAGE_SECRET_KEY", raising=False)
    r = CliRunner().invoke(app, ["fleet", "user-data", "--queues", "linux", "--settings", str(settings_file)])
    assert r.exit_code == 0, r.output
    assert yaml.safe_load(r.output)["runcmd"] == [[SETUP_PATH]]
    r = CliRunner().invoke(app, ["fleet", "user-data", "--queues", "msvc", "--settings", str(settings_file)])
    assert r.exit_code == 0 and r.output.startswith("<powershell>")
