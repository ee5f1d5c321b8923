"""Issue 8, item 4: one bad source never stalls a run.

The attack: ``archive: "http://[::1/x.tgz"`` was accepted (201), then ``start_run``
raised ``ValueError`` and the sweeper re-sent it every ~10 s for ever; a server
answering a non-HTTP status line raised an uncaught ``BadStatusLine``; embedded,
``recipe check`` said ok and ``build`` died with a traceback. Reproduced here
against the real service (a "mirror" on loopback is allowed with
``ASSEMBLAGE_FETCH_ALLOW``, as an operator would list a private mirror), the real
CLI, and a real server that answers like an ssh daemon.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import SAMPLES, need
from tests.integration.service_stack import Stack, assemblage_cmd, wait_for
from tests.security.support import RawServer, edit_recipe_text, query

pytestmark = pytest.mark.integration

BAD_URL = 'archive: "http://[::1/x.tgz"'


def recipe(*sources: str, name: str = "bad-sources") -> str:
    listed = "".join(f"  - {s}\n" for s in sources)
    return (
        f"name: {name}\nsources:\n{listed}matrix:\n  platform: [linux]\n  arch: [x86_64]\n"
        "  toolchain: [gcc-12]\n  opt: [O0]\n"
    )


# ------------------------------------------------------------------ embedded: the real CLI


def test_recipe_check_and_build_say_where_the_bad_url_is(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(recipe(f'path: "{SAMPLES / "calc"}"', BAD_URL))
    for args in (["recipe", "check", str(bad)], ["build", str(bad), "--out", str(tmp_path / "out"), "-q"]):
        r = subprocess.run(assemblage_cmd(*args), capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stdout + r.stderr
        assert r.stderr.strip().splitlines() == [
            f"error: {bad}: sources[1].archive: 'http://[::1/x.tgz' is not a valid URL (Invalid IPv6 URL)"
        ]


def test_embedded_build_goes_on_past_a_server_that_is_not_http(tmp_path: Path) -> None:
    need("gcc-12", "git")
    with RawServer("banner") as banner:
        r_file = tmp_path / "r.yaml"
        r_file.write_text(
            recipe(
                f'path: "{SAMPLES / "calc"}"', f'archive: "{banner.url("/x.tar.gz")}"', f'git: "{banner.url("/x.git")}"'
            )
        )
        r = subprocess.run(
            assemblage_cmd("build", str(r_file), "--out", str(tmp_path / "out"), "-q"),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert banner.hits, "the embedded mode fetches from loopback (a local user's own mirror)"
    out = r.stdout + r.stderr
    assert r.returncode == 9, out  # the run finished; some builds did not succeed
    assert "Traceback" not in out
    assert "source_unavailable" in out and "succeeded" in out
    import sqlite3

    with sqlite3.connect(tmp_path / "out" / "dataset.sqlite") as db:
        rows = db.execute("SELECT name, status FROM sources ORDER BY position").fetchall()
        builds = dict(db.execute("SELECT status, count(*) FROM builds GROUP BY status").fetchall())
    assert rows == [("calc", "fetched"), ("x", "failed"), ("x", "failed")]
    assert builds == {"succeeded": 1, "skipped": 2}


def test_a_stored_spec_that_no_longer_validates_fails_its_source(tmp_path: Path) -> None:
    """A ``sources.spec`` row edited (or written by an older version): the source fails, nothing raises."""
    from assemblage.db import models as m
    from assemblage.pipeline.embedded import open_dataset
    from assemblage.pipeline.steps import create_run, fetch_run_source
    from assemblage.recipes import parse_recipe_text

    ds = open_dataset(tmp_path / "out")
    text = recipe(f'path: "{SAMPLES / "calc"}"')
    run_id = create_run(ds.context, parse_recipe_text(text), text, tmp_path)
    with ds.context.sessions() as s:
        src = s.query(m.Source).filter_by(run_id=run_id).one()
        src.spec = {"archive": "http://[::1/x.tgz"}
        s.commit()
        sid = src.id
    assert fetch_run_source(ds.context, sid) is False
    with ds.context.sessions() as s:
        src = s.get(m.Source, sid)
        assert src.status == "failed" and "does not validate" in src.error and "Invalid IPv6 URL" in src.error
        assert [(b.status, b.reason) for b in s.query(m.Build).filter_by(source_id=sid)] == [
            ("skipped", "source_unavailable")
        ]


# ------------------------------------------------------------------ the service


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    need("gcc-12", "git")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASSEMBLAGE_FETCH_ALLOW", "127.0.0.1")  # the tests' servers stand for a private mirror
        mp.setenv("ASSEMBLAGE_FETCH_TIMEOUT", "20")
        with Stack(tmp_path_factory.mktemp("bad-sources"), sweep_interval=1) as st:
            st.start_api()
            yield st


@pytest.mark.usefixtures("services")
def test_the_api_answers_422_for_an_invalid_url(stack):
    submit = stack.client(stack.token("submit"))
    r = submit.post(
        "/runs", content=recipe('path: "recipes/samples/calc"', BAD_URL), headers={"Content-Type": "application/yaml"}
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == [
        {"location": "sources[1].archive", "message": "'http://[::1/x.tgz' is not a valid URL (Invalid IPv6 URL)"}
    ]


@pytest.mark.usefixtures("services")
def test_a_start_that_cannot_succeed_is_not_sent_again(stack):
    """The stored recipe is what the attack got in before the model checked URLs (an older API)."""
    submit = stack.client(stack.token("submit"))
    reader = stack.client(stack.token("read"))
    r = submit.post(
        "/runs",
        content=recipe('path: "recipes/samples/calc"', name="never-starts"),
        headers={"Content-Type": "application/yaml"},
    )
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    edit_recipe_text(stack, run_id, recipe('path: "recipes/samples/calc"', BAD_URL, name="never-starts"))
    stack.start_worker("w1")
    run = wait_for(
        lambda: (lambda b: b if b["status"] == "failed" else None)(reader.get(f"/runs/{run_id}").json()),
        timeout=60,
        what=f"run {run_id} to fail",
    )
    assert any("Invalid IPv6 URL" in n and "sources[1].archive" in n for n in run["notes"]), run
    assert run["total"] == 0  # nothing was expanded

    # the sweeper resends a pending run's start when the broker is idle on two sweeps in a row (2 s here):
    # give it several chances, and count the starts the worker receives from now on
    def starts() -> list[str]:
        return [line for line in stack.log("w1").splitlines() if "assemblage.start_run[" in line and "received" in line]

    time.sleep(2)  # a copy already sent before the run failed (the sweeper may resend while no worker runs)
    before = starts()
    time.sleep(10)
    assert starts() == before, starts()[len(before) :]
    assert query(stack, "SELECT status FROM runs WHERE id = :r", r=run_id) == [("failed",)]


@pytest.mark.usefixtures("services")
def test_a_server_that_is_not_http_fails_its_source_not_the_run(stack):
    if "w1" not in stack.procs:
        stack.start_worker("w1")
    submit = stack.client(stack.token("submit"))
    reader = stack.client(stack.token("read"))
    with RawServer("banner") as banner:
        r = submit.post(
            "/runs",
            content=recipe(
                'path: "recipes/samples/calc"',
                f'archive: "{banner.url("/x.tar.gz")}"',
                f'git: "{banner.url("/x.git")}"',
            ),
            headers={"Content-Type": "application/yaml"},
        )
        assert r.status_code == 201, r.text
        run = stack.wait_run(reader, r.json()["id"], timeout=180)
        assert len(banner.hits) >= 2  # both fetches reached the server (it is an allowed mirror)
    assert run["builds"] == {"succeeded": 1, "skipped": 2}, run
    cov = reader.get(f"/runs/{run['id']}/coverage").json()
    bad = sorted((c["source"], c["reason"], c["message"]) for c in cov["cells"] if c["status"] == "skipped")
    where = f"127.0.0.1:{banner.port}"
    assert bad == [
        ("x", "source_unavailable", f"git ls-remote {banner.url('/x.git')} failed: no usable git answer from {where}"),
        ("x", "source_unavailable", f"{banner.url('/x.tar.gz')}: download failed: no usable HTTP answer from {where}"),
    ]
    assert "BadStatusLine" not in stack.log("w1")
