"""The suite's own rule (tests/conftest.py): a missing prerequisite skips on a developer's
machine and fails in CI, and no skip of any kind passes in CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

CASES = """
import pytest
from tests.conftest import need, unavailable

def test_need_a_missing_command():
    need("no-such-command-for-the-ci-policy-test")

def test_unavailable_service():
    unavailable("services not reachable: S3 at http://127.0.0.1:9")

def test_plain_skip():
    pytest.skip("a skip added later")

@pytest.mark.skipif(True, reason="a skipif added later")
def test_marker():
    pass

@pytest.mark.xfail(reason="a known bug", strict=True)
def test_expected_failure():
    assert False

def test_passes():
    pass
"""


def run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "tests").mkdir(exist_ok=True)
    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "tests" / "conftest.py")
    (tmp_path / "tests" / "__init__.py").write_text("")
    (tmp_path / "tests" / "test_cases.py").write_text(CASES)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rA",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:schemathesis",
            "-p",
            "no:hypothesispytest",
            "tests",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_outside_ci_missing_prerequisites_skip_with_their_reason(tmp_path):
    r = run(tmp_path, None)
    assert r.returncode == 0, r.stdout
    assert "4 skipped" in r.stdout and "1 passed" in r.stdout and "1 xfailed" in r.stdout, r.stdout
    assert "not installed: no-such-command-for-the-ci-policy-test" in r.stdout
    assert "S3 at http://127.0.0.1:9" in r.stdout


def test_in_ci_every_skip_is_a_failure_that_says_why(tmp_path):
    r = run(tmp_path, "true")
    assert r.returncode == 1, r.stdout
    assert "skipped" not in r.stdout.splitlines()[-1] and "1 passed" in r.stdout and "1 xfailed" in r.stdout
    for reason in (
        "not installed: no-such-command-for-the-ci-policy-test",
        "S3 at http://127.0.0.1:9",
        "a skip added later",
        "a skipif added later",
    ):
        assert any(reason in line and line.startswith(("FAILED", "ERROR")) for line in r.stdout.splitlines()), (
            reason,
            r.stdout,
        )
