"""`fleet reconcile` against moto's EC2 and Auto Scaling emulation (no AWS is reachable here): desired capacity
from queue depths and running builds, min/max, the cooldown, scale-in protection of busy instances."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from assemblage.db import models as m
from assemblage.db.session import make_engine, make_sessionmaker, session_scope
from assemblage.errors import FleetError
from assemblage.fleet.reconcile import LAST_CHANGE_TAG, reconcile
from assemblage.settings import load_settings
from tests.conftest import unavailable

REGION = "us-east-1"


def settings_text(db_url: str, broker: str = "redis://127.0.0.1:1/0", **group) -> str:
    g = {"name": "assemblage-linux", "min": 0, "max": 6, "builds_per_instance": 4, **group}
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in g.items())
    return (
        f'database_url = "{db_url}"\nbroker_url = "{broker}"\nworker_dead_after = 30\n\n'
        f'[fleet]\nregion = "{REGION}"\ncooldown = 300\n\n[fleet.groups.linux]\n{lines}\nqueues = ["crawl", "linux"]\n'
    )


@pytest.fixture
def aws(monkeypatch):
    keys = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}
    for k, v in keys.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        ami = ec2.describe_images()["Images"][0]["ImageId"]
        ec2.create_launch_template(
            LaunchTemplateName="assemblage-worker", LaunchTemplateData={"ImageId": ami, "InstanceType": "c6i.2xlarge"}
        )
        asg = boto3.client("autoscaling", region_name=REGION)
        asg.create_auto_scaling_group(
            AutoScalingGroupName="assemblage-linux",
            MinSize=0,
            MaxSize=10,
            DesiredCapacity=2,
            AvailabilityZones=[f"{REGION}a"],
            LaunchTemplate={"LaunchTemplateName": "assemblage-worker"},
        )
        yield asg


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'fleet.sqlite'}"
    engine = make_engine(url)
    m.Base.metadata.create_all(engine)
    return url, make_sessionmaker(engine)


def group(asg) -> dict:
    return asg.describe_auto_scaling_groups(AutoScalingGroupNames=["assemblage-linux"])["AutoScalingGroups"][0]


def add_running(
    sessions, n: int, *, config: str = "linux-x86_64-gcc-12-O2", instance: str | None = None, fresh: bool = True
) -> None:
    """``n`` running builds, each with the heartbeat row of the process building it."""
    with session_scope(sessions) as s:
        cfg = s.query(m.Configuration).filter_by(identifier=config).one_or_none()
        if cfg is None:
            platform, arch, *rest = config.split("-")
            cfg = m.Configuration(
                identifier=config, platform=platform, arch=arch, toolchain="-".join(rest[:-1]), opt=rest[-1]
            )
            s.add(cfg)
        if s.get(m.Run, 1) is None:
            rec = m.Recipe(name="r", text="", sha256="0" * 64)
            s.add(rec)
            s.flush()
            s.add(m.Run(id=1, recipe_id=rec.id, status="running"))
            s.flush()
        seen = m.utcnow() - timedelta(seconds=0 if fresh else 600)
        for _ in range(n):
            pos = s.query(m.Source).count()
            src = m.Source(run_id=1, position=pos, spec={}, label=f"s{pos}", kind="path", name=f"s{pos}")
            s.add(src)
            s.flush()
            b = m.Build(run_id=1, source_id=src.id, configuration_id=cfg.id, status="running")
            s.add(b)
            s.flush()
            wid = f"linux@host/abc/{b.id}"
            b.worker = wid
            s.add(
                m.Worker(
                    id=wid,
                    kind="process",
                    node="linux@host",
                    hostname="host",
                    pid=b.id,
                    queues=[],
                    build_id=b.id,
                    instance_id=instance,
                    started_at=seen,
                    last_seen=seen,
                )
            )


def test_scales_out_to_the_work_and_protects_busy_instances(aws, db, tmp_path):
    url, sessions = db
    busy = group(aws)["Instances"][0]["InstanceId"]
    add_running(sessions, 2, instance=busy)
    add_running(sessions, 1, config="windows-x86_64-mingw-gcc-12-O2")  # another family, on a machine outside AWS
    (tmp_path / "s.toml").write_text(settings_text(url))
    settings = load_settings(tmp_path / "s.toml")
    depths = {"crawl": 2, "linux": 10, "windows-cross": 50, "msvc": 0, "unacked": 7}

    planned = reconcile(settings, sessions, depths, dry_run=True)
    assert [(d.current, d.desired, d.demand, d.protect) for d in planned] == [(2, 4, 14, (busy,))]
    assert group(aws)["DesiredCapacity"] == 2 and not any(i["ProtectedFromScaleIn"] for i in group(aws)["Instances"])

    now = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    [d] = reconcile(settings, sessions, depths, now=now)
    assert d.applied and d.desired == 4  # ceil((2 waiting on crawl + 10 on linux + 2 running) / 4)
    g = group(aws)
    assert g["DesiredCapacity"] == 4 and len(g["Instances"]) == 4
    assert {i["InstanceId"] for i in g["Instances"] if i["ProtectedFromScaleIn"]} == {busy}
    assert {t["Key"]: t["Value"] for t in g["Tags"]}[LAST_CHANGE_TAG] == now.isoformat(timespec="seconds")


def test_scale_in_waits_for_the_cooldown_and_spares_busy_instances(aws, db, tmp_path):
    url, sessions = db
    (tmp_path / "s.toml").write_text(settings_text(url))
    settings = load_settings(tmp_path / "s.toml")
    t0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    reconcile(settings, sessions, {"linux": 24}, now=t0)
    assert group(aws)["DesiredCapacity"] == 6  # the group's max in the settings (the ASG allows 10)
    busy = sorted(i["InstanceId"] for i in group(aws)["Instances"])[3]
    add_running(sessions, 1, instance=busy)
    add_running(sessions, 1, instance="i-00000000000000000", fresh=False)  # a dead worker's row: not busy

    [d] = reconcile(settings, sessions, {"linux": 0}, now=t0 + timedelta(seconds=60))
    assert (d.current, d.desired) == (6, 6) and "cooldown" in d.reason
    assert group(aws)["DesiredCapacity"] == 6
    assert {i["InstanceId"] for i in group(aws)["Instances"] if i["ProtectedFromScaleIn"]} == {busy}

    [d] = reconcile(settings, sessions, {"linux": 0}, now=t0 + timedelta(seconds=301))
    assert (d.current, d.desired) == (6, 1)  # 2 running builds (one of a dead worker, not yet swept) -> 1 instance
    g = group(aws)
    assert g["DesiredCapacity"] == 1 and [i["InstanceId"] for i in g["Instances"]] == [busy]  # the busy one stays


def test_idle_instances_lose_their_protection(aws, db, tmp_path):
    url, sessions = db
    (tmp_path / "s.toml").write_text(settings_text(url, min=1))
    settings = load_settings(tmp_path / "s.toml")
    ids = [i["InstanceId"] for i in group(aws)["Instances"]]
    aws.set_instance_protection(AutoScalingGroupName="assemblage-linux", InstanceIds=ids, ProtectedFromScaleIn=True)
    [d] = reconcile(settings, sessions, {}, now=datetime(2026, 12, 1, tzinfo=UTC))
    assert d.desired == 1 and sorted(d.unprotect) == sorted(ids)  # min 1 even with no work
    assert not any(i["ProtectedFromScaleIn"] for i in group(aws)["Instances"] if i["InstanceId"] in ids)


def test_a_group_missing_in_aws_is_a_clear_error(aws, db, tmp_path):
    url, sessions = db
    (tmp_path / "s.toml").write_text(settings_text(url, name="assemblage-nope"))
    with pytest.raises(FleetError, match="assemblage-nope.*does not exist"):
        reconcile(load_settings(tmp_path / "s.toml"), sessions, {})


def test_cli_dry_run_reads_real_redis(aws, db, tmp_path):
    """The command reads queue depths from Redis itself (a real one: the one the service tests use)."""
    import redis

    from assemblage.cli.main import app
    from tests.integration.service_stack import REDIS_URL

    broker = f"{REDIS_URL}/11"
    r = redis.Redis.from_url(broker)
    try:
        r.ping()
    except redis.ConnectionError:
        unavailable(f"no Redis at {REDIS_URL} (scripts/services.sh start)")
    r.flushdb()
    r.lpush("linux", *[b"m"] * 9)
    try:
        url, _ = db
        (tmp_path / "s.toml").write_text(settings_text(url, broker))
        res = CliRunner().invoke(
            app, ["fleet", "reconcile", "--dry-run", "--json", "--settings", str(tmp_path / "s.toml")]
        )
        assert res.exit_code == 0, res.output
        [d] = json.loads(res.output)
        assert (d["current"], d["desired"], d["demand"], d["applied"]) == (2, 3, 9, False)
        assert group(aws)["DesiredCapacity"] == 2
    finally:
        r.flushdb()
        r.close()
