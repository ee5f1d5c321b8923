"""End to end over HTTP: a recipe submitted to the API is built by two Celery workers into
PostgreSQL and S3 (Swift + s3api), then queried and downloaded through a presigned URL."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from tests.integration.service_stack import Stack

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("services"),
]

RECIPE = """\
name: service-e2e
sources:
  - path: recipes/samples/calc
  - path: recipes/samples/broken
matrix:
  platform: [linux]
  arch: [x86_64]
  toolchain: [gcc-12]
  opt: [O0, O2]
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("e2e")) as st:
        st.start_api()
        st.start_worker("w1", wait=False)
        st.start_worker("w2", wait=False)
        st.wait_worker("w1")
        st.wait_worker("w2")
        yield st


@pytest.fixture(scope="module")
def finished_run(stack):
    submit = stack.client(stack.token("submit"))
    r = submit.post("/runs", content=RECIPE, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "pending"
    reader = stack.client(stack.token("read"))
    return stack.wait_run(reader, r.json()["id"], timeout=180), reader


def test_run_finishes_with_counts_and_coverage(finished_run):
    run, client = finished_run
    assert run["builds"] == {"succeeded": 2, "failed": 2} and run["binaries"] == 2
    cov = client.get(f"/runs/{run['id']}/coverage").json()
    cells = {(c["source"], c["config"]): c for c in cov["cells"]}
    assert len(cells) == 4
    for opt in ("O0", "O2"):
        ok = cells[("calc", f"linux-x86_64-gcc-12-{opt}")]
        bad = cells[("broken", f"linux-x86_64-gcc-12-{opt}")]
        assert (ok["status"], ok["binaries"]) == ("succeeded", 1)
        assert (bad["status"], bad["reason"]) == ("failed", "compile_error")
        assert "undeclared" in bad["message"]


def test_both_workers_took_work_and_report_heartbeats(stack, finished_run):
    run, client = finished_run
    workers = client.get("/workers").json()
    nodes = {w["node"].split("@")[0] for w in workers["workers"] if w["alive"]}
    assert {"w1", "w2"} <= nodes
    assert workers["queues"] is not None and workers["queues"]["linux"] == 0
    cov = client.get(f"/runs/{run['id']}/coverage").json()
    # the full set of builds (2 sources x 2 levels), each done by one of the two workers, and each worker took work
    assert sorted((c["source"], c["config"]) for c in cov["cells"]) == sorted(
        (src, f"linux-x86_64-gcc-12-{o}") for src in ("broken", "calc") for o in ("O0", "O2")
    )
    by_worker: dict[str, list[int]] = {}
    for c in cov["cells"]:
        b = client.get(f"/builds/{c['build_id']}").json()
        assert b["status"] in ("succeeded", "failed") and b["worker"], b
        by_worker.setdefault(b["worker"].split("@")[0], []).append(b["id"])
    assert set(by_worker) == {"w1", "w2"} and sum(map(len, by_worker.values())) == 4, by_worker


def test_query_binaries_functions_and_download(stack, finished_run):
    run, client = finished_run
    page = client.get(
        "/binaries",
        params={
            "run": run["id"],
            "toolchain": "gcc-12",
            "opt": "O2",
            "platform": "linux",
            "arch": "x86_64",
            "format": "elf",
        },
    ).json()
    assert len(page["items"]) == 1 and page["next"] is None
    b = page["items"][0]
    assert (b["file_name"], b["optimization"], b["config"]) == ("calc", "O2", "linux-x86_64-gcc-12-O2")
    detail = client.get(f"/binaries/{b['id']}").json()
    assert detail["opt_observed"] == "O2" and detail["path"].startswith("objects/")  # read back from the binary

    funcs = client.get(f"/binaries/{b['id']}/functions").json()["items"]
    by_name = {f["name"]: f for f in funcs}
    assert "main" in by_name and by_name["main"]["rvas"]
    assert all(r["start"] <= r["end"] for f in funcs for r in f["rvas"])
    named = client.get("/functions", params={"name": "main", "binary": b["id"]}).json()["items"]
    assert [f["id"] for f in named] == [by_name["main"]["id"]]

    r = client.get(f"/binaries/{b['id']}/download", follow_redirects=False)
    assert r.status_code == 307
    url = r.headers["location"]
    assert "X-Amz-Signature=" in url and url.startswith("http://127.0.0.1:8080/")
    data = httpx.get(url, timeout=30).content  # straight from S3, no token
    assert hashlib.sha256(data).hexdigest() == b["hash"] and len(data) == b["size"]
    assert data[:4] == b"\x7fELF"

    sig = url.split("X-Amz-Signature=")[1].split("&")[0]
    tampered = url.replace(sig, ("0" if sig[0] != "0" else "1") + sig[1:])
    assert httpx.get(tampered, timeout=30).status_code == 403


def test_build_log_comes_from_the_store(finished_run):
    run, client = finished_run
    cov = client.get(f"/runs/{run['id']}/coverage").json()
    bad = next(c for c in cov["cells"] if c["status"] == "failed")
    log = client.get(f"/builds/{bad['build_id']}/log")
    assert log.status_code == 200 and "undeclared_variable" in log.text


def test_resubmitting_reuses_builds_and_stores_nothing_twice(stack, finished_run):
    run, client = finished_run
    submit = stack.client(stack.token("submit"))
    r = submit.post(
        "/runs",
        json={
            "name": "service-e2e",
            "sources": [{"path": "recipes/samples/calc"}],
            "matrix": {"platform": ["linux"], "arch": ["x86_64"], "toolchain": ["gcc-12"], "opt": ["O0", "O2"]},
        },
    )
    assert r.status_code == 201, r.text
    again = stack.wait_run(client, r.json()["id"], timeout=120)
    assert again["builds"] == {"succeeded": 2}
    cov = client.get(f"/runs/{again['id']}/coverage").json()
    assert all(c["reused"] and c["binaries"] == 1 for c in cov["cells"])
    hashes = [b["hash"] for b in client.get("/binaries", params={"limit": 1000}).json()["items"]]
    assert len(hashes) == len(set(hashes)) == 2


def test_invalid_recipe_over_http_is_422_with_locations(stack):
    submit = stack.client(stack.token("submit"))
    r = submit.post("/runs", content=RECIPE.replace("[O0, O2]", "[O9]"), headers={"Content-Type": "application/yaml"})
    assert r.status_code == 422
    assert any(p["location"].startswith("matrix.opt") for p in r.json()["errors"])


def test_builds_go_to_the_queue_of_their_toolchain_family(stack, finished_run):
    """A Windows cross build waits in `windows-cross`: the linux workers (crawl,linux) never take it."""
    import time

    _, reader = finished_run
    submit = stack.client(stack.token("submit"))
    recipe = RECIPE.replace("platform: [linux]", "platform: [windows]").replace(
        "toolchain: [gcc-12]", "toolchain: [mingw-gcc-12]"
    )
    recipe = recipe.replace("  - path: recipes/samples/broken\n", "").replace("[O0, O2]", "[O0]")
    r = submit.post("/runs", content=recipe, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        queues = reader.get("/workers").json()["queues"]
        if queues and queues["windows-cross"] >= 1:
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"no message reached windows-cross: {queues}")
    time.sleep(2)
    run = reader.get(f"/runs/{r.json()['id']}").json()
    assert run["status"] == "running" and run["builds"] == {"pending": 1}
