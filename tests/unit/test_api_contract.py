"""The API's contract, in-process on SQLite (the live service: tests/integration/test_service_api.py).

- every route refuses a query parameter it does not declare (422, located), walked from the app's routes;
- /binaries and /builds filter by source (label or short name), build, kind, config, run;
- /runs lists runs by cursor; /runs/{id}/cancel stops what is left of a run;
- /binaries/{id}/functions carries hashes, and lines and inlines on request;
- every error is RFC 9457 problem details, and the OpenAPI document says so.
"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from assemblage.db import models as m
from assemblage.db.session import session_scope
from tests.unit.test_service_api import RECIPE, Env, seed

PROBLEM = "application/problem+json"


@pytest.fixture
def world(tmp_path) -> Env:
    env = Env(tmp_path)
    env.ids = seed(env, tmp_path, 6)
    with session_scope(env.sessions) as s:
        env.run_id = s.query(m.Run.id).scalar()
        env.build_ids = [b for (b,) in s.query(m.Build.id).order_by(m.Build.id)]
        env.function_id = s.query(m.Function.id).order_by(m.Function.id).first()[0]
    return env


def _problem(r, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].split(";")[0] == PROBLEM, r.headers
    body = r.json()
    assert {"type", "title", "status", "detail", "instance"} <= set(body), body
    assert body["status"] == status and body["type"] == "about:blank" and body["detail"]
    return body


# ------------------------------------------------------------------ unknown query parameters


def test_every_route_refuses_an_unknown_query_parameter(world):
    """Walked from the app's routes (API, pages, /metrics, /health): none silently ignores a parameter."""
    params = {
        "run_id": world.run_id,
        "build_id": world.build_ids[0],
        "binary_id": world.ids[0],
        "function_id": world.function_id,
        "export_id": 1,
    }
    from assemblage.api.ui.pages import router as pages

    doc = world.app.openapi()["paths"]
    routes = [(method.upper(), path) for path, item in doc.items() for method in item]
    routes += [(method, route.path) for route in pages.routes for method in route.methods - {"HEAD"}]
    routes.append(("GET", "/metrics"))
    seen = 0
    for method, path in routes:
        url = "http://testserver" + re.sub(r"\{(\w+)\}", lambda mt: str(params.get(mt.group(1), 1)), path)
        r = world.http.request(
            method, url, params={"toolchian": "gcc-12"}, headers=world.h("admin"), follow_redirects=False
        )
        body = _problem(r, 422)
        assert body["errors"][0]["location"] == "query.toolchian", (method, path, body)
        assert "unknown query parameter" in body["errors"][0]["message"]
        seen += 1
    assert seen >= 25


def test_declared_parameters_are_still_accepted(world):
    r = world.http.get("/binaries", params={"toolchain": "gcc-12", "limit": 2}, headers=world.h("read"))
    assert r.status_code == 200 and len(r.json()["items"]) == 2
    r = world.http.get("/functions", params={"name": "main", "limit": 1}, headers=world.h("read"))
    assert r.status_code == 200 and r.json()["items"][0]["name"] == "main"


def test_binaries_filters_users_expect(world):
    with session_scope(world.sessions) as s:
        src = s.query(m.Source).one()
        src.label, src.name = "recipes/samples/calc", "calc"
        for b in s.query(m.Binary):
            b.source = "recipes/samples/calc"
        s.query(m.Binary).filter(m.Binary.id == world.ids[1]).one().kind = "shared"
    read = world.h("read")
    get = lambda **p: world.http.get("/binaries", params={**p, "limit": 1000}, headers=read)  # noqa: E731
    assert len(get(source="calc").json()["items"]) == 6  # the short name
    assert len(get(source="recipes/samples/calc").json()["items"]) == 6  # as the recipe names it
    assert get(source="other").json()["items"] == []
    assert [b["id"] for b in get(kind="shared").json()["items"]] == [world.ids[1]]
    assert {b["build_id"] for b in get(build=world.build_ids[0]).json()["items"]} == {world.build_ids[0]}
    assert {b["config"] for b in get(config="linux-x86_64-gcc-12-O2").json()["items"]} == {"linux-x86_64-gcc-12-O2"}
    _problem(get(kind="dll,bogus"), 422)


