"""Issue 8, item 12: ``api_tokens.last_used_at`` is written when a token is used, cheaply.

Against the real API on PostgreSQL: the column is written by the first request of a
token, not again by the requests that follow within a minute (a write per request
would put a row lock on every read of the API), and again once a minute has passed.
A forged or revoked token writes nothing.
"""

from __future__ import annotations

import subprocess

import httpx
import pytest

from tests.integration.service_stack import Stack, assemblage_cmd
from tests.security.support import query

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("services")]


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("tokens")) as st:
        st.start_api()
        yield st


def last_used(api, token: str):
    [(value,)] = query(api, "SELECT last_used_at FROM api_tokens WHERE hint = :h", h=token[:10])
    return value


def test_last_used_at_is_written_at_most_once_a_minute(api):
    token = api.token("read")
    assert last_used(api, token) is None
    client = api.client(token)
    assert client.get("/binaries").status_code == 200
    first = last_used(api, token)
    assert first is not None
    for _ in range(20):
        assert client.get("/binaries").status_code == 200
    assert last_used(api, token) == first  # twenty more requests, no write
    query_update = "UPDATE api_tokens SET last_used_at = last_used_at - interval '2 minutes' WHERE hint = :h"
    from sqlalchemy import create_engine, text

    engine = create_engine(api.database_url)
    with engine.begin() as c:
        c.execute(text(query_update), {"h": token[:10]})
    engine.dispose()
    aged = last_used(api, token)
    assert client.get("/binaries").status_code == 200
    assert last_used(api, token) > aged  # a minute later, written again
    listed = subprocess.run(
        assemblage_cmd("token", "list"), env=api.env(), cwd=api.root, capture_output=True, text=True, check=True
    ).stdout
    row = next(line.split("\t") for line in listed.splitlines() if line.split("\t")[3] == token[:10] + "...")
    assert row[5] != "-"  # `assemblage token list` shows the last use


def test_a_token_that_is_refused_writes_nothing(api):
    token = api.token("submit")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert httpx.get(f"{api.base_url}/binaries", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    assert last_used(api, token) is None
    [(token_id,)] = query(api, "SELECT id FROM api_tokens WHERE hint = :h", h=token[:10])
    subprocess.run(
        assemblage_cmd("token", "revoke", str(token_id)), env=api.env(), cwd=api.root, check=True, capture_output=True
    )
    assert httpx.get(f"{api.base_url}/binaries", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert last_used(api, token) is None
    # a recognised token used beyond its scope was still used (and that is worth knowing)
    reader = api.token("read")
    r = httpx.post(
        f"{api.base_url}/runs",
        content="name: x",
        headers={"Authorization": f"Bearer {reader}", "Content-Type": "application/yaml"},
    )
    assert r.status_code == 403 and last_used(api, reader) is not None
