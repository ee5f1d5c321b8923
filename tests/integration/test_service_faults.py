"""Faults with real processes and services: a worker killed with SIGKILL mid-build, Redis restarted
during a run, PostgreSQL stopped for a while. Every run still finishes; no binary is lost or doubled.

These restart the machine's Redis and PostgreSQL (the ones ``make test`` starts), briefly.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import unavailable
from tests.integration.service_stack import REDIS_URL, Stack, port_open, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("services"),
]


def source_root(tmp: Path) -> Path:
    """The service's source root for a test: copies of two samples (submitted local sources must be inside it)."""
    from tests.conftest import SAMPLES

    root = tmp / "src"
    for name in ("calc", "broken"):
        shutil.copytree(SAMPLES / name, root / "recipes" / "samples" / name)
    return root


def slow_project(root: Path, seconds: int) -> str:
    """A make project whose build takes ``seconds`` (so a fault can land in the middle of it)."""
    p = root / f"slow{seconds}"
    p.mkdir(parents=True, exist_ok=True)
    (p / "slow.c").write_text(
        "#include <stdio.h>\nint work(int x) { return x * 3; }\n"
        'int main(void) { printf("%d\\n", work(14)); return 0; }\n'
    )
    (p / "Makefile").write_text(
        f"CC ?= cc\nCFLAGS ?= -O2\nslow: slow.c\n\tsleep {seconds}\n\t$(CC) $(CFLAGS) -o slow slow.c\n"
    )
    return p.name


def recipe(*paths: str, opts=("O0",)) -> str:
    srcs = "\n".join(f"  - path: {p}" for p in paths)
    return (
        f"name: faults\nsources:\n{srcs}\nmatrix:\n  platform: [linux]\n  arch: [x86_64]\n"
        f"  toolchain: [gcc-12]\n  opt: [{', '.join(opts)}]\n"
    )


def retried(worker_log: str, error: str) -> bool:
    """Celery's own line for a build task retried on ``error`` (celery.app.trace.LOG_RETRY)."""
    return (
        re.search(rf"Task assemblage\.build\[[0-9a-f-]{{36}}\] retry: Retry in \d+s: {error}\(", worker_log) is not None
    )


def running_build(client, run_id: int):
    def find():
        try:
            cov = client.get(f"/runs/{run_id}/coverage")
        except Exception:  # noqa: BLE001 - the API may be briefly unavailable
            return None
        if cov.status_code != 200:
            return None
        for c in cov.json()["cells"]:
            b = client.get(f"/builds/{c['build_id']}").json()
            if b["status"] == "running" and b["source"].endswith(("slow8", "slow4", "slow5")):
                return b
        return None

    return find


def assert_nothing_doubled(stack: Stack, run_id: int, expected_binaries: int) -> None:
    engine = create_engine(stack.database_url)
    with engine.connect() as c:
        n = c.execute(text("SELECT count(*) FROM binaries WHERE run_id = :r"), {"r": run_id}).scalar()
        dup = c.execute(
            text(
                "SELECT count(*) FROM (SELECT build_id, relpath FROM binaries GROUP BY build_id, relpath"
                " HAVING count(*) > 1) d"
            )
        ).scalar()
        funcs = c.execute(
            text(
                "SELECT count(*) FROM (SELECT binary_id, name, start FROM functions"
                " GROUP BY binary_id, name, start HAVING count(*) > 1) d"
            )
        ).scalar()
        open_builds = c.execute(
            text("SELECT count(*) FROM builds WHERE run_id = :r AND status IN ('pending', 'running')"), {"r": run_id}
        ).scalar()
    engine.dispose()
    assert (n, dup, funcs, open_builds) == (expected_binaries, 0, 0, 0)


def test_worker_killed_mid_build_is_redelivered_and_finishes_once(tmp_path):
    root = source_root(tmp_path)
    slow = slow_project(root, 8)
    with Stack(tmp_path / "stack", source_root=root, dead_after=4, heartbeat=0.5, sweep_interval=1) as st:
        st.start_api()
        st.start_worker("wa")
        client = st.client(st.token("submit"))
        run_id = client.post(
            "/runs", content=recipe(slow, "recipes/samples/calc"), headers={"Content-Type": "application/yaml"}
        ).json()["id"]
        b = wait_for(running_build(client, run_id), 60, "the slow build to start")
        assert b["worker"].startswith("wa@")
        time.sleep(1.5)
        st.kill("wa")  # SIGKILL to the worker and its pool process, mid-compile
        st.procs["wa"].wait(timeout=10)
        st.start_worker("wb")
        run = st.wait_run(client, run_id, timeout=120)
        assert run["builds"] == {"succeeded": 2}
        after = client.get(f"/builds/{b['id']}").json()
        assert after["status"] == "succeeded" and after["worker"].startswith("wb@") and after["attempts"] >= 2
        assert_nothing_doubled(st, run_id, expected_binaries=2)
        # the evidence: the sweeper saw this build's process go silent and sent the build again
        assert f"build {b['id']}: worker {b['worker']} is silent; sending it again" in st.log("api"), st.log("api")[
            -3000:
        ]


