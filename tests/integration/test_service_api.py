"""The API against the real service (PostgreSQL, Redis, a Celery worker, S3): what a user meets.

- a resubmitted recipe's run lists the binaries of the builds it reused;
- GET /runs, and POST /runs/{id}/cancel during a slow build: the build's processes are killed within
  seconds, the queued builds never start, the run ends ``cancelled``;
- unknown query parameters are 422 problem details.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from tests.conftest import SAMPLES, need
from tests.integration.service_stack import Stack

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("services"),
]

SLEEP = "347"  # the slow build's sleep, to find its process
SLOW_MAKEFILE = f"""\
all: slow

slow: main.c
\tsleep {SLEEP}
\t$(CC) $(CFLAGS) -o slow main.c
"""


def _recipe(name: str, path: str, opts: list[str]) -> dict:
    return {
        "name": name,
        "sources": [{"path": path}],
        "matrix": {"platform": ["linux"], "arch": ["x86_64"], "toolchain": ["gcc-12"], "opt": opts},
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    need("gcc-12")
    root = tmp_path_factory.mktemp("service-api")
    sources = root / "sources"
    shutil.copytree(SAMPLES / "calc", sources / "calc")
    slow = sources / "slow"
    slow.mkdir()
    (slow / "main.c").write_text("int main(void) { return 0; }\n")
    (slow / "Makefile").write_text(SLOW_MAKEFILE)
    with Stack(root / "stack", source_root=sources) as st:
        st.start_api()
        st.start_worker("w1", concurrency=1)
        st.submit = st.client(st.token("submit"))
        st.reader = st.client(st.token("read"))
        yield st


def _sleeping() -> list[str]:
    out = subprocess.run(["pgrep", "-f", f"^sleep {SLEEP}$"], capture_output=True, text=True)
    return out.stdout.split()


def test_a_resubmitted_recipe_lists_the_binaries_it_reused(stack):
    first = stack.submit.post("/runs", json=_recipe("again", "calc", ["O0", "O2"]))
    assert first.status_code == 201, first.text
    one = stack.wait_run(stack.reader, first.json()["id"], timeout=180)
    second = stack.submit.post("/runs", json=_recipe("again", "calc", ["O0", "O2"]))
    two = stack.wait_run(stack.reader, second.json()["id"], timeout=120)
    cov = stack.reader.get(f"/runs/{two['id']}/coverage").json()
    assert all(c["reused"] for c in cov["cells"]) and len(cov["cells"]) == 2

    def ids(run: int) -> list[int]:
        return sorted(b["id"] for b in stack.reader.get("/binaries", params={"run": run}).json()["items"])

    assert ids(one["id"]) and ids(two["id"]) == ids(one["id"])
    assert two["binaries"] == one["binaries"] == 2
    listed = {r["id"]: r for r in stack.reader.get("/runs", params={"recipe": "again"}).json()["items"]}
    assert set(listed) == {one["id"], two["id"]} and listed[two["id"]]["binaries"] == 2
    by_name = stack.reader.get(
        "/binaries", params={"source": "calc", "run": two["id"], "config": "linux-x86_64-gcc-12-O2"}
    ).json()["items"]
    assert [b["config"] for b in by_name] == ["linux-x86_64-gcc-12-O2"]

    # the functions of a real binary, with their hashes, line rows and inlined copies
    funcs = stack.reader.get(f"/binaries/{by_name[0]['id']}/functions", params={"include": "lines,inlines"}).json()
    main = next(f for f in funcs["items"] if f["name"] == "main")
    assert main["hash"] and main["pic_hash"] and main["lines"] and main["inlines"] is not None
    assert all(main["start"] <= ln["rva"] < main["end"] for ln in main["lines"])
    assert {ln["source_file"].rsplit("/", 1)[-1] for ln in main["lines"]} >= {"main.c"}


def test_cancel_stops_the_running_build_and_the_queued_ones_never_start(stack):
    assert _sleeping() == [], "a sleep of the slow sample is running before the test"
    r = stack.submit.post("/runs", json=_recipe("slow", "slow", ["O0", "O1", "O2", "O3"]))
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # one build running (one worker process), three queued
        run = stack.reader.get(f"/runs/{run_id}").json()
        if run["builds"].get("running") == 1 and _sleeping():
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"the slow build never ran: {run}\n{stack.log('w1')[-3000:]}")
    assert run["builds"] == {"running": 1, "pending": 3}

    t0 = time.monotonic()
    r = stack.submit.post(f"/runs/{run_id}/cancel")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["running_stopped"], body["queued_cancelled"]) == ("cancelled", 1, 3)
    while _sleeping() and time.monotonic() - t0 < 20:
        time.sleep(0.2)
    stopped = time.monotonic() - t0
    assert _sleeping() == [], "the cancelled build still runs"
    assert stopped < 10, f"the build was stopped {stopped:.1f}s after the cancel"

    time.sleep(4)  # the sweeper (every 2 s) and the worker had time to start anything left
    assert _sleeping() == []
    run = stack.reader.get(f"/runs/{run_id}").json()
    assert run["status"] == "cancelled" and run["builds"] == {"skipped": 4}
    builds = stack.reader.get("/builds", params={"run": run_id}).json()["items"]
    assert {(b["status"], b["reason"]) for b in builds} == {("skipped", "cancelled")}
    started = [b for b in builds if b["attempts"]]
    assert len(started) == 1, builds  # the queued ones never started
    assert all(b["started_at"] is None and b["worker"] is None for b in builds if b not in started)
    # the worker goes on: a new run is built
    nxt = stack.submit.post("/runs", json=_recipe("after-cancel", "calc", ["O1"]))
    assert stack.wait_run(stack.reader, nxt.json()["id"], timeout=120)["builds"] == {"succeeded": 1}
    assert stack.submit.post(f"/runs/{run_id}/cancel").json()["status"] == "cancelled"  # idempotent


def test_unknown_parameters_and_errors_are_problem_details(stack):
    r = stack.reader.get("/binaries", params={"sorce": "calc"})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["location"] == "query.sorce"
    r = stack.reader.get("/runs/424242")
    assert r.status_code == 404 and r.json()["detail"] == "no run 424242" and r.json()["status"] == 404
    r = stack.reader.get("/runs", params={"limit": 1, "statuss": "finished"})
    assert r.status_code == 422 and r.json()["instance"] == "/api/v1/runs"


def test_swagger_ui_renders_from_the_service_alone(stack, tmp_path):
    """A real browser on /docs: the operations are drawn, and no request left the service."""
    from tests.integration.browser import Browser, chromium

    if chromium() is None:
        from tests.conftest import unavailable

        unavailable("chromium is not installed")
    b = Browser(tmp_path)
    try:
        b.goto(stack.base_url.removesuffix("/api/v1") + "/docs")
        b.wait_for("document.querySelectorAll('.opblock').length >= 15", timeout=60)
        paths = b.eval("[...document.querySelectorAll('.opblock-summary-path')].map(e => e.textContent)")
        assert "/api/v1/runs/{run_id}/cancel" in "".join(paths).replace("\u200b", "")
        hosts = {
            ev["params"]["request"]["url"].split("/")[2]
            for ev in b.events
            if ev.get("method") == "Network.requestWillBeSent" and "://" in ev["params"]["request"]["url"]
        }
        assert hosts == {f"127.0.0.1:{stack.api_port}"}, hosts
    finally:
        b.close()
