"""A ``github:`` source through the whole pipeline: crawl, clone, build, in both modes.

The API is tests/fake_github.py on loopback; its clone URLs are local git repositories.
The service test kills the worker that is crawling and checks that a second worker
resumes the crawl without asking for a page or a repository twice.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SAMPLES, need
from tests.fake_github import TOKEN, FakeGithub, repo

pytestmark = pytest.mark.integration


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def local_repo(root: Path, sample: str) -> tuple[Path, str]:
    path = root / "clones" / sample
    shutil.copytree(SAMPLES / sample, path)
    git("init", "-q", "-b", "main", cwd=path)
    git("add", ".", cwd=path)
    git("commit", "-q", "-m", sample, cwd=path)
    return path, git("rev-parse", "HEAD", cwd=path)


def fake_repos(root: Path) -> list[dict]:
    calc, calc_sha = local_repo(root, "calc")
    vec, vec_sha = local_repo(root, "vecmath")
    return [
        repo("alice", "calc", clone_url=str(calc), commit=calc_sha, files=("Makefile", "main.c")),
        repo("bob", "docs", clone_url=str(root / "clones" / "docs"), files=("README.md",)),  # nothing to build
        repo("carol", "vecmath", clone_url=str(vec), commit=vec_sha, files=("meson.build", "vec.c")),
        repo("dave", "elsewhere", clone_url="file:///etc", files=("Makefile",)),  # refused clone URL
    ]


def test_embedded_build_of_a_github_search(tmp_path: Path, monkeypatch) -> None:
    need("git", "gcc-12", "meson")
    repos = fake_repos(tmp_path)
    with FakeGithub(repos) as gh:
        monkeypatch.setenv("ASSEMBLAGE_GITHUB_TOKEN", TOKEN)
        monkeypatch.setenv("ASSEMBLAGE_GITHUB_API_URL", gh.url)
        monkeypatch.setenv("ASSEMBLAGE_GITHUB_CLONE_PREFIX", str(tmp_path / "clones") + "/")
        recipe = tmp_path / "gh.yaml"
        recipe.write_text(
            "name: gh\nsources:\n  - path: " + str(SAMPLES / "wordfreq") + "\n"
            "  - github: {query: 'language:c', limit: 10}\n"
            "matrix: {toolchain: [gcc-12], opt: [O1]}\n"
        )
        exe = Path(sys.executable).with_name("assemblage")
        r = subprocess.run(
            [str(exe), "build", str(recipe), "--out", str(tmp_path / "out"), "--json", "-j", "2"],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        doc = json.loads(r.stdout)
        assert {c["source"]: c["status"] for c in doc["cells"]} == {
            "wordfreq": "succeeded",
            "alice.calc": "succeeded",
            "carol.vecmath": "succeeded",
        }
        assert TOKEN not in r.stdout + r.stderr
        assert gh.requests("/repos/bob/docs/git/trees/")  # resolved, then skipped for what its tree holds
        assert not gh.requests("/repos/dave/")  # a refused clone URL costs no request
    con = sqlite3.connect(tmp_path / "out" / "dataset.sqlite")
    pins = dict(con.execute("select name, \"commit\" from sources where kind = 'git'").fetchall())
    assert pins == {"alice.calc": repos[0]["_commit"], "carol.vecmath": repos[2]["_commit"]}
    verdicts = dict(con.execute("select full_name, coalesce(reason, status) from crawl_repos").fetchall())
    assert verdicts == {
        "alice/calc": "accepted",
        "bob/docs": "no_build_system",
        "carol/vecmath": "accepted",
        "dave/elsewhere": "clone_url",
    }
    assert (
        con.execute("select count(*) from binaries where repo_commit_hash = ?", (repos[0]["_commit"],)).fetchone()[0]
        >= 1
    )
    dump = "\n".join(
        str(r)
        for t in ("crawls", "crawl_repos", "http_cache", "sources", "builds")
        for r in con.execute(f"select * from {t}")
    )
    assert TOKEN not in dump


def test_crawl_command_prints_what_a_search_would_add(tmp_path: Path, monkeypatch) -> None:
    need("git")
    repos = fake_repos(tmp_path)
    with FakeGithub(repos) as gh:
        monkeypatch.setenv("ASSEMBLAGE_GITHUB_TOKEN", TOKEN)
        monkeypatch.setenv("ASSEMBLAGE_GITHUB_API_URL", gh.url)
        monkeypatch.setenv("ASSEMBLAGE_GITHUB_CLONE_PREFIX", str(tmp_path / "clones") + "/")
        recipe = tmp_path / "gh.yaml"
        recipe.write_text(
            "name: gh\nsources:\n  - github: {query: 'language:c', limit: 10}\nmatrix: {toolchain: [gcc-12]}\n"
        )
        exe = Path(sys.executable).with_name("assemblage")
        r = subprocess.run([str(exe), "crawl", str(recipe), "--json"], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        [search] = doc["sources"]
        assert [a["repository"] for a in search["accepted"]] == ["alice/calc", "carol/vecmath"]
        assert search["repositories"] == {"accepted": 2, "no_build_system": 1, "clone_url": 1}
        assert not list((tmp_path / "clones").glob("*/.git/FETCH_HEAD"))  # nothing was cloned
        text = subprocess.run([str(exe), "crawl", str(recipe)], capture_output=True, text=True, timeout=300)
        assert text.returncode == 0 and "alice/calc" in text.stdout and "no_build_system" in text.stdout


def test_service_crawl_survives_a_killed_worker(tmp_path: Path, monkeypatch) -> None:
    need("git", "gcc-12", "meson")
    from tests.integration.service_stack import Stack, missing_services

    if missing_services():
        pytest.fail(f"services not running: {missing_services()} (make test starts them)")
    repos = fake_repos(tmp_path)
    # many more candidates without a build system, so that the crawl takes a while to kill
    repos += [
        repo("zed", f"empty{i:03d}", files=("README",), clone_url=str(tmp_path / "clones" / f"e{i}")) for i in range(60)
    ]
    with FakeGithub(repos) as gh:
        gh.delay = 0.05
        for k, v in {
            "ASSEMBLAGE_GITHUB_TOKEN": TOKEN,
            "ASSEMBLAGE_GITHUB_API_URL": gh.url,
            "ASSEMBLAGE_GITHUB_CLONE_PREFIX": str(tmp_path / "clones") + "/",
        }.items():
            monkeypatch.setenv(k, v)  # the stack's processes inherit them
        with Stack(root=tmp_path / "stack", source_root=tmp_path) as stack:
            stack.start_api()
            stack.start_worker("w1", queues="crawl,linux")
            submit = stack.client(stack.token("submit"))
            r = submit.post(
                "/runs",
                content="name: gh\nsources:\n  - github: {query: 'language:c', limit: 10}\n"
                "matrix: {toolchain: [gcc-12], opt: [O1]}\n",
                headers={"Content-Type": "application/yaml"},
            )
            assert r.status_code == 201, r.text
            run = r.json()["id"]
            deadline = time.monotonic() + 120
            while len(gh.requests("/repos/zed/")) < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(gh.requests("/repos/zed/")) >= 20, "the crawl did not start: " + stack.log("w1")[-2000:]
            stack.kill("w1")
            killed_at = len(gh.log)
            stack.start_worker("w2", queues="crawl,linux")
            status = stack.wait_run(submit, run, timeout=600)
            assert status["status"] == "finished", status
            cov = submit.get(f"/runs/{run}/coverage").json()
            cells = {(c["source"], c["status"]) for c in cov["cells"]}
            assert cells == {("alice.calc", "succeeded"), ("carol.vecmath", "succeeded")}, cells
            assert TOKEN not in stack.log("w1") + stack.log("w2") + stack.log("api")
    fetched = [p for p, st, _ in gh.log if st == 200]
    assert len(fetched) - len(set(fetched)) <= 1  # at most the request in flight at the kill, twice
    assert len(gh.log) - killed_at < len(set(fetched))  # the second worker resumed, it did not start over
