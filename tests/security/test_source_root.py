"""Issue 8, item 3: the source root cannot be bypassed, on the API or on the worker.

The attack: ``git: file:///any/local/repo`` was accepted and built (its content then
readable by any read token), and a relative ``path:`` that passed the API's check
resolved on the worker against its working directory. Here, against the real
service (PostgreSQL, Redis, S3, Celery workers), every way to name a local source
outside ``ASSEMBLAGE_SOURCE_ROOT`` is tried: on the API (422, located), and on the
worker with the recipe edited in the database after the API accepted it (as an
older API or anyone with the database could have left it). A canary planted in
every outside source, and one in the workers' environment, must appear nowhere
the service writes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import need
from tests.integration.service_stack import Stack
from tests.security.support import (
    Canary,
    assert_nowhere,
    c_project,
    edit_recipe_text,
    make_repo,
    tarball,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("services")]


def recipe(*sources: str) -> str:
    listed = "".join(f"  - {s}\n" for s in sources)
    return (
        f"name: bypass\nsources:\n{listed}matrix:\n  platform: [linux]\n  arch: [x86_64]\n"
        "  toolchain: [gcc-12]\n  opt: [O0]\n"
    )


class World:
    """A source root with a good project and links out of it; an outside full of canaries; the service."""

    def __init__(self, base: Path) -> None:
        self.canary = Canary("file")
        self.env_canary = Canary("env")
        self.root = base / "root"
        self.outside = base / "outside"
        c_project(self.root / "good", "asm-good-marker")
        make_repo(self.outside / "secret-repo", str(self.canary))
        c_project(self.outside / "secret-folder", str(self.canary))
        tarball(self.outside / "secret-1.0.tar.gz", self.outside / "secret-folder", "secret-1.0")
        (self.root / "link-to-folder").symlink_to(self.outside / "secret-folder")
        (self.root / "link-to-repo").symlink_to(self.outside / "secret-repo")
        (self.root / "link-to-archive.tar.gz").symlink_to(self.outside / "secret-1.0.tar.gz")
        # inside the root, but its objects live outside (git clone --shared writes objects/info/alternates)
        subprocess.run(
            [
                "git",
                "clone",
                "-q",
                "--shared",
                "--bare",
                str(self.outside / "secret-repo"),
                str(self.root / "borrowing.git"),
            ],
            check=True,
            capture_output=True,
        )
        # the workers run in the stack's folder: a folder there that the source root does not have
        self.stack_dir = base / "stack"
        c_project(self.stack_dir / "cwd-only", str(self.canary))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    need("git", "gcc-12")
    w = World(tmp_path_factory.mktemp("source-root"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASSEMBLAGE_TEST_ENV_CANARY", str(w.env_canary))  # inherited by the API and the workers
        with Stack(w.stack_dir, source_root=w.root, sweep_interval=1) as st:
            st.start_api()
            w.stack = st
            yield w


def outside_sources(w: World) -> list[tuple[str, str]]:
    """(recipe line, the field a refusal names): each one names something outside the root."""
    o, r = w.outside, w.root
    return [
        (f'git: "file://{o}/secret-repo"', "git"),
        (f'git: "{o}/secret-repo"', "git"),
        ('git: "../outside/secret-repo"', "git"),
        ('git: "link-to-repo"', "git"),
        (f'git: "file://{r}/link-to-repo"', "git"),
        ('path: "../outside/secret-folder"', "path"),
        ('path: "link-to-folder"', "path"),
        ('path: "/proc/self"', "path"),
        (f'path: "{o}/secret-folder"', "path"),
        (f'archive: "file://{o}/secret-1.0.tar.gz"', "archive"),
        ('archive: "../outside/secret-1.0.tar.gz"', "archive"),
        ('archive: "link-to-archive.tar.gz"', "archive"),
        ('archive: "file:///proc/self/environ"', "archive"),
    ]


def test_the_api_refuses_every_way_out_of_the_source_root(world):
    submit = world.stack.client(world.stack.token("submit"))
    answers = []
    for line, field in outside_sources(world):
        r = submit.post("/runs", content=recipe('path: "good"', line), headers={"Content-Type": "application/yaml"})
        answers.append(r.text)
        assert r.status_code == 422, (line, r.status_code, r.text)
        problems = r.json()["errors"]
        assert [p["location"] for p in problems] == [f"sources[1].{field}"], (line, problems)
        assert "source root" in problems[0]["message"], (line, problems)
    assert_nowhere(
        world.stack, [str(world.canary), str(world.env_canary)], answers=answers, skip=[world.stack_dir / "cwd-only"]
    )


def test_the_worker_checks_again_and_resolves_relative_paths_against_its_root(world):
    st = world.stack
    submit = st.client(st.token("submit"))
    reader = st.client(st.token("read"))
    # both pass the API: "cwd-only" is a relative path inside the root (where it does not exist), and the
    # borrowing repository lies inside the root (its objects do not)
    accepted = recipe('path: "good"', 'path: "cwd-only"', 'git: "borrowing.git"')
    r = submit.post("/runs", content=accepted, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    # what an older API (or anyone with the database) could have stored: every way out, unchecked
    hostile = recipe(
        'path: "good"', 'path: "cwd-only"', 'git: "borrowing.git"', *(line for line, _ in outside_sources(world))
    )
    edit_recipe_text(st, run_id, hostile)
    st.start_worker("w1")
    st.wait_run(reader, run_id, timeout=240)
    cov = reader.get(f"/runs/{run_id}/coverage").json()
    cells = {c["source"]: c for c in cov["cells"]}
    assert len(cov["cells"]) == 16, cov
    good = [c for c in cov["cells"] if c["source"] == "good"]
    assert [(c["status"], c["binaries"]) for c in good] == [("succeeded", 1)], good  # the control builds
    refused = [c for c in cov["cells"] if c["source"] != "good"]
    assert all((c["status"], c["reason"]) == ("skipped", "source_unavailable") for c in refused), refused
    messages = [c["message"] for c in refused]
    assert sum("outside the service's source root" in m for m in messages) == 14, messages
    assert "no such folder" in cells["cwd-only"]["message"]  # the root has no cwd-only; the cwd's is not used
    assert "leads outside the service's source root" in cells["borrowing"]["message"]
    answers = [reader.get(f"/runs/{run_id}").text, reader.get(f"/runs/{run_id}/coverage").text]
    for c in cov["cells"]:
        answers.append(reader.get(f"/builds/{c['build_id']}").text)
        log = reader.get(f"/builds/{c['build_id']}/log")
        answers.append(log.text if log.status_code == 200 else "")
    answers.append(reader.get("/binaries", params={"run": run_id}).text)
    assert_nowhere(st, [str(world.canary), str(world.env_canary)], answers=answers, skip=[world.stack_dir / "cwd-only"])
