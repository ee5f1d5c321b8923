"""Every route of the API, from its generated OpenAPI document, without a token, with forged
and revoked ones, and with each scope (in-process app on SQLite; the live service:
tests/integration/test_service_security.py).

The scope a route needs is read from the document, where FastAPI writes it from the
route's own dependencies (``require_scope`` declares ``Security(..., scopes=[need])``):
a route that forgets its scope check has no ``security`` entry and fails here unless it
is one of the public routes listed below. Every route is then called for real, so a
document that claims a scope the route does not enforce fails too. Routes added later are
covered without touching this file.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest

from assemblage.db import models as m
from assemblage.db.auth import SCOPES, create_token, find_token, scope_allows
from assemblage.db.session import session_scope
from tests.unit.test_service_api import RECIPE, SECRET, Env, seed

# The only routes anyone may call without a token: liveness, Prometheus (outside /api/v1 and its
# document), and the API's own docs.
PUBLIC_OPERATIONS = {("get", "/api/v1/health"), ("get", "/metrics")}
METRICS = "/metrics"
DOCS_PATHS = {"/docs", "/docs/oauth2-redirect", "/api/v1/openapi.json"}
DOCS_ASSETS = "/docs/assets"  # Swagger UI's files (assemblage/api/docs.py)
# The web pages (assemblage/api/ui, not part of the API's document): static files and the login form are
# public; every other page needs the session cookie (tests/unit/test_ui_security.py covers login and CSRF).
UI_STATIC = "/ui/static"
UI_PUBLIC = {("GET", "/ui/login"), ("POST", "/ui/login"), ("POST", "/ui/logout")}
# The least a route may ask for (docs/service.md, Security: reads need scope read; writes need submit or admin).
FLOOR = {"get": "read", "head": "read", "post": "submit", "put": "submit", "patch": "submit", "delete": "submit"}


def operations(app) -> list[tuple[str, str, str | None]]:
    """(method, path, required scope or None) of every operation in the app's OpenAPI document."""
    out = []
    for path, item in app.openapi()["paths"].items():
        for method, op in item.items():
            if method not in FLOOR:
                continue
            scopes = {s for req in op.get("security") or [] for s in req.get("HTTPBearer", [])}
            unknown = scopes - set(SCOPES)
            assert not unknown, (method, path, unknown)
            out.append((method, path, max(scopes, key=SCOPES.index) if scopes else None))
    return out


@pytest.fixture
def world(tmp_path):
    """The app with data behind every id, and a token of every kind."""
    env = Env(tmp_path)
    ids = seed(env, tmp_path, 3)
    with session_scope(env.sessions) as s:
        run_id = s.query(m.Run.id).scalar()
        build_id = s.query(m.Build.id).order_by(m.Build.id).first()[0]  # the one with a log
        revoked = create_token(s, scope="admin", secret=SECRET)
        s.flush()
        from assemblage.db.auth import ApiToken

        for t in s.query(ApiToken).filter(ApiToken.hint == revoked[:10]):
            t.revoked_at = m.utcnow()
            revoked_id = t.id
        other_key = create_token(s, scope="admin", secret="a-different-secret-key-0123456789")
    # DELETE /tokens/{token_id} revokes the token that is revoked already (the others must keep working)
    env.params = {"run_id": run_id, "build_id": build_id, "binary_id": ids[0], "token_id": revoked_id}
    env.bad_tokens = {
        "no token": {},
        "forged token": {"Authorization": "Bearer asm_" + "A" * 43},
        "token of another secret key": {"Authorization": f"Bearer {other_key}"},
        "revoked admin token": {"Authorization": f"Bearer {revoked}"},
        "not a bearer token": {"Authorization": "Basic dXNlcjpwYXNz"},
        "empty bearer": {"Authorization": "Bearer "},
    }
    return env


def call(env, method: str, path: str, headers: dict[str, str]):
    url = re.sub(r"\{(\w+)\}", lambda mt: str(env.params.get(mt.group(1), 1)), path.removeprefix("/api/v1"))
    if not path.startswith("/api/v1"):
        url = "http://testserver" + path
    body, ctype = BODIES.get(path, (RECIPE, "application/yaml"))
    return env.http.request(
        method,
        url,
        content=body if method != "get" else None,
        headers={**headers, "Content-Type": ctype},
        follow_redirects=False,
    )


# a valid body for each write that does not take a recipe (the default: the recipe, as YAML)
BODIES = {
    "/api/v1/exports": ("{}", "application/json"),
    "/api/v1/tokens": ('{"scope": "read", "name": "walk"}', "application/json"),
}
# routes whose answer, once the token is accepted, depends on the state of what they name:
# an export posted by the test itself is still pending, so it has nothing to download yet
STATE_ANSWERS = {
    ("get", "/api/v1/exports/{export_id}/download"): (409,),
    # the seeded run has finished: there is nothing left to cancel
    ("post", "/api/v1/runs/{run_id}/cancel"): (409,),
}


