"""A Linux worker in the real image of workers/linux/Dockerfile, run by the Docker daemon.

The API runs here; the only worker is a container (``assemblage-linux:latest``, built by
``scripts/docker.sh image``) on the host network, pointed at this machine's PostgreSQL,
Redis and S3 the way a worker on another machine is pointed at them. It expands the run,
fetches the sources from its own copy of the repository (its ASSEMBLAGE_SOURCE_ROOT,
not the API's folder), compiles with the image's compilers and stores into S3.

``make test`` starts the daemon and builds the image; set ASSEMBLAGE_SKIP_DOCKER=1 to
skip these tests on a machine that cannot run Docker.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
import uuid

import httpx
import pytest

from tests.integration.docker_support import SANDBOX_FLAGS, docker, require_image, skip_without_docker
from tests.integration.service_stack import S3_KEYS, Stack

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("services"),
    skip_without_docker,
]

RECIPE = """\
name: docker-worker
sources:
  - path: recipes/samples/calc
  - path: recipes/samples/shapes
matrix:
  platform: [linux]
  arch: [x86_64]
  toolchain: [gcc-12, clang-19]
  opt: [O0, O2]
"""


@pytest.fixture(scope="module")
def image() -> str:
    return require_image()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, image):
    with Stack(tmp_path_factory.mktemp("docker")) as st:
        st.start_api()
        name = f"asm-test-worker-{uuid.uuid4().hex[:8]}"
        env = {k: v for k, v in st.env().items() if k.startswith("ASSEMBLAGE_") or k in S3_KEYS}
        # the container has its own copy of the repository and its own cache
        env.pop("ASSEMBLAGE_SOURCE_ROOT")
        env.pop("ASSEMBLAGE_CACHE_DIR", None)
        env_args = [a for k, v in sorted(env.items()) for a in ("-e", f"{k}={v}")]
        # without the flags bubblewrap needs, the worker's builds fail as sandbox_unavailable, as they must
        docker(
            "run",
            "-d",
            "--rm",
            "--name",
            name,
            "--network",
            "host",
            "--memory",
            "4g",
            *SANDBOX_FLAGS,
            *env_args,
            image,
            "assemblage",
            "worker",
            "-Q",
            "crawl,linux",
            "-c",
            "2",
            "-n",
            "docker@%h",
            check=True,
        )
        try:
            deadline = time.monotonic() + 90
            while not st._heartbeat_seen("docker"):
                running = docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip()
                if running != "true" or time.monotonic() > deadline:
                    logs = docker("logs", name)
                    raise AssertionError(
                        f"the container worker did not start:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}"
                    )
                time.sleep(0.5)
            st.container = name  # type: ignore[attr-defined]
            yield st
        finally:
            docker("rm", "-f", name)


@pytest.fixture(scope="module")
def finished_run(stack):
    submit = stack.client(stack.token("submit"))
    r = submit.post("/runs", content=RECIPE, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    reader = stack.client(stack.token("read"))
    return stack.wait_run(reader, r.json()["id"], timeout=400), reader


def test_the_container_built_every_configuration(stack, finished_run):
    run, client = finished_run
    assert run["builds"] == {"succeeded": 8}, client.get(f"/runs/{run['id']}/coverage").text
    cov = client.get(f"/runs/{run['id']}/coverage").json()
    for cell in cov["cells"]:
        build = client.get(f"/builds/{cell['build_id']}").json()
        assert build["worker"].startswith("docker@"), build
        assert cell["binaries"] == {"calc": 1, "shapes": 2}[cell["source"]], cell  # calc; shapes and libgeometry.so


def test_labels_from_the_container_match_the_configuration(finished_run):
    run, client = finished_run
    items = client.get("/binaries", params={"run": run["id"], "limit": 100}).json()["items"]
    assert {b["config"] for b in items} == {
        f"linux-x86_64-{tc}-{o}" for tc in ("gcc-12", "clang-19") for o in ("O0", "O2")
    }
    with_main = set()
    for b in items:
        detail = client.get(f"/binaries/{b['id']}").json()
        assert detail["opt_observed"] == b["optimization"], detail
        funcs = client.get(f"/binaries/{b['id']}/functions", params={"limit": 1000}).json()["items"]
        assert funcs, b
        if client.get("/functions", params={"name": "main", "binary": b["id"]}).json()["items"]:
            with_main.add((b["config"], b["file_name"]))
    # calc and shapes' program, in every configuration
    assert len(with_main) == 8, with_main


def test_a_binary_built_in_the_container_downloads_intact(finished_run):
    run, client = finished_run
    b = client.get("/binaries", params={"run": run["id"], "toolchain": "clang-19", "opt": "O2"}).json()["items"][0]
    r = client.get(f"/binaries/{b['id']}/download", follow_redirects=False)
    assert r.status_code == 307
    data = httpx.get(r.headers["location"], timeout=30).content
    assert hashlib.sha256(data).hexdigest() == b["hash"] and data[:4] == b"\x7fELF"


def test_the_build_log_says_which_compiler_ran(finished_run):
    run, client = finished_run
    cov = client.get(f"/runs/{run['id']}/coverage").json()
    cell = next(c for c in cov["cells"] if c["config"].endswith("clang-19-O0"))
    log = client.get(f"/builds/{cell['build_id']}/log").text
    assert "clang-19" in log and "# exit 0" in log


def test_the_compose_health_check_command_answers_in_the_container(stack):
    """docker-compose.yml's worker health check (celery inspect ping of the node) works in the image."""
    r = subprocess.run(
        [
            "docker",
            "exec",
            stack.container,
            "sh",
            "-c",
            "celery -A assemblage.tasks.jobs inspect ping -d docker@$(hostname) --timeout 10",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "pong" in r.stdout, (r.stdout, r.stderr)
