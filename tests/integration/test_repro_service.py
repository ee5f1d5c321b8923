"""The lock of a run built by the service (API, Celery worker, PostgreSQL, Redis, S3) equals the lock of the
same recipe built embedded, except in the fields that say which run it was (``run``: id, dates, base)."""

from __future__ import annotations

import pytest

from assemblage.pipeline.embedded import open_dataset, run_recipe
from assemblage.pipeline.lock import comparable, lock_for_run, parse_lock
from assemblage.recipes.load import parse_recipe_text
from tests.conftest import REPO
from tests.integration.service_stack import Stack, missing_services

_missing = missing_services()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(_missing), reason=f"services not reachable: {', '.join(_missing)} (make services)"),
]

RECIPE = """\
name: repro-service
sources:
  - path: recipes/samples/calc
  - path: recipes/samples/wordfreq
  - path: recipes/samples/broken
matrix:
  platform: [linux]
  arch: [x86_64]
  toolchain: [gcc-12, clang-19]
  opt: [O2]
"""


@pytest.fixture(scope="module")
def service_lock(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("repro-service")) as st:
        st.start_api()
        st.start_worker("w1")
        submit = st.client(st.token("submit"))
        r = submit.post("/runs", content=RECIPE, headers={"Content-Type": "application/yaml"})
        assert r.status_code == 201, r.text
        reader = st.client(st.token("read"))
        run = st.wait_run(reader, r.json()["id"], timeout=300)
        got = reader.get(f"/runs/{run['id']}/lock")
        assert got.status_code == 200, got.text
        missing = reader.get("/runs/999999/lock")
        anonymous = st.client(None).get(f"/runs/{run['id']}/lock")
        yield run, got.content, missing, anonymous


def test_the_service_lock_equals_the_embedded_lock(service_lock, tmp_path):
    run, body, _, _ = service_lock
    served = parse_lock(body, where="GET /runs/{id}/lock")  # the API's document validates as a lock
    assert served.run.id == run["id"] and served.run.status == "finished"
    dataset = open_dataset(tmp_path / "embedded")
    run_id = run_recipe(dataset, parse_recipe_text(RECIPE), RECIPE, REPO, jobs=2)
    with dataset.context.sessions() as s:
        local = lock_for_run(s, run_id)
    assert sum(1 for b in local.builds if b.status == "succeeded") == 4
    assert all(x.sha256 for b in local.builds for x in b.binaries)
    a, b = comparable(served), comparable(local)
    differing = sorted(k for k in a if a[k] != b[k])
    assert differing == [], {k: (a[k], b[k]) for k in differing}
    assert served.run != local.run  # what legitimately differs: which run it was


def test_the_lock_route_says_404_and_needs_a_token(service_lock):
    _, _, missing, anonymous = service_lock
    assert missing.status_code == 404
    assert anonymous.status_code == 401
