"""Sources through the whole pipeline: pins recorded, failures visible as coverage gaps."""

from __future__ import annotations

import io
import shutil
import sqlite3
import subprocess
import tarfile
from datetime import UTC
from pathlib import Path

import pytest

from assemblage.pipeline.embedded import open_dataset, run_recipe
from assemblage.pipeline.report import run_report
from assemblage.recipes import parse_recipe
from tests.conftest import SAMPLES, need

pytestmark = pytest.mark.integration


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_git_archive_and_failing_sources(tmp_path: Path, monkeypatch) -> None:
    need("git", "gcc-12")
    monkeypatch.delenv("ASSEMBLAGE_GITHUB_TOKEN", raising=False)
    repo = tmp_path / "calc-repo"
    shutil.copytree(SAMPLES / "calc", repo)
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "calc", cwd=repo)
    git("tag", "v1.0", cwd=repo)
    commit = git("rev-parse", "HEAD", cwd=repo)

    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tf:
        data = b"int main(void){return 0;}\n"
        info = tarfile.TarInfo("../escaped.c")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))

    good = tmp_path / "vec.tar.gz"
    with tarfile.open(good, "w:gz") as tf:
        tf.add(SAMPLES / "vecmath", arcname="vecmath-1.0")

    recipe = parse_recipe(
        {
            "name": "sources",
            "sources": [
                {"git": str(repo), "ref": "v1.0"},
                {"archive": str(good)},
                {"archive": str(evil)},
                {"github": {"query": "language:c", "limit": 5}},
            ],
            "matrix": {"toolchain": ["gcc-12"], "opt": ["O1"]},
        }
    )
    ds = open_dataset(tmp_path / "out")
    run_id = run_recipe(ds, recipe, "sources", tmp_path, jobs=2)
    assert not (tmp_path / "escaped.c").exists()
    with ds.context.sessions() as s:
        rep = run_report(s, run_id)
    assert len(rep.cells) == 4
    calc, vec, evil_cell, gh = rep.cells  # in recipe order
    assert calc.status == "succeeded"
    assert vec.status == "succeeded", vec.message
    assert (evil_cell.status, evil_cell.reason) == ("skipped", "source_unavailable")
    assert "escaped.c" in evil_cell.message
    assert (gh.status, gh.reason) == ("skipped", "source_unavailable")
    assert "ASSEMBLAGE_GITHUB_TOKEN" in gh.message

    con = sqlite3.connect(ds.db_path)
    row = con.execute("select repo_commit_hash, source_kind from binaries where file_name = 'calc'").fetchone()
    assert row == (commit, "git")
    pinned = con.execute("select pinned_spec from sources where kind = 'git'").fetchone()[0]
    assert commit in pinned
    sha = con.execute("select sha256 from sources where kind = 'archive' and status = 'fetched'").fetchone()[0]
    assert len(sha) == 64


def test_builds_start_while_other_sources_are_still_fetched(tmp_path: Path) -> None:
    """With one job, the first source's build runs while a slow download of the second goes on (fetches have
    their own threads: in one queue every fetch went before every build)."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    need("gcc-12")
    good = tmp_path / "vec.tar.gz"
    with tarfile.open(good, "w:gz") as tf:
        tf.add(SAMPLES / "vecmath", arcname="vecmath-1.0")
    payload = good.read_bytes()
    served: list[float] = []

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(8)
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            served.append(time.time())

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        recipe = parse_recipe(
            {
                "name": "overlap",
                "sources": [
                    {"path": str(SAMPLES / "calc")},
                    {"archive": f"http://127.0.0.1:{server.server_port}/vec.tar.gz"},
                ],
                "matrix": {"toolchain": ["gcc-12"], "opt": ["O0"]},
            }
        )
        ds = open_dataset(tmp_path / "out")
        run_id = run_recipe(ds, recipe, "overlap", tmp_path, jobs=1)
    finally:
        server.shutdown()
    with ds.context.sessions() as s:
        rep = run_report(s, run_id)
    assert [c.status for c in rep.cells] == ["succeeded", "succeeded"], [c.message for c in rep.cells]
    con = sqlite3.connect(ds.db_path)
    started = con.execute(
        "select b.started_at from builds b join sources s on s.id = b.source_id where s.kind = 'path'"
    ).fetchone()[0]
    from datetime import datetime

    started_at = datetime.fromisoformat(started).replace(tzinfo=UTC).timestamp()
    assert served and started_at < served[0], (started, served)