def test_builds_list_and_filters(world):
    read = world.h("read")
    get = lambda **p: world.http.get("/builds", params=p, headers=read)  # noqa: E731
    page = get().json()
    assert [b["id"] for b in page["items"]] == world.build_ids and page["next"] is None
    first = get(limit=1).json()
    assert [b["id"] for b in first["items"]] == world.build_ids[:1] and first["next"]
    assert [b["id"] for b in get(limit=1, after=first["next"]).json()["items"]] == world.build_ids[1:2]
    assert [b["config"] for b in get(config="linux-x86_64-gcc-12-O2").json()["items"]] == ["linux-x86_64-gcc-12-O2"]
    assert len(get(source="x", run=world.run_id, status="succeeded").json()["items"]) == 2
    assert get(source="nope").json()["items"] == []
    assert get(run=world.run_id + 1).json()["items"] == []
    assert _problem(get(status="done"), 422)["errors"][0]["location"].startswith("query.status")


def test_a_run_lists_the_binaries_of_the_builds_it_reused(world):
    """A reused build points at the build that made the binaries: they are the run's too."""
    with session_scope(world.sessions) as s:
        old = s.get(m.Run, world.run_id)
        again = m.Run(recipe_id=old.recipe_id, status="finished")
        s.add(again)
        s.flush()
        src = s.query(m.Source).one()
        for bid in world.build_ids:
            b = s.get(m.Build, bid)
            s.add(
                m.Build(
                    run_id=again.id,
                    source_id=src.id,
                    configuration_id=b.configuration_id,
                    status="succeeded",
                    reused_from_id=bid,
                )
            )
        again_id = again.id
    read = world.h("read")
    items = world.http.get("/binaries", params={"run": again_id}, headers=read).json()["items"]
    assert sorted(b["id"] for b in items) == sorted(world.ids)
    assert world.http.get(f"/runs/{again_id}", headers=read).json()["binaries"] == 6
    with session_scope(world.sessions) as s:
        reused = s.query(m.Build.id).filter(m.Build.run_id == again_id).order_by(m.Build.id).first()[0]
    by_build = world.http.get("/binaries", params={"build": reused}, headers=read).json()["items"]
    assert {b["build_id"] for b in by_build} == {world.build_ids[0]} and len(by_build) == 3


# ------------------------------------------------------------------ runs


def test_runs_are_listed_by_cursor_and_filtered(world):
    submit, read = world.h("submit"), world.h("read")
    made = [
        world.http.post("/runs", content=RECIPE, headers={**submit, "Content-Type": "application/yaml"}).json()["id"]
        for _ in range(3)
    ]
    page = world.http.get("/runs", params={"limit": 2}, headers=read).json()
    assert [r["id"] for r in page["items"]] == [world.run_id, made[0]] and page["next"]
    rest = world.http.get("/runs", params={"limit": 2, "after": page["next"]}, headers=read).json()
    assert [r["id"] for r in rest["items"]] == made[1:] and rest["next"] is None
    assert page["items"][0]["binaries"] == 6 and page["items"][0]["builds"] == {"succeeded": 2}
    pending = world.http.get("/runs", params={"status": "pending"}, headers=read).json()["items"]
    assert [r["id"] for r in pending] == made
    named = world.http.get("/runs", params={"recipe": "api-test"}, headers=read).json()["items"]
    assert [r["id"] for r in named] == made
    _problem(world.http.get("/runs", params={"status": "done"}, headers=read), 422)


def test_cancel_marks_queued_and_running_builds_and_ends_the_run(world):
    from assemblage.pipeline.steps import Context, expand_run

    submit = world.h("submit")
    run_id = world.http.post("/runs", content=RECIPE, headers={**submit, "Content-Type": "application/yaml"}).json()[
        "id"
    ]
    expand_run(Context(sessions=world.sessions, store=world.store, cache_dir=world.settings.cache_dir), run_id)
    with session_scope(world.sessions) as s:
        first = s.query(m.Build).filter(m.Build.run_id == run_id).order_by(m.Build.id).first()
        first.status = "running"
    assert world.http.post(f"/runs/{run_id}/cancel", headers=world.h("read")).status_code == 403
    r = world.http.post(f"/runs/{run_id}/cancel", headers=submit)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "cancelled" and body["queued_cancelled"] == 1 and body["running_stopped"] == 1
    assert body["builds"] == {"skipped": 2} and body["finished_at"]
    cov = world.http.get(f"/runs/{run_id}/coverage", headers=world.h("read")).json()
    assert {(c["status"], c["reason"]) for c in cov["cells"]} == {("skipped", "cancelled")}
    again = world.http.post(f"/runs/{run_id}/cancel", headers=submit)  # idempotent
    assert again.status_code == 200 and again.json()["queued_cancelled"] == 0
    # the seeded run is no token's (a CLI run): a submit token may not cancel it, an admin token may try
    body = _problem(world.http.post(f"/runs/{world.run_id}/cancel", headers=submit), 403)
    assert "admin" in body["detail"]
    _problem(world.http.post(f"/runs/{world.run_id}/cancel", headers=world.h("admin")), 409)  # finished already
    _problem(world.http.post("/runs/999999/cancel", headers=submit), 404)


