"""Issue 8, item 2: the sandbox fails closed, and builds never see the environment of the process running them.

The attack: where bubblewrap is missing or cannot create namespaces (Docker's default
seccomp profile: the normal case in a worker container), builds used to run anyway,
with the network, the host's files and the worker's environment (its secret key, S3
keys and database URL, read from ``/proc/*/environ``), recorded ``succeeded``.

Here bubblewrap is made unusable the way a container makes it (a ``bwrap`` first on
PATH that cannot create namespaces), a real build is refused with the reason and the
fix, and runs only with ``allow_unsandboxed`` (and then its row and the summary say
so). With bubblewrap for real, a Makefile that dumps its environment and every
``/proc/*/environ`` it can read finds no canary of the pipeline's environment.
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
from tests.security.support import Canary, find_in_files

pytestmark = pytest.mark.integration


def nosy_source(folder: Path, marker: Path) -> Path:
    """A real C program whose Makefile first shows every environment it can read and touches ``marker``."""
    folder.mkdir(parents=True)
    (folder / "main.c").write_text('#include <stdio.h>\nint main(void) { puts("hi"); return 0; }\n')
    (folder / "Makefile").write_text(
        "all:\n"
        "\tenv\n"
        "\t-cat /proc/*/environ | tr '\\0' '\\n'\n"
        f"\t-touch {marker}\n"
        "\t$(CC) $(CFLAGS) -o hello main.c $(LDFLAGS)\n"
    )
    return folder


def broken_bwrap(folder: Path) -> Path:
    """A ``bwrap`` that fails as bubblewrap does under Docker's default seccomp profile."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "bwrap"
    exe.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    exe.chmod(0o755)
    return folder


def build(tmp_path: Path, name: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, Path, Path]:
    marker = tmp_path / f"{name}-ran"
    src = nosy_source(tmp_path / name, marker)
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(
        f"name: {name}\nsources:\n  - path: {src}\nmatrix:\n  platform: [linux]\n  arch: [x86_64]\n"
        "  toolchain: [gcc-12]\n  opt: [O0]\n"
    )
    out = tmp_path / f"{name}-out"
    r = subprocess.run(
        assemblage_cmd("build", str(recipe), "--out", str(out), "--json", "-q"),
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    return r, out, marker


def row(out: Path) -> tuple:
    con = sqlite3.connect(out / "dataset.sqlite")
    try:
        return con.execute("SELECT status, reason, message, sandboxed FROM builds").fetchone()
    finally:
        con.close()


def binaries(out: Path) -> int:
    con = sqlite3.connect(out / "dataset.sqlite")
    try:
        return con.execute("SELECT count(*) FROM binaries").fetchone()[0]
    finally:
        con.close()


def test_without_a_usable_bubblewrap_a_build_fails_closed(tmp_path):
    need("gcc-12")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSEMBLAGE_")}
    env["PATH"] = f"{broken_bwrap(tmp_path / 'fake')}:{env['PATH']}"
    r, out, marker = build(tmp_path, "closed", env)
    status, reason, message, sandboxed = row(out)
    assert (status, reason) == ("failed", "sandbox_unavailable"), (r.stdout, r.stderr)
    assert "bubblewrap cannot create namespaces" in message
    assert "apt-get install bubblewrap" in message and "allow_unsandboxed" in message
    assert sandboxed is None  # no step ran
    assert binaries(out) == 0
    assert not marker.exists()  # the Makefile never ran
    # ASSEMBLAGE_NO_SANDBOX alone (a developer's switch) is refused the same way
    env = {**env, "PATH": os.environ["PATH"], "ASSEMBLAGE_NO_SANDBOX": "1"}
    r, out, marker = build(tmp_path, "forced", env)
    assert row(out)[:2] == ("failed", "sandbox_unavailable"), (r.stdout, r.stderr)
    assert "ASSEMBLAGE_NO_SANDBOX is set" in row(out)[2]
    assert not marker.exists()


def test_allowed_unsandboxed_builds_run_and_say_so_loudly_without_the_pipelines_environment(tmp_path):
    need("gcc-12")
    canary = Canary("env")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSEMBLAGE_")}
    env.update(
        PATH=f"{broken_bwrap(tmp_path / 'fake')}:{env['PATH']}",
        ASSEMBLAGE_ALLOW_UNSANDBOXED="1",
        ASSEMBLAGE_TEST_ENV_CANARY=str(canary),
    )
    r, out, marker = build(tmp_path, "allowed", env)
    status, reason, message, sandboxed = row(out)
    assert status == "succeeded", (r.stdout, r.stderr, message)
    assert sandboxed == 0 and binaries(out) == 1
    summary = json.loads(r.stdout)
    assert summary["unsandboxed"] == 1
    log = "".join(p.read_text(errors="replace") for p in out.rglob("build-*.log"))
    assert "UNSANDBOXED BUILD" in log
    # the text summary says it too
    r2 = subprocess.run(
        assemblage_cmd("report", str(out), "--allow-failures"), capture_output=True, text=True, env=env, timeout=120
    )
    assert "WITHOUT A SANDBOX" in r2.stdout, r2.stdout + r2.stderr
    # the steps got base_env only; as root the build user (nobody) cannot read this process's /proc/*/environ
    assert "PATH=" in log  # the dump ran
    if os.geteuid() == 0:
        assert find_in_files(out, [str(canary)]) == []
        assert str(canary) not in r.stdout + r.stderr


def test_a_sandboxed_build_sees_none_of_the_pipelines_environment(tmp_path):
    need("gcc-12", "bwrap")
    from assemblage.builds.runner import sandbox_available

    assert sandbox_available(), "bubblewrap cannot create namespaces on this machine"
    canary = Canary("env")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ASSEMBLAGE_")},
        "ASSEMBLAGE_TEST_ENV_CANARY": str(canary),
        "AWS_SECRET_ACCESS_KEY": str(canary),
    }
    r, out, marker = build(tmp_path, "sandboxed", env)
    status, reason, message, sandboxed = row(out)
    assert (status, sandboxed) == ("succeeded", 1), (r.stdout, r.stderr, message)
    assert not marker.exists()  # outside /build, the sandbox's file system is read-only or absent
    log = "".join(p.read_text(errors="replace") for p in out.rglob("build-*.log"))
    assert "PATH=/build/bin" in log and "sandbox: bubblewrap" in log
    assert json.loads(r.stdout)["unsandboxed"] == 0
    assert find_in_files(out, [str(canary)]) == []


def test_the_worker_image_runs_bubblewrap_with_the_compose_options():
    """The compose workers' settings make bubblewrap work in the worker image, and so do the three narrower
    `docker run` options the docs give; Docker's defaults do not (there, builds fail with sandbox_unavailable
    instead of running unsandboxed)."""
    import yaml

    from tests.conftest import REPO
    from tests.integration.docker_support import IMAGE, SANDBOX_FLAGS, docker, require_image

    require_image()
    worker = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["worker-linux"]
    assert worker.get("privileged") is True
    probe = ["python3", "-c", "from assemblage.builds.runner import sandbox_available; print(sandbox_available())"]
    for flags in (["--privileged"], SANDBOX_FLAGS):
        ran = docker("run", "--rm", *flags, IMAGE, *probe, timeout=300)
        assert ran.stdout.split()[-1:] == ["True"], (flags, ran.stdout + ran.stderr)
    default = docker("run", "--rm", IMAGE, *probe, timeout=300)
    assert default.stdout.split()[-1:] == ["False"], default.stdout + default.stderr
