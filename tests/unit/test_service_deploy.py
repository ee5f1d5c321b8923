"""docker-compose.yml and the worker image: valid, complete, with health checks and volumes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.conftest import unavailable

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"


def load() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_has_the_services_with_health_checks():
    services = load()["services"]
    assert {"postgres", "redis", "minio", "api", "worker-linux"} <= set(services)
    for name in ("postgres", "redis", "minio", "api", "worker-linux"):
        assert "healthcheck" in services[name], name
        assert services[name]["healthcheck"]["test"], name


def test_compose_volumes_are_declared():
    doc = load()
    declared = set(doc["volumes"])
    used = {v.split(":")[0] for s in doc["services"].values() for v in s.get("volumes", []) if not v.startswith(".")}
    assert used and used <= declared
    assert {"pgdata", "miniodata"} <= used


def test_compose_environment_names_every_setting():
    services = load()["services"]
    for name in ("api", "worker-linux", "migrate"):
        env = services[name]["environment"]
        for var in (
            "ASSEMBLAGE_DATABASE_URL",
            "ASSEMBLAGE_BROKER_URL",
            "ASSEMBLAGE_STORAGE_URL",
            "ASSEMBLAGE_S3_ENDPOINT_URL",
            "ASSEMBLAGE_SECRET_KEY",
        ):
            assert var in env, (name, var)
        assert env["ASSEMBLAGE_ENVIRONMENT"] == "production"
        assert "?" in env["ASSEMBLAGE_SECRET_KEY"]  # compose refuses to start without a real secret
    assert "-Q" in services["worker-linux"]["command"] and "crawl,linux" in services["worker-linux"]["command"]
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_compose_config_is_valid_for_docker_compose():
    """``docker compose config`` (the v2 plugin) or Debian's ``docker-compose`` (v1) must accept the file."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        argv = [docker, "compose"]
    elif shutil.which("docker-compose"):
        argv = [shutil.which("docker-compose")]
    else:
        unavailable("neither docker compose nor docker-compose is installed (apt-get install docker-compose)")
    r = subprocess.run(
        [*argv, "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        env={"ASSEMBLAGE_SECRET_KEY": "x" * 32, "PATH": "/usr/bin:/bin:/usr/local/bin"},
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [*argv, "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin"},
    )
    assert r.returncode != 0, "compose must refuse to start without ASSEMBLAGE_SECRET_KEY"


def test_worker_image_dockerfile():
    text = (REPO / "workers" / "linux" / "Dockerfile").read_text()
    assert "ARG BASE=debian:bookworm-slim" in text and "FROM ${BASE}" in text
    assert "USER assemblage" in text and "HEALTHCHECK" in text
    assert "COPY assemblage ./assemblage" in text  # the migrations are part of the package


def test_upstream_images_are_pinned_and_flower_is_there():
    services = load()["services"]
    for name in ("postgres", "redis", "minio"):
        image = services[name]["image"]
        repo, _, tag = image.partition(":")
        assert tag and tag != "latest" and any(ch.isdigit() for ch in tag), image
    flower = services["flower"]
    assert flower["command"][:4] == ["celery", "-A", "assemblage.tasks.jobs", "flower"]
    assert all(p.startswith("127.0.0.1:") for p in flower["ports"])  # Flower can stop workers: host only
    assert flower["healthcheck"]["test"]


def test_local_override_builds_the_services_from_the_debian_base():
    doc = yaml.safe_load((REPO / "docker-compose.local.yml").read_text())["services"]
    for name, dockerfile in (("postgres", "postgres"), ("redis", "redis"), ("minio", "s3")):
        build = doc[name]["build"]
        path = REPO / build["dockerfile"]
        assert build["dockerfile"] == f"deploy/local/{dockerfile}.Dockerfile" and path.is_file()
        text = path.read_text()
        assert "ARG BASE=assemblage-base:bookworm" in text and "FROM ${BASE}" in text and "HEALTHCHECK" in text
    for name in ("api", "worker-linux", "migrate", "flower"):
        assert doc[name]["build"]["args"]["BASE"] == "assemblage-base:bookworm"
        assert doc[name]["environment"]["AWS_ACCESS_KEY_ID"] == "test:tester"


def test_compose_workers_can_run_bubblewrap():
    """Issue 8, item 2: the options bubblewrap needs in a container (checked for real in
    tests/security/test_sandbox.py::test_the_worker_image_runs_bubblewrap_with_the_compose_options)."""
    doc = yaml.safe_load(COMPOSE.read_text())["services"]
    for name in ("worker-linux", "worker-windows-cross"):
        # Compose cannot pass systempaths=unconfined (the daemon refuses it; only the docker CLI translates it)
        assert doc[name]["privileged"] is True and "security_opt" not in doc[name]
        assert "ASSEMBLAGE_ALLOW_UNSANDBOXED" not in doc[name]["environment"]
