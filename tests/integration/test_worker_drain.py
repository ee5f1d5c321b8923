"""Stopping workers mid-build for real (API, Celery workers, PostgreSQL, Redis, Swift S3): SIGTERM, and a spot
interruption notice from a local instance-metadata server (IMDSv2). Every build ends exactly once, binaries are
stored once, and Redis ends with nothing queued or unacknowledged."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text

from tests.integration.service_stack import Stack

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("services"),
]

INSTANCE_ID = "i-0123456789abcdef0"


def slow_project(root: Path, seconds: int) -> Path:
    """A C project whose build sleeps before compiling: a build that is surely running when the signal comes."""
    src = root / f"slow{seconds}"
    src.mkdir(parents=True, exist_ok=True)
    (src / "main.c").write_text(
        "#include <stdio.h>\nint twice(int x) { return 2 * x; }\n"
        'int main(void) { printf("%d\\n", twice(21)); return 0; }\n'
    )
    (src / "Makefile").write_text(f"all: slow\nslow: main.c\n\tsleep {seconds}\n\t$(CC) $(CFLAGS) -o slow main.c\n")
    return src


def recipe(name: str, folder: str) -> str:
    return (
        f"name: {name}\nsources:\n  - path: {folder}\nmatrix:\n  platform: [linux]\n  arch: [x86_64]\n"
        "  toolchain: [gcc-12]\n  opt: [O0, O2]\n"
    )


class FakeMetadata:
    """An EC2 instance-metadata server on 127.0.0.1 that insists on IMDSv2 tokens."""

    def __init__(self) -> None:
        self.notice: dict | None = None
        self.token_requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_a) -> None:
                pass

            def _send(self, code: int, body: str = "") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    outer.token_requests += 1
                    self._send(200, "token-abc")
                else:
                    self._send(400)

            def do_GET(self) -> None:
                if self.headers.get("X-aws-ec2-metadata-token") != "token-abc":
                    self._send(401)
                elif self.path == "/latest/meta-data/instance-id":
                    self._send(200, INSTANCE_ID)
                elif self.path == "/latest/meta-data/spot/instance-action" and outer.notice:
                    self._send(200, json.dumps(outer.notice))
                else:
                    self._send(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def query(url: str, sql: str, **params):
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return c.execute(text(sql), params).all()
    finally:
        engine.dispose()


def wait_running(stack: Stack, node: str, n: int, timeout: float = 90) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = query(
            stack.database_url, "SELECT id FROM builds WHERE status = 'running' AND worker LIKE :w", w=f"{node}@%"
        )
        if len(rows) >= n:
            return sorted(r[0] for r in rows)
        time.sleep(0.3)
    raise AssertionError(f"{n} builds did not start on {node}:\n{stack.log(node)[-3000:]}")


def wait_exit(stack: Stack, key: str, timeout: float) -> float:
    started = time.monotonic()
    p = stack.procs[key]
    try:
        p.wait(timeout=timeout)
    except Exception as exc:
        raise AssertionError(f"worker {key} did not stop in {timeout}s:\n{stack.log(key)[-3000:]}") from exc
    stack.procs.pop(key)
    return time.monotonic() - started


def log_events(stack: Stack, *keys: str) -> dict[str, list[tuple[str, int]]]:
    """(worker, build id) of every 'started', 'finished', 'handed back' and 'nothing to do' line."""
    out: dict[str, list[tuple[str, int]]] = {"started": [], "finished": [], "handed back": [], "nothing to do": []}
    for key in keys:
        for line in stack.log(key).splitlines():
            for what, pattern in (
                ("started", r"build (\d+) started"),
                ("finished", r"build (\d+) finished: "),
                ("handed back", r"build (\d+) handed back"),
                ("nothing to do", r"build (\d+): \w+, nothing to do"),
            ):
                mt = re.search(pattern, line)
                if mt:
                    out[what].append((key, int(mt.group(1))))
    return out


def assert_ended_once(stack: Stack, run_id: int, builder: str, *workers: str) -> list[tuple]:
    rows = query(
        stack.database_url, "SELECT id, status, worker, attempts FROM builds WHERE run_id = :r ORDER BY id", r=run_id
    )
    assert [r[1] for r in rows] == ["succeeded", "succeeded"], rows
    assert all(r[2].startswith(f"{builder}@") for r in rows), rows
    binaries = query(stack.database_url, "SELECT build_id, hash, path FROM binaries WHERE run_id = :r", r=run_id)
    assert sorted(b[0] for b in binaries) == [r[0] for r in rows]  # one binary per build, none twice
    events = log_events(stack, *workers)
    assert sorted(b for _, b in events["finished"]) == [r[0] for r in rows], events  # each ended once
    assert events["nothing to do"] == [], events  # no second copy of a message was ever delivered
    r = redis.Redis.from_url(stack.broker_url)
    try:
        assert r.hlen("unacked") == 0
        assert all(r.llen(q) == 0 for q in ("crawl", "linux", "windows-cross", "msvc"))
    finally:
        r.close()
    return rows


@pytest.fixture
def stack(tmp_path):
    with Stack(tmp_path / "stack", source_root=tmp_path) as st:
        st.start_api()
        yield st


def submit(stack: Stack, name: str, folder: str) -> int:
    client = stack.client(stack.token("submit"))
    r = client.post("/runs", content=recipe(name, folder), headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_sigterm_hands_back_builds_that_cannot_finish_in_time(stack, tmp_path):
    slow_project(tmp_path, 12)
    stack.start_worker("a", concurrency=2, ASSEMBLAGE_DRAIN_TIMEOUT="3")
    run_id = submit(stack, "drain-handback", "slow12")
    building = wait_running(stack, "a", 2)
    stack.start_worker("b", queues="linux", concurrency=2)
    os.kill(stack.procs["a"].pid, signal.SIGTERM)  # the main process only, as systemd (KillMode=mixed) and docker do
    took = wait_exit(stack, "a", timeout=40)
    assert took < 3 + 15, took  # the drain deadline, not the 12-second builds
    stack.wait_run(stack.client(stack.token("read")), run_id, timeout=120)
    rows = assert_ended_once(stack, run_id, "b", "a", "b")
    assert [r[3] for r in rows] == [2, 2]  # one cut-short attempt on a, one on b
    events = log_events(stack, "a", "b")
    assert sorted(b for _, b in events["handed back"]) == building
    assert sorted(b for w, b in events["started"] if w == "b") == building  # re-queued exactly once each


def test_sigterm_lets_builds_finish_within_the_drain_timeout(stack, tmp_path):
    slow_project(tmp_path, 4)
    stack.start_worker("a", concurrency=2, ASSEMBLAGE_DRAIN_TIMEOUT="60")
    run_id = submit(stack, "drain-finish", "slow4")
    wait_running(stack, "a", 2)
    os.kill(stack.procs["a"].pid, signal.SIGTERM)
    wait_exit(stack, "a", timeout=60)
    stack.wait_run(stack.client(stack.token("read")), run_id, timeout=30)
    rows = assert_ended_once(stack, run_id, "a", "a")
    assert [r[3] for r in rows] == [1, 1]
    assert log_events(stack, "a")["handed back"] == []


def test_spot_notice_hands_back_before_the_interruption(stack, tmp_path):
    slow_project(tmp_path, 15)
    imds = FakeMetadata()
    try:
        stack.start_worker(
            "spot",
            concurrency=2,
            ASSEMBLAGE_INSTANCE_METADATA_URL=imds.url,
            ASSEMBLAGE_SPOT_POLL_INTERVAL="0.5",
            ASSEMBLAGE_SPOT_MARGIN="4",
            ASSEMBLAGE_DRAIN_TIMEOUT="300",
        )
        deadline = time.monotonic() + 20
        while not query(stack.database_url, "SELECT 1 FROM workers WHERE node LIKE 'spot@%'"):
            assert time.monotonic() < deadline, stack.log("spot")[-3000:]
            time.sleep(0.2)
        assert query(stack.database_url, "SELECT DISTINCT instance_id FROM workers WHERE node LIKE 'spot@%'") == [
            (INSTANCE_ID,)
        ]
        run_id = submit(stack, "drain-spot", "slow15")
        building = wait_running(stack, "spot", 2)
        # process heartbeats of running builds carry the instance too: what the reconciler protects
        assert query(
            stack.database_url,
            "SELECT count(*) FROM workers WHERE build_id IS NOT NULL AND instance_id = :i",
            i=INSTANCE_ID,
        ) == [(2,)]
        stack.start_worker("b", queues="linux", concurrency=2)
        when = datetime.now(UTC) + timedelta(seconds=9)
        imds.notice = {"action": "terminate", "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
        wait_exit(stack, "spot", timeout=30)
        assert datetime.now(UTC) < when + timedelta(seconds=2)  # gone by the interruption
        assert imds.token_requests >= 1
        stack.wait_run(stack.client(stack.token("read")), run_id, timeout=120)
        assert_ended_once(stack, run_id, "b", "spot", "b")
        events = log_events(stack, "spot", "b")
        assert sorted(b for _, b in events["handed back"]) == building
        assert "spot interruption notice" in stack.log("spot")
    finally:
        imds.close()
