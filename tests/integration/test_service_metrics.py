"""/metrics during a real run (API, Celery worker, PostgreSQL, Redis, Swift S3): the figures move with the
builds and equal the database's own counts; JSON log lines parse and carry the run and build ids."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from tests.integration.service_stack import Stack

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("services"),
]

RECIPE = """\
name: metrics
sources:
  - path: recipes/samples/calc
  - path: recipes/samples/broken
matrix:
  platform: [linux]
  arch: [x86_64]
  toolchain: [gcc-12]
  opt: [O0, O2]
"""


def scrape(stack: Stack) -> dict[tuple[str, tuple], float]:
    r = httpx.get(f"http://127.0.0.1:{stack.api_port}/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for sample in fam.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def series(metrics: dict, name: str) -> dict[tuple, float]:
    return {labels: v for (n, labels), v in metrics.items() if n == name}


def database_counts(url: str) -> dict:
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            builds = {
                (s, r or ""): n
                for s, r, n in c.execute(text("SELECT status, reason, count(*) FROM builds GROUP BY status, reason"))
            }
            return {
                "builds": builds,
                "binaries": c.execute(text("SELECT count(*) FROM binaries")).scalar(),
                "functions": c.execute(text("SELECT count(*) FROM functions")).scalar(),
                "durations": c.execute(
                    text("SELECT count(*) FROM builds WHERE duration IS NOT NULL AND reused_from_id IS NULL")
                ).scalar(),
            }
    finally:
        engine.dispose()


def build_gauges(metrics: dict) -> dict[tuple[str, str], float]:
    return {(dict(k)["status"], dict(k)["reason"]): v for k, v in series(metrics, "assemblage_builds").items() if v}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("metrics")) as st:
        extra = {"ASSEMBLAGE_LOG_FORMAT": "json", "ASSEMBLAGE_METRICS_CACHE_SECONDS": "0.3"}
        st.start_api(**extra)
        st.start_worker("w1", **extra)
        yield st


@pytest.fixture(scope="module")
def observed(stack):
    """Scrapes before, during and after one run, with the database's counts at the end."""
    before = scrape(stack)
    submit = stack.client(stack.token("submit"))
    r = submit.post("/runs", content=RECIPE, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    reader = stack.client(stack.token("read"))
    during = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        during.append(scrape(stack))
        if reader.get(f"/runs/{run_id}").json()["status"] == "finished":
            break
        time.sleep(0.2)
    time.sleep(0.5)  # past the cache
    after = scrape(stack)
    return {
        "before": before,
        "during": during,
        "after": after,
        "run_id": run_id,
        "db": database_counts(stack.database_url),
    }


def test_figures_before_the_run_are_the_empty_database(observed):
    before = observed["before"]
    assert build_gauges(before) == {}
    assert series(before, "assemblage_binaries_stored") == {(): 0.0}
    assert series(before, "assemblage_functions_stored") == {(): 0.0}
    assert series(before, "assemblage_build_duration_seconds_count") == {(): 0.0}
    assert series(before, "assemblage_metrics_database_up") == {(): 1.0}


def test_figures_after_the_run_equal_the_database(observed):
    after, db = observed["after"], observed["db"]
    assert build_gauges(after) == {k: float(v) for k, v in db["builds"].items()}
    assert db["builds"] == {("succeeded", ""): 2, ("failed", "compile_error"): 2}
    finished = {
        (dict(k)["status"], dict(k)["reason"]): v for k, v in series(after, "assemblage_builds_finished_total").items()
    }
    assert finished == {("succeeded", ""): 2.0, ("failed", "compile_error"): 2.0}
    assert series(after, "assemblage_binaries_stored") == {(): float(db["binaries"])} and db["binaries"] == 2
    assert series(after, "assemblage_functions_stored") == {(): float(db["functions"])} and db["functions"] > 0
    assert series(after, "assemblage_build_duration_seconds_count") == {(): float(db["durations"])}
    assert db["durations"] == 4
    buckets = series(after, "assemblage_build_duration_seconds_bucket")
    assert buckets[(("le", "+Inf"),)] == 4.0
    values = [v for _, v in sorted(((float(dict(k)["le"]), v) for k, v in buckets.items()))]
    assert values == sorted(values)  # cumulative
    assert series(after, "assemblage_analysis_duration_seconds_count") == {(): 4.0}
    assert series(after, "assemblage_runs") == {(("status", "finished"),): 1.0}


def test_figures_moved_during_the_run(observed):
    finished = [sum(series(s, "assemblage_builds_finished_total").values()) for s in observed["during"]]
    finished.append(sum(series(observed["after"], "assemblage_builds_finished_total").values()))
    assert finished == sorted(finished), finished  # a counter never goes back
    assert finished[0] < 4 and finished[-1] == 4, finished
    pending_or_running = [
        sum(v for (st, _), v in build_gauges(s).items() if st in ("pending", "running")) for s in observed["during"]
    ]
    assert max(pending_or_running) > 0  # and none at the end: the equality with the database above


def test_queue_depths_workers_and_request_latency(observed):
    after = observed["after"]
    depths = {dict(k)["queue"]: v for k, v in series(after, "assemblage_queue_depth").items()}
    assert {"crawl", "linux", "windows-cross", "msvc", "unacked"} <= set(depths)
    assert depths["linux"] == 0 and depths["unacked"] == 0
    ages = series(after, "assemblage_worker_heartbeat_age_seconds")
    assert any(dict(k)["node"].startswith("w1@") for k in ages)
    assert all(0 <= v < 6 for v in ages.values()), ages
    assert series(after, "assemblage_workers")[(("state", "alive"),)] == 1.0
    latency = series(after, "assemblage_http_request_duration_seconds_count")
    routes = {(dict(k)["method"], dict(k)["route"], dict(k)["status"]) for k in latency}
    assert ("POST", "/api/v1/runs", "201") in routes
    assert ("GET", "/api/v1/runs/{run_id}", "200") in routes
    assert ("GET", "/metrics", "200") in routes
    assert all("<unmatched>" != r for _, r, _ in routes)


def test_json_log_lines_carry_run_and_build_ids(stack, observed):
    run_id = observed["run_id"]
    lines = [ln for ln in stack.log("w1").splitlines() if ln.startswith("{")]
    docs = [json.loads(ln) for ln in lines]  # every JSON line parses
    assert docs and all({"time", "level", "logger", "message"} <= set(d) for d in docs)
    started = [d for d in docs if d["message"].endswith(" started") and d["message"].startswith("build ")]
    finished = [d for d in docs if d["message"].startswith("build ") and " finished: " in d["message"]]
    assert len(started) == 4 and len(finished) == 4
    for d in started + finished:
        assert d["run_id"] == run_id
        assert d["build_id"] == int(d["message"].split()[1])
        assert d["task"] == "assemblage.build"
    # Celery's own line about each build task's end carries them too (the "received" line comes from
    # the main process, before any task runs, and carries none)
    celery_lines = [
        d for d in docs if d["message"].startswith("Task assemblage.build[") and " succeeded " in d["message"]
    ]
    assert len(celery_lines) >= 4 and all(d.get("run_id") == run_id and "build_id" in d for d in celery_lines)
    api = [json.loads(ln) for ln in stack.log("api").splitlines() if ln.startswith("{")]
    assert any(d["logger"].startswith("uvicorn") for d in api)