def test_a_submit_token_cancels_its_own_runs_and_an_admin_token_anyones(world):
    from assemblage.db.auth import create_token

    with session_scope(world.sessions) as s:
        other = create_token(s, scope="submit", secret=world.settings.secret_key.get_secret_value())
    mine = world.http.post("/runs", content=RECIPE, headers={**world.h("submit"), "Content-Type": "application/yaml"})
    run_id = mine.json()["id"]
    body = _problem(world.http.post(f"/runs/{run_id}/cancel", headers={"Authorization": f"Bearer {other}"}), 403)
    assert "submitted by another token" in body["detail"]
    with session_scope(world.sessions) as s:
        assert s.get(m.Run, run_id).status == "pending"  # the refused cancel changed nothing
    r = world.http.post(f"/runs/{run_id}/cancel", headers=world.h("admin"))
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text


def test_admin_tokens_manage_tokens_over_the_api(world):
    admin = world.h("admin")
    for scope in ("read", "submit"):  # token management is the admin scope's alone
        _problem(world.http.get("/tokens", headers=world.h(scope)), 403)
        _problem(world.http.post("/tokens", json={"scope": "read"}, headers=world.h(scope)), 403)
    r = world.http.post("/tokens", json={"scope": "submit", "name": "ci"}, headers=admin)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["scope"] == "submit" and made["name"] == "ci" and made["token"].startswith(made["hint"])
    new = {"Authorization": f"Bearer {made['token']}"}
    assert world.http.get("/runs", headers=new).status_code == 200  # the new token works at once
    listed = world.http.get("/tokens", headers=admin).json()
    row = next(t for t in listed if t["id"] == made["id"])
    assert "token" not in row and row["revoked_at"] is None and row["last_used_at"] is not None
    assert all("token" not in t and "token_hash" not in t for t in listed)  # no secret is ever listed
    _problem(world.http.post("/tokens", json={"scope": "god"}, headers=admin), 422)
    _problem(world.http.post("/tokens", json={"scope": "read", "extra": 1}, headers=admin), 422)
    gone = world.http.delete(f"/tokens/{made['id']}", headers=admin)
    assert gone.status_code == 200 and gone.json()["revoked_at"]
    _problem(world.http.get("/runs", headers=new), 401)  # revoked: refused from now on
    _problem(world.http.delete("/tokens/999999", headers=admin), 404)


def test_a_run_cancelled_before_it_started_adds_no_builds(world):
    from assemblage.pipeline.steps import Context, expand_run

    submit = world.h("submit")
    run_id = world.http.post("/runs", content=RECIPE, headers={**submit, "Content-Type": "application/yaml"}).json()[
        "id"
    ]
    assert world.http.post(f"/runs/{run_id}/cancel", headers=submit).json()["status"] == "cancelled"
    assert (
        expand_run(Context(sessions=world.sessions, store=world.store, cache_dir=world.settings.cache_dir), run_id)
        is False
    )  # the start task, delivered late, adds nothing
    assert world.http.get(f"/runs/{run_id}", headers=world.h("read")).json()["total"] == 0


# ------------------------------------------------------------------ functions


def test_functions_carry_hashes_and_lines_and_inlines_on_request(world):
    b = world.ids[0]
    with session_scope(world.sessions) as s:
        f = s.query(m.Function).filter(m.Function.binary_id == b, m.Function.name == "main").one()
        f.hash, f.pic_hash, fid = "a" * 64, "b" * 64, f.id
        s.add_all(
            [
                m.Line(function_id=fid, line_number=7, rva=f.start + 4, length=4, source_file="m.c"),
                m.Line(function_id=fid, line_number=5, rva=f.start, length=4, source_file="m.c"),
            ]
        )
        s.add(
            m.Inline(
                binary_id=b,
                callee="square",
                caller="main",
                start=f.start + 8,
                end=f.start + 12,
                call_file="m.c",
                call_line=7,
            )
        )
        s.add(m.Inline(binary_id=b, callee="elsewhere", caller="main", start=f.end + 100, end=f.end + 104))
    read = world.h("read")
    plain = world.http.get(f"/binaries/{b}/functions", headers=read).json()["items"]
    main = next(x for x in plain if x["id"] == fid)
    assert (main["hash"], main["pic_hash"]) == ("a" * 64, "b" * 64)
    assert main["lines"] is None and main["inlines"] is None
    full = world.http.get(f"/binaries/{b}/functions", params={"include": "lines,inlines"}, headers=read).json()
    main = next(x for x in full["items"] if x["id"] == fid)
    assert [ln["line_number"] for ln in main["lines"]] == [5, 7]  # by address
    assert [i["callee"] for i in main["inlines"]] == ["square"]  # the copy outside main's range is not main's
    other = next(x for x in full["items"] if x["id"] != fid)
    assert other["lines"] == [] and other["inlines"] == []
    repeated = world.http.get(
        "/functions", params=[("binary", b), ("include", "lines"), ("include", "inlines")], headers=read
    ).json()["items"]
    assert next(x for x in repeated if x["id"] == fid)["inlines"][0]["call_line"] == 7
    bad = _problem(world.http.get(f"/binaries/{b}/functions", params={"include": "lines,bytes"}, headers=read), 422)
    assert bad["errors"] == [{"location": "query.include", "message": bad["errors"][0]["message"]}]
    assert "bytes" in bad["errors"][0]["message"]


