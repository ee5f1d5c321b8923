"""Security of the live API: write endpoints refuse missing and weak tokens; a schemathesis run
against the OpenAPI schema (bounded examples) finds no 5xx."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import unavailable
from tests.integration.service_stack import Stack

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("services"),
]

RECIPE = "name: sec\nsources:\n  - path: recipes/samples/calc\nmatrix:\n  platform: [linux]\n  arch: [x86_64]\n" \
         "  toolchain: [gcc-12]\n  opt: [O0]\n"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("sec")) as st:
        st.start_api()  # no workers: submitted runs just wait in the queue
        yield st


def test_every_write_endpoint_refuses_without_the_right_scope(api):
    spec = httpx.get(f"{api.base_url}/openapi.json").json()
    writes = [(method, path) for path, item in spec["paths"].items() for method in item
              if method in ("post", "put", "patch", "delete")]
    assert writes, "the API has write endpoints"
    read = api.token("read")
    for method, path in writes:
        url = f"http://127.0.0.1:{api.api_port}{path}".replace("{run_id}", "1")
        for headers, code in (({}, 401), ({"Authorization": f"Bearer {read}"}, 403),
                              ({"Authorization": "Bearer asm_not-a-real-token"}, 401)):
            r = httpx.request(method, url, content=RECIPE, headers={**headers, "Content-Type": "application/yaml"})
            assert r.status_code == code, (method, path, headers, r.status_code, r.text)
    ok = httpx.post(f"{api.base_url}/runs", content=RECIPE,
                    headers={"Authorization": f"Bearer {api.token('submit')}", "Content-Type": "application/yaml"})
    assert ok.status_code == 201


def test_a_revoked_token_is_refused_at_once(api):
    from tests.integration.service_stack import assemblage_cmd

    token = api.token("submit")
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{api.base_url}/binaries", headers=headers).status_code == 200
    listed = subprocess.run(assemblage_cmd("token", "list"), env=api.env(), cwd=api.root, capture_output=True,
                            text=True, check=True).stdout
    row = next(line.split("\t") for line in listed.splitlines() if line.split("\t")[3] == token[:10] + "...")
    assert row[1] == "submit" and row[-1] == "live"
    out = subprocess.run(assemblage_cmd("token", "revoke", row[0]), env=api.env(), cwd=api.root,
                         capture_output=True, text=True, check=True).stdout
    assert "revoked" in out
    for method, url in (("GET", f"{api.base_url}/binaries"), ("POST", f"{api.base_url}/runs")):
        r = httpx.request(method, url, content=RECIPE, headers={**headers, "Content-Type": "application/yaml"})
        assert r.status_code == 401, (method, r.status_code, r.text)
    listed = subprocess.run(assemblage_cmd("token", "list"), env=api.env(), cwd=api.root, capture_output=True,
                            text=True, check=True).stdout
    assert any(line.startswith(f"{row[0]}\t") and "revoked" in line for line in listed.splitlines())
    missing = subprocess.run(assemblage_cmd("token", "revoke", "999999"), env=api.env(), cwd=api.root,
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "no token with id 999999" in missing.stderr


def test_schemathesis_finds_no_server_errors(api, tmp_path):
    exe = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    if not Path(exe).exists():
        unavailable("schemathesis is not installed (a test dependency: pip install -e '.[test]')")
    token = api.token("admin")
    args = [exe, "run", f"{api.base_url}/openapi.json", "--url", f"http://127.0.0.1:{api.api_port}",
            "--checks", "not_a_server_error", "--max-examples", "12", "--seed", "1",
            "--header", f"Authorization: Bearer {token}", "--request-timeout", "10", "--no-color",
            "--phases", "examples,coverage,fuzzing"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=170, cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    assert "Server error" not in out
