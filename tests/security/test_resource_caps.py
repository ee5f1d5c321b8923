"""Issue 8, item 6: a build's disk and log stay within their caps.

The attack: ``disk`` was a per-file limit (RLIMIT_FSIZE), so a build wrote 91 MiB in
six files under ``disk: 16MiB``, and its ``/tmp`` was a tmpfs the size of half the RAM,
counted nowhere; its log grew without bound (300 MB). Here real builds (bubblewrap,
gcc) write many files under the limit each but over it together, in their folder and
in ``/tmp``, and print 50 MB: the first is killed with ``disk_limit``, the second's
log keeps its head and tail within ``max_log_bytes``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.conftest import need
from tests.integration.service_stack import assemblage_cmd

pytestmark = pytest.mark.integration


def run(tmp_path: Path, name: str, makefile: str, build: str = "", env: dict | None = None) -> tuple[Path, dict]:
    src = tmp_path / name
    src.mkdir()
    (src / "main.c").write_text("int main(void) { return 0; }\n")
    (src / "Makefile").write_text(makefile)
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(
        f"name: {name}\nsources:\n  - path: {src}\nmatrix:\n  platform: [linux]\n  arch: [x86_64]\n"
        f"  toolchain: [gcc-12]\n  opt: [O0]\n{build}"
    )
    out = tmp_path / f"{name}-out"
    r = subprocess.run(
        assemblage_cmd("build", str(recipe), "--out", str(out), "--json", "-q"),
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
    con = sqlite3.connect(out / "dataset.sqlite")
    try:
        status, reason, message, log_key = con.execute("SELECT status, reason, message, log_key FROM builds").fetchone()
    finally:
        con.close()
    log = next(out.rglob(Path(log_key).name))
    return log, {"status": status, "reason": reason, "message": message, "summary": r.stdout + r.stderr}


def _sandbox() -> None:
    need("gcc-12", "bwrap")
    from assemblage.builds.runner import sandbox_available

    assert sandbox_available(), "bubblewrap cannot create namespaces on this machine"


def test_many_files_under_the_per_file_limit_but_over_the_disk_limit_kill_the_build(tmp_path):
    _sandbox()
    # 6 x 12 MiB (each under 16 MiB), half in the build folder, half in /tmp; then it would sleep
    writes = "".join(
        f"\thead -c 12M /dev/urandom > {where}/f{i}\n"
        for i, where in enumerate(["out", "out", "out", "/tmp", "/tmp", "/tmp"])
    )
    makefile = f"all:\n\tmkdir -p out\n{writes}\tsleep 30\n\t$(CC) -o app main.c\n"
    log, b = run(tmp_path, "disk", makefile, "build:\n  disk: 16MiB\n  timeout: 120\n")
    assert (b["status"], b["reason"]) == ("failed", "disk_limit"), b
    assert "disk limit" in b["message"]
    text = log.read_text()
    assert "killed: the build folder grew past the disk limit" in text
    assert "sleep 30" not in text.split("killed:")[-1]  # killed before the next command


def test_files_in_tmp_alone_count(tmp_path):
    _sandbox()
    makefile = "all:\n" + "".join(f"\thead -c 10M /dev/urandom > /tmp/t{i}\n" for i in range(4)) + "\tsleep 30\n"
    log, b = run(tmp_path, "tmp", makefile, "build:\n  disk: 24MiB\n  timeout: 120\n")
    assert (b["status"], b["reason"]) == ("failed", "disk_limit"), b


def test_a_build_printing_50_mb_leaves_a_log_within_the_cap_with_head_and_tail(tmp_path):
    _sandbox()
    cap = 1 << 20
    makefile = (
        "all:\n\t@echo FIRST-LINE-OF-THE-BUILD\n"
        "\t@head -c 50000000 /dev/zero | tr '\\0' 'y' | fold -w 100\n"
        "\t@echo LAST-LINE-OF-THE-BUILD\n\t$(CC) -o app main.c\n"
    )
    log, b = run(tmp_path, "chatty", makefile, env={"ASSEMBLAGE_MAX_LOG_BYTES": str(cap)})
    assert b["status"] == "succeeded", b
    size = log.stat().st_size
    assert size <= cap + 8192, size  # the cap, the marker and what is written after the build (analysis)
    text = log.read_text()
    assert "FIRST-LINE-OF-THE-BUILD" in text and "LAST-LINE-OF-THE-BUILD" in text
    assert "# assemblage build" in text.splitlines()[0]
    marker = [ln for ln in text.splitlines() if ln.startswith("! [log cut:")]
    assert len(marker) == 1 and int(marker[0].split()[3]) > 48_000_000, marker
    assert json.loads(b["summary"])["builds"]["succeeded"] == 1