# ------------------------------------------------------------------ errors


def test_every_kind_of_error_is_a_problem(world, tmp_path):
    read = world.h("read")
    body = _problem(world.http.get("/runs/999999", headers=read), 404)
    assert body == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "no run 999999",
        "instance": "/api/v1/runs/999999",
    }
    body = _problem(world.http.get("/runs/0", headers=read), 422)
    assert body["errors"][0]["location"] == "path.run_id"
    assert _problem(world.http.get("/runs/1"), 401)["detail"] == "a bearer token is required"
    assert world.http.get("/runs/1").headers["www-authenticate"] == "Bearer"
    assert "scope submit" in _problem(world.http.post("/runs", content=RECIPE, headers=read), 403)["detail"]
    _problem(world.http.get("/no-such-route", headers=read), 404)
    _problem(world.http.delete("/runs", headers=read), 405)
    bad = world.http.post(
        "/runs",
        content=RECIPE.replace("gcc-12", "gcc-99"),
        headers={**world.h("submit"), "Content-Type": "application/yaml"},
    )
    body = _problem(bad, 422)
    assert body["errors"][0]["location"].startswith("matrix.toolchain") and "gcc-99" in body["detail"]
    _problem(world.http.get("/binaries", params={"after": "!!"}, headers=read), 422)

    class Broken:
        def authenticate(self, secret):
            raise RuntimeError("a bug")

    world.app.state.auth = Broken()
    crashing = TestClient(world.app, base_url="http://testserver/api/v1", raise_server_exceptions=False)
    body = _problem(crashing.get("/runs/1", headers=read), 500)
    assert "a bug" not in body["detail"]


def test_the_openapi_document_states_the_problem_shape(world):
    doc = world.http.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert {"type", "title", "status", "detail", "instance", "errors"} <= set(schemas["Problem"]["properties"])
    assert "HTTPValidationError" not in schemas
    ref = {"$ref": "#/components/schemas/Problem"}
    ops = 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op["responses"]["default"]["content"] == {PROBLEM: {"schema": ref}}, (method, path)
            for code, resp in op["responses"].items():
                if code[0] in "45":
                    assert resp.get("content") == {PROBLEM: {"schema": ref}}, (method, path, code)
            ops += 1
    assert ops >= 15
    assert "422" in doc["paths"]["/api/v1/binaries"]["get"]["responses"]
    assert "409" in doc["paths"]["/api/v1/runs/{run_id}/cancel"]["post"]["responses"]


# ------------------------------------------------------------------ docs


def test_docs_work_offline(world):
    """/docs names no other host: Swagger UI's files are served by the app itself."""
    page = world.http.get("http://testserver/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    assert not re.search(r"(?:src|href)=[\"']?(?:https?:)?//", page.text), page.text
    assert not re.search(r"https?://", page.text), page.text  # nor in the script (no validator, no CDN)
    assets = re.findall(r"(?:src|href)=\"([^\"]+)\"", page.text)
    assert {a.rsplit("/", 1)[-1] for a in assets} >= {"swagger-ui-bundle.js", "swagger-ui.css"}
    for asset in assets:
        r = world.http.get("http://testserver" + asset)
        assert r.status_code == 200 and len(r.content) > 500, asset
    assert "url: '/api/v1/openapi.json'" in page.text
    assert world.http.get("http://testserver/docs/oauth2-redirect").status_code == 200
    assert world.http.get("http://testserver/api/v1/openapi.json").json()["openapi"].startswith("3.1")
