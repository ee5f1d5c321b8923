"""docker-compose brought up for real: docker-compose.yml with docker-compose.local.yml (PostgreSQL, Redis and an
S3 server built from Debian's packages, since no registry is reachable here), then a recipe submitted over HTTP,
built by the compose worker, and a binary downloaded through its presigned URL; /metrics and Flower answer."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import time
import uuid

import httpx
import pytest

from tests.conftest import REPO
from tests.integration.docker_support import docker, require_image, skip_without_docker
from tests.integration.service_stack import free_port

pytestmark = [pytest.mark.integration, skip_without_docker]

LOCAL_IMAGES = ("assemblage-local/postgres:15", "assemblage-local/redis:7", "assemblage-local/s3:swift")
RECIPE = """\
name: compose-e2e
sources:
  - path: recipes/samples/calc
matrix:
  platform: [linux]
  arch: [x86_64]
  toolchain: [gcc-12]
  opt: [O2]
"""


def compose_command() -> list[str]:
    """The v2 plugin (`docker compose`) when it runs, else Debian's docker-compose (v1), which is what this
    machine has: scripts/bootstrap.sh installs it."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither `docker compose` nor docker-compose is installed (scripts/bootstrap.sh apt test)")


class Compose:
    def __init__(self, image: str) -> None:
        self.project = f"asmtest{uuid.uuid4().hex[:8]}"
        self.api_port, self.s3_port, self.flower_port = free_port(), free_port(), free_port()
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "ASSEMBLAGE_SECRET_KEY": secrets.token_urlsafe(32),
            "ASSEMBLAGE_IMAGE": image,
            "ASSEMBLAGE_API_PORT": str(self.api_port),
            "MINIO_PORT": str(self.s3_port),
            "FLOWER_PORT": str(self.flower_port),
            "COMPOSE_HTTP_TIMEOUT": "300",
        }
        self.argv = [
            *compose_command(),
            "-p",
            self.project,
            "-f",
            str(REPO / "docker-compose.yml"),
            "-f",
            str(REPO / "docker-compose.local.yml"),
        ]

    def __call__(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([*self.argv, *args], env=self.env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(args)}: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        return r

    def logs(self) -> str:
        r = self("logs", "--no-color", "--tail", "60", check=False, timeout=120)
        return r.stdout[-12000:]


@pytest.fixture(scope="module")
def stack():
    image = require_image()
    if any(docker("image", "inspect", i).returncode != 0 for i in LOCAL_IMAGES):
        subprocess.run([str(REPO / "scripts" / "docker.sh"), "compose-images"], check=True, timeout=1800)
    c = Compose(image)
    try:
        c("up", "-d", "--no-build", "--scale", "worker-windows-cross=0")
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{c.api_port}/api/v1/health", timeout=3).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the compose API did not become healthy:\n{c.logs()}")
            time.sleep(2)
        yield c
    finally:
        c("down", "-v", "--remove-orphans", "-t", "20", check=False)


def token(c: Compose, scope: str) -> str:
    return c("exec", "-T", "api", "assemblage", "token", "create", "--scope", scope).stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def finished_run(stack):
    headers = {"Authorization": f"Bearer {token(stack, 'submit')}"}
    api = httpx.Client(base_url=f"http://127.0.0.1:{stack.api_port}/api/v1", headers=headers, timeout=30)
    r = api.post("/runs", content=RECIPE, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    deadline = time.monotonic() + 300
    while (body := api.get(f"/runs/{run_id}").json())["status"] != "finished":
        assert time.monotonic() < deadline, f"{body}\n{stack.logs()}"
        time.sleep(2)
    return api, run_id, body


def test_compose_stack_builds_a_recipe_and_serves_the_binary(stack, finished_run):
    api, run_id, body = finished_run
    assert body["builds"] == {"succeeded": 1}, f"{body}\n{stack.logs()}"
    [binary] = api.get("/binaries", params={"run": run_id}).json()["items"]
    assert binary["config"] == "linux-x86_64-gcc-12-O2"

    r = api.get(f"/binaries/{binary['id']}/download", follow_redirects=False)
    assert r.status_code == 307, r.text
    url = r.headers["location"]
    assert url.startswith("http://minio:9000/")  # ASSEMBLAGE_S3_ENDPOINT_URL of the compose file
    # from this host the S3 server is the published port; the signature covers the Host header, so send it
    data = httpx.get(
        url.replace("http://minio:9000", f"http://127.0.0.1:{stack.s3_port}"),
        headers={"Host": "minio:9000"},
        timeout=30,
    )
    assert data.status_code == 200, data.text
    assert hashlib.sha256(data.content).hexdigest() == binary["hash"]
    assert data.content[:4] == b"\x7fELF"
    tampered = httpx.get(
        url.replace("http://minio:9000", f"http://127.0.0.1:{stack.s3_port}").replace(
            "X-Amz-Signature=", "X-Amz-Signature=0"
        ),
        headers={"Host": "minio:9000"},
        timeout=30,
    )
    assert tampered.status_code == 403

    metrics = httpx.get(f"http://127.0.0.1:{stack.api_port}/metrics", timeout=10).text
    assert "assemblage_binaries_stored 1.0" in metrics
    assert 'assemblage_builds_finished_total{reason="",status="succeeded"} 1.0' in metrics


def test_flower_sees_the_build_tasks(stack, finished_run):
    deadline = time.monotonic() + 60
    names: set = set()
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"http://127.0.0.1:{stack.flower_port}/api/tasks", timeout=10)
            if r.status_code == 200:
                names = {t.get("name") for t in r.json().values()}
                if "assemblage.build" in names:
                    return
        except httpx.HTTPError:
            pass
        time.sleep(2)
    raise AssertionError(f"Flower saw no build task (task events): {names}\n{stack.logs()}")
