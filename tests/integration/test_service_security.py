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

RECIPE = (
    "name: sec\nsources:\n  - path: recipes/samples/calc\nmatrix:\n  platform: [linux]\n  arch: [x86_64]\n"
    "  toolchain: [gcc-12]\n  opt: [O0]\n"
)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("sec")) as st:
        st.start_api()  # no workers: submitted runs just wait in the queue
        yield st


def test_every_endpoint_of_the_live_document_refuses_without_the_right_scope(api):
    """The live service's own OpenAPI document, route by route (the in-process version with data
    behind every id and every kind of token: tests/unit/test_api_auth.py)."""
    import re

    from assemblage.db.auth import SCOPES, scope_allows
    from tests.unit.test_api_auth import PUBLIC_OPERATIONS

    spec = httpx.get(f"{api.base_url}/openapi.json").json()
    ops = [
        (method, path, [s for req in op.get("security") or [] for s in req.get("HTTPBearer", [])])
        for path, item in spec["paths"].items()
        for method, op in item.items()
    ]
    assert any(m == "post" for m, _, _ in ops) and len(ops) >= 12
    tokens = {scope: api.token(scope) for scope in SCOPES}
    for method, path, scopes in ops:
        url = re.sub(r"\{\w+\}", "1", f"http://127.0.0.1:{api.api_port}{path}")
        if (method, path) in PUBLIC_OPERATIONS:
            assert not scopes and httpx.request(method, url).status_code == 200, (method, path)
            continue
        assert scopes, f"{method.upper()} {path} has no scope check"
        need = max(scopes, key=SCOPES.index)
        for headers in ({}, {"Authorization": "Bearer asm_not-a-real-token"}):
            r = httpx.request(method, url, content=RECIPE, headers={**headers, "Content-Type": "application/yaml"})
            assert r.status_code == 401, (method, path, headers, r.status_code, r.text)
        for have, token in tokens.items():
            if method != "get" and scope_allows(have, need):
                continue  # a write that is allowed would start work; the submit token posts a run below
            r = httpx.request(
                method,
                url,
                content=RECIPE,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/yaml"},
            )
            expected = {200, 404, 307} if scope_allows(have, need) else {403}  # no run/build/binary 1 here
            assert r.status_code in expected, (method, path, have, r.status_code, r.text)
    ok = httpx.post(
        f"{api.base_url}/runs",
        content=RECIPE,
        headers={"Authorization": f"Bearer {api.token('submit')}", "Content-Type": "application/yaml"},
    )
    assert ok.status_code == 201


def test_a_revoked_token_is_refused_at_once(api):
    from tests.integration.service_stack import assemblage_cmd

    token = api.token("submit")
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{api.base_url}/binaries", headers=headers).status_code == 200
    listed = subprocess.run(
        assemblage_cmd("token", "list"), env=api.env(), cwd=api.root, capture_output=True, text=True, check=True
    ).stdout
    row = next(line.split("\t") for line in listed.splitlines() if line.split("\t")[3] == token[:10] + "...")
    assert row[1] == "submit" and row[-1] == "live"
    out = subprocess.run(
        assemblage_cmd("token", "revoke", row[0]),
        env=api.env(),
        cwd=api.root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "revoked" in out
    for method, url in (("GET", f"{api.base_url}/binaries"), ("POST", f"{api.base_url}/runs")):
        r = httpx.request(method, url, content=RECIPE, headers={**headers, "Content-Type": "application/yaml"})
        assert r.status_code == 401, (method, r.status_code, r.text)
    listed = subprocess.run(
        assemblage_cmd("token", "list"), env=api.env(), cwd=api.root, capture_output=True, text=True, check=True
    ).stdout
    assert any(line.startswith(f"{row[0]}\t") and "revoked" in line for line in listed.splitlines())
    missing = subprocess.run(
        assemblage_cmd("token", "revoke", "999999"), env=api.env(), cwd=api.root, capture_output=True, text=True
    )
    assert missing.returncode == 2 and "no token with id 999999" in missing.stderr


def test_schemathesis_finds_no_server_errors(api, tmp_path):
    exe = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    if not Path(exe).exists():
        unavailable("schemathesis is not installed (a test dependency: pip install -e '.[test]')")
    token = api.token("admin")
    args = [
        exe,
        "run",
        f"{api.base_url}/openapi.json",
        "--url",
        f"http://127.0.0.1:{api.api_port}",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "12",
        "--seed",
        "1",
        "--header",
        f"Authorization: Bearer {token}",
        "--request-timeout",
        "10",
        "--no-color",
        "--phases",
        "examples,coverage,fuzzing",
    ]
    r = subprocess.run(args, capture_output=True, text=True, timeout=170, cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    assert "Server error" not in out
