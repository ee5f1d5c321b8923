"""`assemblage rebuild LOCK --out DIR` from the command line: the pinned commit, not the branch; refusal on
toolchain drift (exit 11) unless --allow-drift, which records the difference in the new dataset."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SAMPLES, need

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-c", "from assemblage.cli.main import main; main()"]
COMMIT_DATE = "2021-03-04T05:06:07+00:00"  # 1614834367


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=1200)


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
        "GIT_COMMITTER_DATE": COMMIT_DATE,
        "GIT_AUTHOR_DATE": COMMIT_DATE,
    }
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout.strip()


def binaries(folder: Path) -> dict[str, str]:
    db = sqlite3.connect(folder / "dataset.sqlite")
    try:
        return dict(db.execute("select config || ':' || relpath, hash from binaries").fetchall())
    finally:
        db.close()


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    """A run of a git source on branch main (then main moves on), and its lock."""
    need("gcc-12", "git")
    root = tmp_path_factory.mktemp("rebuild")
    repo = root / "calc"
    repo.mkdir()
    for f in SAMPLES.joinpath("calc").iterdir():
        (repo / f.name).write_bytes(f.read_bytes())
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "calc")
    first = git(repo, "rev-parse", "HEAD")
    (root / "r.yaml").write_text(
        "name: rebuild-git\nsources:\n  - git: calc\n    ref: main\nmatrix:\n  toolchain: [gcc-12]\n  opt: [O0, O2]\n"
    )
    r = cli("build", "r.yaml", "--out", "first", "-q", "-j", "2", cwd=root)
    assert r.returncode == 0, r.stderr
    lock = cli("lock", "first", cwd=root)
    assert lock.returncode == 0, lock.stderr
    (root / "run.lock.json").write_text(lock.stdout)
    # main moves on: a build of the recipe now gets other binaries
    (repo / "main.c").write_text((repo / "main.c").read_text() + "\nint moved_on(void) { return 42; }\n")
    git(repo, "commit", "-q", "-am", "moved on")
    return root, first, json.loads(lock.stdout)


def test_the_lock_pins_the_commit_and_its_date(locked):
    root, first, lock = locked
    (src,) = lock["sources"]
    assert src["commit"] == first and src["pin"] == first and src["pinned"]["ref"] == first
    assert src["spec"]["ref"] == "main" and src["source_date_epoch"] == 1614834367
    assert all(b["settings"]["env"]["SOURCE_DATE_EPOCH"] == "1614834367" for b in lock["builds"])


def test_rebuild_builds_the_pinned_commit_bit_for_bit(locked):
    root, first, lock = locked
    r = cli("rebuild", "run.lock.json", "--out", "again", "-q", "-j", "2", cwd=root)
    assert r.returncode == 0, r.stderr + r.stdout
    want = {f"{b['config']}:{x['relpath']}": x["sha256"] for b in lock["builds"] for x in b["binaries"]}
    assert len(want) == 2 and binaries(root / "again") == want
    again = json.loads(cli("lock", "again", cwd=root).stdout)
    assert again["sources"][0]["commit"] == first
    db = sqlite3.connect(root / "again" / "dataset.sqlite")
    (origin,) = db.execute("select lock_origin from runs").fetchone()
    origin = json.loads(origin)
    assert origin["run"] == lock["run"]["id"] and origin["drift"] == [] and len(origin["lock_sha256"]) == 64
    # the recipe itself, built now, follows the branch: other binaries
    fresh = cli("build", "r.yaml", "--out", "fresh", "-q", "-j", "2", cwd=root)
    assert fresh.returncode == 0, fresh.stderr
    assert set(binaries(root / "fresh").values()).isdisjoint(want.values())
    # and a rebuild into a folder that already holds a dataset is refused
    again_again = cli("rebuild", "run.lock.json", "--out", "again", cwd=root)
    assert again_again.returncode == 2 and "already holds a dataset" in again_again.stderr


def test_rebuild_refuses_a_toolchain_that_differs_unless_told_and_records_it(locked):
    root, first, lock = locked
    edited = json.loads(json.dumps(lock))
    gcc = next(t for t in edited["toolchains"] if t["toolchain"] == "gcc-12")
    real = gcc["tools"][0]["version"]
    gcc["tools"][0]["version"] = "gcc-12 (Debian 12.1.0-1) 12.1.0"
    (root / "drift.json").write_text(json.dumps(edited))
    r = cli("rebuild", "drift.json", "--out", "drifted", cwd=root)
    assert r.returncode == 11, r.stderr
    assert "gcc-12 --version" in r.stderr and "12.1.0-1" in r.stderr and real in r.stderr
    assert "--allow-drift" in r.stderr and "Traceback" not in r.stderr
    assert not (root / "drifted").exists()
    ok = cli("rebuild", "drift.json", "--out", "drifted", "--allow-drift", "-q", "-j", "2", cwd=root)
    assert ok.returncode == 0, ok.stderr
    assert "drift (allowed, recorded)" in ok.stdout
    db = sqlite3.connect(root / "drifted" / "dataset.sqlite")
    (origin,) = db.execute("select lock_origin from runs").fetchone()
    drift = json.loads(origin)["drift"]
    assert json.loads(origin)["allow_drift"] is True
    assert [d for d in drift if d["what"].endswith("gcc-12 --version")] == [
        {
            "what": "toolchain gcc-12 (linux-x86_64, local): gcc-12 --version",
            "locked": "gcc-12 (Debian 12.1.0-1) 12.1.0",
            "here": real,
        }
    ]
