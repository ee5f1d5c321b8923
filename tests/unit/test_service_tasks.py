"""The task layer's own logic on SQLite: queues, claims, the requeue sweep, resending lost work."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from assemblage.db import models as m
from assemblage.db.session import init_schema, make_engine, make_sessionmaker, session_scope
from assemblage.settings import load_settings
from assemblage.tasks import queue_for
from assemblage.tasks.coordinator import Sweeper, requeue_dead_builds, resend_lost
from assemblage.tasks.runtime import beat, process_id


@pytest.fixture
def sessions(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/t.sqlite")
    init_schema(engine)
    return make_sessionmaker(engine)


def make_run(sessions, *, n: int = 3, run_status: str = "running", source_status: str = "fetched") -> list[int]:
    with session_scope(sessions) as s:
        rec = m.Recipe(name="r", text="x", sha256="0" * 64)
        s.add(rec)
        s.flush()
        run = m.Run(recipe_id=rec.id, status=run_status)
        s.add(run)
        s.flush()
        src = m.Source(
            run_id=run.id, position=0, spec={"path": "x"}, label="x", kind="path", name="x", status=source_status
        )
        s.add(src)
        s.flush()
        ids = []
        for opt in ["O0", "O1", "O2", "O3", "Os"][:n]:
            ident = f"linux-x86_64-gcc-12-{opt}"
            cfg = s.query(m.Configuration).filter_by(identifier=ident).one_or_none()
            if cfg is None:
                cfg = m.Configuration(identifier=ident, platform="linux", arch="x86_64", toolchain="gcc-12", opt=opt)
                s.add(cfg)
                s.flush()
            b = m.Build(run_id=run.id, source_id=src.id, configuration_id=cfg.id)
            s.add(b)
            s.flush()
            ids.append(b.id)
        return ids


@pytest.mark.parametrize(
    "config,queue",
    [
        ("linux-x86_64-gcc-12-O2", "linux"),
        ("linux-aarch64-gcc-12-O0", "linux"),
        ("windows-x86_64-clang-19-O2", "windows-cross"),
        ("windows-i686-mingw-gcc-12-Os", "windows-cross"),
        ("windows-x86_64-msvc-v143-O2", "msvc"),
    ],
)
def test_one_queue_per_toolchain_family(config, queue):
    assert queue_for(config) == queue


def test_claim_is_exclusive_while_the_claimer_lives(sessions):
    from assemblage.tasks.jobs import claim_build

    (bid,) = make_run(sessions, n=1)
    rt = SimpleNamespace(sessions=sessions, settings=load_settings(worker_dead_after=30))
    assert claim_build(rt, bid)[0] == "go"
    with session_scope(sessions) as s:  # another process claimed it and is alive
        b = s.get(m.Build, bid)
        b.worker = "other@h/x/1"
    beat(sessions, wid="other@h/x/1", kind="process", build_id=bid)
    assert claim_build(rt, bid)[0] == "busy"
    with session_scope(sessions) as s:  # ... then went silent
        s.get(m.Worker, "other@h/x/1").last_seen = m.utcnow() - timedelta(seconds=60)
    assert claim_build(rt, bid)[0] == "go"
    with session_scope(sessions) as s:
        b = s.get(m.Build, bid)
        assert (b.status, b.worker) == ("running", process_id())
        b.status = "succeeded"
    assert claim_build(rt, bid) == ("succeeded", b.run_id)
    assert claim_build(rt, 10**9) == ("missing", None)


def test_sweep_requeues_builds_of_dead_workers_only(sessions):
    a, b, c = make_run(sessions, n=3)
    old = m.utcnow() - timedelta(seconds=120)
    with session_scope(sessions) as s:
        for bid, worker in ((a, "dead@h/1/1"), (b, "alive@h/1/2"), (c, "never-beat@h/1/3")):
            row = s.get(m.Build, bid)
            row.status, row.worker, row.started_at = "running", worker, old
    beat(sessions, wid="dead@h/1/1", kind="process", build_id=a)
    beat(sessions, wid="alive@h/1/2", kind="process", build_id=b)
    with session_scope(sessions) as s:
        s.get(m.Worker, "dead@h/1/1").last_seen = old
    sent = []
    requeued = requeue_dead_builds(sessions, 30, lambda kind, i, cfg: sent.append((kind, i, cfg)))
    assert sorted(requeued) == [a, c]
    assert sorted(sent) == sorted([("build", a, "linux-x86_64-gcc-12-O0"), ("build", c, "linux-x86_64-gcc-12-O2")])
    with sessions() as s:
        assert [s.get(m.Build, i).status for i in (a, b, c)] == ["pending", "running", "pending"]


def test_just_claimed_build_is_not_requeued(sessions):
    (a,) = make_run(sessions, n=1)
    with session_scope(sessions) as s:
        row = s.get(m.Build, a)
        row.status, row.worker, row.started_at = "running", "new@h/1/1", m.utcnow()
    assert requeue_dead_builds(sessions, 30, lambda *a: None) == []


def test_resend_lost_sends_unfinished_work(sessions):
    ids = make_run(sessions, n=2)
    make_run(sessions, n=1, source_status="pending")
    make_run(sessions, n=1, run_status="finished")
    sent = []
    n = resend_lost(sessions, lambda kind, i, cfg: sent.append((kind, i)))
    assert n == len(sent) == 3
    assert sorted(k for k, _ in sent) == ["build", "build", "fetch"]
    assert {i for k, i in sent if k == "build"} == set(ids)


def test_sweeper_resends_only_after_two_idle_sweeps(sessions, monkeypatch):
    import assemblage.tasks.coordinator as coord

    make_run(sessions, n=1)
    monkeypatch.setattr(coord, "broker_idle", lambda url: True)
    sent = []
    sw = Sweeper(
        sessions=sessions,
        broker_url="redis://x",
        dead_after=30,
        interval=1,
        send=lambda kind, i, cfg: sent.append(kind),
    )  # (dead_after: no requeue in the first 30 s)
    assert sw.sweep()["resent"] == 0
    assert sw.sweep()["resent"] == 1 and sent == ["build"]


def test_s3_errors_are_translated():
    from botocore.exceptions import ClientError, EndpointConnectionError

    from assemblage.errors import StorageError
    from assemblage.storage.s3 import TransientStorageError, _translate

    def client_error(code, status):
        return ClientError(
            {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
        )

    assert isinstance(_translate(client_error("NoSuchKey", 404), "get", "k"), FileNotFoundError)
    assert isinstance(_translate(client_error("InternalError", 500), "put"), TransientStorageError)
    assert isinstance(_translate(client_error("SlowDown", 503), "put"), TransientStorageError)
    denied = _translate(client_error("AccessDenied", 403), "put")
    assert isinstance(denied, StorageError) and not isinstance(denied, TransientStorageError)
    assert isinstance(_translate(EndpointConnectionError(endpoint_url="http://x"), "put"), TransientStorageError)


def test_transient_failures_are_retried_and_compile_errors_are_not():
    from sqlalchemy.exc import OperationalError

    from assemblage.errors import BuildError, RecipeError
    from assemblage.storage.s3 import TransientStorageError
    from assemblage.tasks.jobs import TRANSIENT, build

    assert issubclass(OperationalError, TRANSIENT) and issubclass(TransientStorageError, TRANSIENT)
    for exc in (BuildError, RecipeError, ValueError):
        assert not issubclass(exc, TRANSIENT)
    assert build.acks_late and build.reject_on_worker_lost and build.autoretry_for == TRANSIENT


def test_sweeper_waits_after_a_database_outage_before_declaring_deaths(sessions, monkeypatch):
    import assemblage.tasks.coordinator as coord

    (a,) = make_run(sessions, n=1)
    with session_scope(sessions) as s:
        row = s.get(m.Build, a)
        row.status, row.worker, row.started_at = "running", "w@h/1/1", m.utcnow() - timedelta(seconds=600)
    monkeypatch.setattr(coord, "broker_idle", lambda url: False)
    sw = Sweeper(sessions=sessions, broker_url="redis://x", dead_after=0.3, interval=1, send=lambda *a: None)
    assert sw.sweep()["requeued"] == 0  # the database just came back (or the sweeper just started)
    import time

    time.sleep(0.35)
    assert sw.sweep()["requeued"] == 1


def test_fetches_and_crawls_of_dead_workers_are_sent_again(sessions):
    """A fetch or crawl whose process died is sent again; live, released and finished ones are not."""
    from assemblage.pipeline.crawl import create_crawl
    from assemblage.recipes.models import GithubQuery, GithubSource
    from assemblage.tasks.coordinator import requeue_dead_leases
    from assemblage.tasks.jobs import lease, release

    make_run(sessions, n=1, source_status="pending")
    old = m.utcnow() - timedelta(seconds=120)
    with session_scope(sessions) as s:
        run_id = s.scalars(select(m.Run.id)).one()
        sid = s.scalars(select(m.Source.id)).one()
        crawls = [create_crawl(s, GithubSource(github=GithubQuery(query=f"q{i}")), run_id=run_id).id for i in range(4)]
    rt = SimpleNamespace(sessions=sessions, settings=load_settings(worker_dead_after=30))
    assert lease(rt, m.Source, sid, final=("fetched", "failed")) == "go"
    for cid in crawls:
        assert lease(rt, m.Crawl, cid, final=("finished", "failed")) == "go"
    release(rt, m.Crawl, crawls[1])  # waiting for a retry: not dead
    with session_scope(sessions) as s:
        s.get(m.Crawl, crawls[2]).status = "finished"
        s.get(m.Crawl, crawls[3]).worker = "alive@h/1/9"
        s.get(m.Worker, process_id()).last_seen = old  # this "process" died
    beat(sessions, wid="alive@h/1/9", kind="process")
    assert lease(rt, m.Crawl, crawls[3], final=("finished", "failed")) == "busy"
    sent = []
    requeued = requeue_dead_leases(sessions, 30, lambda kind, i, cfg: sent.append((kind, i)))
    assert sorted(sent) == sorted(requeued) == sorted([("fetch", sid), ("crawl", crawls[0])])
    with sessions() as s:
        assert s.get(m.Source, sid).worker is None and s.get(m.Crawl, crawls[0]).worker is None
    assert requeue_dead_leases(sessions, 30, lambda *a: None) == []  # sent once


def test_build_task_retries_as_many_times_as_the_setting_says():
    """ASSEMBLAGE_TASK_MAX_RETRIES was documented but ignored: the build task hard-coded 8 retries."""
    import os
    import subprocess
    import sys

    code = "from assemblage.tasks.jobs import build; print(build.max_retries)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSEMBLAGE_")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "ASSEMBLAGE_TASK_MAX_RETRIES": "3"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert out.stdout.strip() == "3", out.stderr
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "8", out.stderr  # the default
