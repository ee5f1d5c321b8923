"""IAM policy documents (least privilege), S3 lifecycle rules for logs, and `fleet cost`."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from assemblage.db import models as m
from assemblage.db.session import make_engine, make_sessionmaker, session_scope
from assemblage.fleet.aws import apply_log_lifecycle
from assemblage.fleet.cost import estimate_run_cost
from assemblage.settings import SettingsError, load_settings

REPO = Path(__file__).resolve().parents[2]
AWS_DIR = REPO / "deploy" / "aws"


def policy(name: str) -> dict[str, set[str]]:
    """action -> the resources it is allowed on."""
    doc = json.loads((AWS_DIR / name).read_text())
    assert doc["Version"] == "2012-10-17"
    out: dict[str, set[str]] = {}
    for st in doc["Statement"]:
        assert st["Effect"] == "Allow" and "NotAction" not in st and "NotResource" not in st
        actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
        resources = [st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"]
        for a in actions:
            assert "*" not in a, f"{name}: wildcard action {a}"
            out.setdefault(a, set()).update(resources)
    return out


def test_worker_policy_reads_and_writes_the_corpus_prefix_only():
    p = policy("worker-policy.json")
    assert set(p) == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
        "s3:ListBucket",
        "ssm:GetParameter",
        "kms:Decrypt",
    }
    for a in ("s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"):
        assert p[a] == {"arn:aws:s3:::BUCKET/PREFIX/*"}
    assert p["s3:ListBucket"] == {"arn:aws:s3:::BUCKET"}
    assert p["ssm:GetParameter"] == {"arn:aws:ssm:REGION:ACCOUNT:parameter/assemblage/worker"}
    assert not any(a.startswith(("autoscaling:", "ec2:", "iam:")) or a == "s3:DeleteObject" for a in p)


def test_api_policy_reads_objects_and_sizes_only_assemblage_groups():
    p = policy("api-policy.json")
    assert "s3:PutObject" not in p and "s3:DeleteObject" not in p
    assert p["s3:GetObject"] == {"arn:aws:s3:::BUCKET/PREFIX/*"}
    group_arn = "arn:aws:autoscaling:REGION:ACCOUNT:autoScalingGroup:*:autoScalingGroupName/assemblage-*"
    for a in ("autoscaling:SetDesiredCapacity", "autoscaling:SetInstanceProtection", "autoscaling:CreateOrUpdateTags"):
        assert p[a] == {group_arn}
    # the only "*" resource is the describe call, which has no resource-level permissions
    assert [a for a, res in p.items() if "*" in res] == ["autoscaling:DescribeAutoScalingGroups"]
    assert p["ssm:GetParameter"] == {"arn:aws:ssm:REGION:ACCOUNT:parameter/assemblage/api"}


def test_policies_cover_the_calls_the_code_makes():
    """Every AWS call of the reconciler and the stores is in a policy (an omission would be a 403 in production)."""
    import inspect

    from assemblage.fleet import reconcile
    from assemblage.storage import s3

    api, worker, operator = policy("api-policy.json"), policy("worker-policy.json"), policy("operator-policy.json")
    src = inspect.getsource(reconcile)
    for call, action in (
        ("set_desired_capacity", "SetDesiredCapacity"),
        ("set_instance_protection", "SetInstanceProtection"),
        ("create_or_update_tags", "CreateOrUpdateTags"),
        ("describe_auto_scaling_groups", "DescribeAutoScalingGroups"),
    ):
        assert call in src and f"autoscaling:{action}" in api
    store = inspect.getsource(s3)
    for call, action in (
        ("put_object", "PutObject"),
        ("create_multipart_upload", "PutObject"),
        ("abort_multipart_upload", "AbortMultipartUpload"),
        ("head_object", "GetObject"),
    ):
        assert call in store and f"s3:{action}" in worker
    assert "s3:PutLifecycleConfiguration" in operator


LIFECYCLE_SETTINGS = """\
storage_url = "s3://corpus-bucket/v1"
[fleet]
region = "us-east-1"
log_infrequent_after_days = 45
log_expire_after_days = 400
"""


def test_lifecycle_rules_on_the_bucket(tmp_path, monkeypatch):
    """Applied to moto's S3: the real S3 server of the tests (Swift's s3api) does not implement
    PutBucketLifecycleConfiguration (it answers MalformedXML to any rule)."""
    for k, v in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("ASSEMBLAGE_S3_ENDPOINT_URL", raising=False)
    (tmp_path / "s.toml").write_text(LIFECYCLE_SETTINGS)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="corpus-bucket")
        apply_log_lifecycle(load_settings(tmp_path / "s.toml"))
        rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket="corpus-bucket")["Rules"]}
    logs = rules["assemblage-build-logs"]
    assert logs["Filter"]["Prefix"] == "v1/logs/"  # the store writes logs at PREFIX/logs/build-N.log
    assert logs["Transitions"] == [{"Days": 45, "StorageClass": "STANDARD_IA"}]
    assert logs["Expiration"]["Days"] == 400 and logs["Status"] == "Enabled"
    assert rules["assemblage-abort-stale-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert set(rules) == {"assemblage-build-logs", "assemblage-abort-stale-uploads"}  # binaries never expire


def test_lifecycle_refuses_a_local_store(tmp_path):
    from assemblage.errors import FleetError

    (tmp_path / "s.toml").write_text('storage_url = "file:///srv/objects"\n')
    with pytest.raises(FleetError, match="s3://BUCKET/PREFIX"):
        apply_log_lifecycle(load_settings(tmp_path / "s.toml"))


COST_SETTINGS = """\
database_url = "{db}"
[fleet.prices]
"c6i.2xlarge" = 0.36
"c6i.xlarge" = 0.18
[fleet.groups.linux]
name = "assemblage-linux"
max = 10
builds_per_instance = 4
instance_type = "c6i.2xlarge"
[fleet.groups.windows-cross]
name = "assemblage-wincross"
max = 4
builds_per_instance = 2
instance_type = "c6i.xlarge"
"""


def _run_with_builds(sessions) -> int:
    """Run 1: linux builds of 600 s and 1,200 s wall time, a windows-cross build of 360 s, a reused build,
    and 5 binaries."""
    with session_scope(sessions) as s:
        rec = m.Recipe(name="r", text="", sha256="0" * 64)
        s.add(rec)
        s.flush()
        run = m.Run(recipe_id=rec.id, status="finished")
        s.add(run)
        s.flush()
        t0 = m.utcnow()
        for i, (config, wall, reused) in enumerate(
            [
                ("linux-x86_64-gcc-12-O2", 600, False),
                ("linux-x86_64-gcc-12-O0", 1200, False),
                ("windows-x86_64-mingw-gcc-12-O2", 360, False),
                ("linux-x86_64-clang-19-O2", 5000, True),
            ]
        ):
            platform, arch, *rest = config.split("-")
            cfg = m.Configuration(
                identifier=config, platform=platform, arch=arch, toolchain="-".join(rest[:-1]), opt=rest[-1]
            )
            src = m.Source(run_id=run.id, position=i, spec={}, label="x", kind="path", name="x")
            s.add_all([cfg, src])
            s.flush()
            b = m.Build(
                run_id=run.id,
                source_id=src.id,
                configuration_id=cfg.id,
                status="succeeded",
                duration=wall - 10,
                analysis_duration=5,
                started_at=t0,
                finished_at=t0 + timedelta(seconds=wall),
                reused_from_id=None,
            )
            s.add(b)
            s.flush()
            if reused:
                b.reused_from_id = b.id - 1
            for j in range(2 if i < 2 else 1 if i == 2 else 0):
                s.add(
                    m.Binary(
                        file_name="a",
                        path=f"k{i}{j}",
                        platform=platform,
                        build_mode="Release",
                        optimization="O2",
                        hash=f"{i}{j}".ljust(64, "0"),
                        size=1,
                        build_id=b.id,
                        run_id=run.id,
                        source="x",
                        source_kind="path",
                        arch=arch,
                        format="elf",
                        toolchain="gcc-12",
                        config=config,
                        relpath=f"a{j}",
                    )
                )
        return run.id


def test_cost_per_thousand_binaries_from_measured_build_times(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    engine = make_engine(url)
    m.Base.metadata.create_all(engine)
    sessions = make_sessionmaker(engine)
    run_id = _run_with_builds(sessions)
    (tmp_path / "s.toml").write_text(COST_SETTINGS.format(db=url))
    settings = load_settings(tmp_path / "s.toml")
    report = estimate_run_cost(sessions, run_id, settings.fleet)
    linux = 1800 / 3600 / 4 * 0.36  # two builds, 30 min of wall time, 4 per c6i.2xlarge
    wincross = 360 / 3600 / 2 * 0.18
    assert {f.family: round(f.dollars, 9) for f in report.families} == {
        "linux": round(linux, 9),
        "windows-cross": round(wincross, 9),
    }
    assert report.binaries == 5
    assert report.per_1000_binaries == pytest.approx((linux + wincross) / 5 * 1000)

    from assemblage.cli.main import app

    r = CliRunner().invoke(app, ["fleet", "cost", str(run_id), "--json", "--settings", str(tmp_path / "s.toml")])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["per_1000_binaries"] == pytest.approx(report.per_1000_binaries)
    r = CliRunner().invoke(app, ["fleet", "cost", "999", "--settings", str(tmp_path / "s.toml")])
    assert r.exit_code == 2 and "run 999 does not exist" in r.output


def test_cost_names_the_families_without_a_price(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    engine = make_engine(url)
    m.Base.metadata.create_all(engine)
    sessions = make_sessionmaker(engine)
    run_id = _run_with_builds(sessions)
    (tmp_path / "s.toml").write_text(COST_SETTINGS.format(db=url).replace('"c6i.xlarge" = 0.18\n', ""))
    with pytest.raises(SettingsError, match="no price for the windows-cross builds"):
        estimate_run_cost(sessions, run_id, load_settings(tmp_path / "s.toml").fleet)


def test_secrets_command_writes_a_private_file_and_prints_no_value(tmp_path, monkeypatch):
    """What user-data runs at boot: the SSM SecureString becomes a 0600 environment file (moto's SSM)."""
    import stat

    from assemblage.cli.main import app

    for k, v in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(k, v)
    value = "# worker secrets\nASSEMBLAGE_SECRET_KEY=s3cret-key-value\nASSEMBLAGE_DATABASE_URL=postgresql+psycopg://a:pw@db/x\n"
    out = tmp_path / "etc" / "secrets.env"
    with mock_aws():
        boto3.client("ssm", region_name="eu-west-1").put_parameter(
            Name="/assemblage/worker", Value=value, Type="SecureString"
        )
        r = CliRunner().invoke(
            app, ["fleet", "secrets", "--parameter", "/assemblage/worker", "--region", "eu-west-1", "--out", str(out)]
        )
        missing = CliRunner().invoke(
            app, ["fleet", "secrets", "--parameter", "/nope", "--region", "eu-west-1", "--out", str(tmp_path / "x.env")]
        )
    assert r.exit_code == 0, r.output
    assert "s3cret" not in r.output and "pw@" not in r.output and "2 variable(s)" in r.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_text().splitlines() == [
        "ASSEMBLAGE_SECRET_KEY=s3cret-key-value",
        "ASSEMBLAGE_DATABASE_URL=postgresql+psycopg://a:pw@db/x",
    ]
    assert missing.exit_code != 0 and not (tmp_path / "x.env").exists()