def _redis_port() -> int:
    from urllib.parse import urlparse

    return urlparse(REDIS_URL).port or 6379


def restart_redis() -> None:
    port = _redis_port()
    cli, server = shutil.which("redis-cli"), shutil.which("redis-server")
    if not cli or not server:
        unavailable("redis-cli/redis-server not installed here: cannot restart Redis")
    subprocess.run([cli, "-p", str(port), "shutdown", "nosave"], capture_output=True, timeout=10)
    wait_for(lambda: not port_open("127.0.0.1", port), 10, "Redis to stop")
    time.sleep(1)
    subprocess.run(
        [server, "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        check=True,
        capture_output=True,
        timeout=10,
    )
    wait_for(lambda: port_open("127.0.0.1", port), 10, "Redis to start")


def test_redis_restarted_during_a_run_the_run_completes(tmp_path):
    root = source_root(tmp_path)
    slow = slow_project(root, 4)
    with Stack(tmp_path / "stack", source_root=root, dead_after=5, heartbeat=0.5, sweep_interval=1) as st:
        st.start_api()
        st.start_worker("wr", concurrency=1)
        client = st.client(st.token("submit"))
        run_id = client.post(
            "/runs",
            content=recipe(slow, "recipes/samples/calc", "recipes/samples/broken", opts=("O0", "O2")),
            headers={"Content-Type": "application/yaml"},
        ).json()["id"]
        wait_for(running_build(client, run_id), 60, "a build to start")
        restart_redis()  # every queued message is gone (no persistence)
        run = st.wait_run(client, run_id, timeout=150)
        assert run["builds"] == {"succeeded": 4, "failed": 2}
        assert_nothing_doubled(st, run_id, expected_binaries=4)
        # the evidence: the sweeper found the broker empty while builds were pending, and sent them again
        assert re.search(
            r"the broker holds nothing for [1-9]\d* unfinished message\(s\): sent them again", st.log("api")
        ), st.log("api")[-3000:]


def _pg_cluster() -> tuple[str, str] | None:
    if not shutil.which("pg_ctlcluster"):
        return None
    versions = sorted(p.name for p in Path("/etc/postgresql").glob("*") if (p / "main").is_dir())
    return (versions[-1], "main") if versions else None


def test_postgres_stopped_briefly_tasks_retry_and_nothing_is_lost(tmp_path):
    cluster = _pg_cluster()
    if cluster is None:
        unavailable("no pg_ctlcluster here: cannot stop and start PostgreSQL")
    root = source_root(tmp_path)
    slow = slow_project(root, 5)
    with Stack(tmp_path / "stack", source_root=root, dead_after=8, heartbeat=0.5, sweep_interval=1) as st:
        st.start_api()
        st.start_worker("wp", concurrency=2)
        client = st.client(st.token("submit"))
        run_id = client.post(
            "/runs",
            content=recipe(slow, "recipes/samples/calc", opts=("O0", "O2")),
            headers={"Content-Type": "application/yaml"},
        ).json()["id"]
        wait_for(running_build(client, run_id), 60, "a build to start")
        version, name = cluster
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "stop", "-m", "fast"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        try:
            time.sleep(6)  # the slow build finishes while the database is away: its write must wait and retry
        finally:
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "start"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            wait_for(lambda: port_open("127.0.0.1", 5432), 30, "PostgreSQL to start")
        run = st.wait_run(client, run_id, timeout=180)
        assert run["builds"] == {"succeeded": 4}
        assert_nothing_doubled(st, run_id, expected_binaries=4)
        # the evidence: a build task failed on the database while it was away and Celery retried it
        assert retried(st.log("wp"), "OperationalError"), st.log("wp")[-3000:]


def test_s3_unreachable_for_a_while_uploads_retry_and_the_run_completes(tmp_path):
    script = Path(__file__).resolve().parents[2] / "scripts" / "services-extra.sh"
    root = source_root(tmp_path)
    slow = slow_project(root, 4)
    with Stack(tmp_path / "stack", source_root=root, dead_after=8, heartbeat=0.5, sweep_interval=1) as st:
        st.start_api()
        st.start_worker("ws", concurrency=1)
        client = st.client(st.token("submit"))
        run_id = client.post(
            "/runs", content=recipe(slow, "recipes/samples/calc"), headers={"Content-Type": "application/yaml"}
        ).json()["id"]
        wait_for(running_build(client, run_id), 60, "the slow build to start")
        subprocess.run([str(script), "stop"], check=True, capture_output=True, timeout=60)
        try:
            time.sleep(6)  # the build ends while S3 is away: its upload fails and the task is retried
        finally:
            subprocess.run([str(script), "start"], check=True, capture_output=True, timeout=120)
        run = st.wait_run(client, run_id, timeout=180)
        assert run["builds"] == {"succeeded": 2}
        assert_nothing_doubled(st, run_id, expected_binaries=2)
        # the evidence: the build's upload failed while S3 was away and Celery retried the task
        assert retried(st.log("ws"), "TransientStorageError"), st.log("ws")[-3000:]
