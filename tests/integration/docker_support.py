"""What the Docker tests share: the image under test, a `docker` CLI call, and the fixture that ensures both.

``make test`` starts the daemon and builds the image (scripts/docker.sh); a test that finds
no daemon fails rather than skips, unless ASSEMBLAGE_SKIP_DOCKER=1 says this machine cannot
run Docker (a skip on a developer's machine; in CI every skip is a failure, see tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import REPO

IMAGE = os.environ.get("ASSEMBLAGE_IMAGE", "assemblage-linux:latest")
# `docker run` flags under which bubblewrap works in a container (docs/service.md, Security)
SANDBOX_FLAGS = [
    f for o in ("seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined") for f in ("--security-opt", o)
]

skip_without_docker = pytest.mark.skipif(
    os.environ.get("ASSEMBLAGE_SKIP_DOCKER") == "1", reason="ASSEMBLAGE_SKIP_DOCKER=1"
)


def docker(*args: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


def require_image() -> str:
    """The daemon answers and the image exists (built by scripts/docker.sh when missing)."""
    if shutil.which("docker") is None or docker("info").returncode != 0:
        pytest.fail("the Docker daemon does not answer: run scripts/docker.sh start (make test does)")
    if docker("image", "inspect", IMAGE).returncode != 0:
        subprocess.run([str(REPO / "scripts" / "docker.sh"), "image"], check=True, timeout=1800)
    return IMAGE