def test_every_route_is_in_the_document_and_only_the_listed_ones_are_public(world):
    ops = operations(world.app)
    assert {p for _, p, _ in ops} >= {"/api/v1/runs", "/api/v1/builds/{build_id}/log"}  # the real document
    for method, path, scope in ops:
        if (method, path) in PUBLIC_OPERATIONS:
            assert scope is None, f"{method.upper()} {path} is listed public but asks for {scope}"
            continue
        assert scope is not None, (
            f"{method.upper()} {path} has no scope check: add a ReadToken/SubmitToken/"
            f"AdminToken parameter, or list it in PUBLIC_OPERATIONS if it must be public"
        )
        assert SCOPES.index(scope) >= SCOPES.index(FLOOR[method]), f"{method.upper()} {path} needs only {scope}"
    # a route hidden from the document escapes the walk: none may be, except the docs themselves
    import assemblage.api.routers as routers

    for info in pkgutil.iter_modules(routers.__path__):
        router = getattr(importlib.import_module(f"assemblage.api.routers.{info.name}"), "router", None)
        for route in getattr(router, "routes", []):
            assert getattr(route, "include_in_schema", True), f"{route.path} is hidden from the OpenAPI document"
    top = {getattr(r, "path", None) for r in world.app.routes} - {None}
    assert top == DOCS_PATHS | {DOCS_ASSETS, UI_STATIC, METRICS}, top


def test_every_page_sends_a_visitor_without_a_live_session_to_the_login(world):
    """The pages' routes, walked from their router: no page is shown without a session of a live token."""
    from fastapi.testclient import TestClient

    from assemblage.api.security import SESSION_COOKIE
    from assemblage.api.ui.pages import router

    with session_scope(world.sessions) as s:
        function_id = s.query(m.Function.id).filter(m.Function.binary_id == world.params["binary_id"]).first()[0]
    params = {**world.params, "function_id": function_id}
    cookies = {"none": None, "forged": "asm_" + "A" * 43}
    cookies.update(
        {
            what: h["Authorization"].split(" ", 1)[1]
            for what, h in world.bad_tokens.items()
            if what in ("token of another secret key", "revoked admin token")
        }
    )
    pages = 0
    for route in router.routes:
        for method in route.methods:
            if (method, route.path) in UI_PUBLIC:
                continue
            assert method == "GET", f"{method} {route.path}: a page that changes something needs a review here"
            url = re.sub(r"\{(\w+)\}", lambda mt: str(params[mt.group(1)]), route.path)
            for what, cookie in cookies.items():
                browser = TestClient(world.app, base_url="http://testserver", follow_redirects=False)
                if cookie:
                    browser.cookies.set(SESSION_COOKIE, cookie)
                r = browser.get(url)
                for _hop in range(3):  # /ui redirects to /ui/runs first
                    assert r.status_code == 303, (url, what, r.status_code, r.text[:200])
                    if r.headers["location"].startswith("/ui/login?next="):
                        break
                    r = browser.get(r.headers["location"])
                else:
                    raise AssertionError(f"{url} ({what}) never reached the login")
            pages += 1
    assert pages >= 10


def test_every_protected_route_refuses_missing_forged_and_revoked_tokens(world):
    checked = 0
    for method, path, _scope in operations(world.app):
        if (method, path) in PUBLIC_OPERATIONS:
            continue
        for what, headers in world.bad_tokens.items():
            r = call(world, method, path, headers)
            assert r.status_code == 401, (method, path, what, r.status_code, r.text[:200])
            assert r.headers.get("www-authenticate") == "Bearer", (method, path, what)
            assert "ELF" not in r.text and "helper" not in r.text, (method, path, what)  # nothing of the data
        checked += 1
    assert checked >= 11
    assert world.dispatcher.sent == []  # no run was started by any of them


def test_each_scope_is_allowed_exactly_where_the_route_says(world):
    tokens = {}
    with session_scope(world.sessions) as s:
        for scope in SCOPES:
            tokens[scope] = create_token(s, scope=scope, secret=SECRET)
        # the seeded run is this submit token's own (another token's run is a 403 for a submit token)
        s.get(m.Run, world.params["run_id"]).submitted_by = find_token(s, tokens["submit"], SECRET).id
    for method, path, need in operations(world.app):
        for have in SCOPES:
            r = call(world, method, path, {"Authorization": f"Bearer {tokens[have]}"})
            if need is None or scope_allows(have, need):
                # allowed: the route's own answer (data exists behind every id in the path)
                ok = STATE_ANSWERS.get((method, path), (200, 201, 307))
                assert r.status_code in ok, (method, path, have, r.status_code, r.text[:300])
            else:
                assert r.status_code == 403 and need in r.json()["detail"], (method, path, have, r.status_code)


def test_public_routes_answer_without_a_token(world):
    for method, path in sorted(PUBLIC_OPERATIONS):
        assert call(world, method, path, {}).status_code == 200, path
    for path in DOCS_PATHS - {"/docs/oauth2-redirect"}:
        assert world.http.get("http://testserver" + path).status_code == 200, path
