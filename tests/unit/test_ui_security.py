"""The pages' guards in-process (the browser tests in tests/integration show the same through Chromium):
login and its double-submit token, the cookie as a credential for the API, CSRF, redirects that stay
on the site, and the headers every page carries."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from assemblage.api.security import KeyAuthenticator, csrf_token
from assemblage.api.ui import CSP
from assemblage.api.ui.pages import _safe_next
from tests.unit.test_service_api import RECIPE, Env, seed


@pytest.fixture
def env(tmp_path) -> Env:
    return Env(tmp_path)


def browser(env: Env) -> TestClient:
    return TestClient(env.app, base_url="http://testserver", follow_redirects=False)


def log_in(env: Env, scope: str = "read", next_path: str = "/ui/runs") -> TestClient:
    c = browser(env)
    page = c.get("/ui/login", params={"next": next_path})
    nonce = re.search(r'name="login" value="([^"]+)"', page.text).group(1)
    r = c.post("/ui/login", data={"token": env.tokens[scope], "login": nonce, "next": next_path})
    assert r.status_code == 303 and r.headers["location"] == next_path
    return c


def csrf_of(c: TestClient) -> str:
    return re.search(r'name="csrf-token" content="([0-9a-f]+)"', c.get("/ui/runs").text).group(1)


def test_pages_redirect_to_login_and_back(env, tmp_path) -> None:
    seed(env, tmp_path, 3)
    c = browser(env)
    r = c.get("/ui/binaries/1")
    assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=/ui/binaries/1"
    c = log_in(env, next_path="/ui/binaries/1")
    page = c.get("/ui/binaries/1")
    assert page.status_code == 200 and "main" in page.text
    for header, value in (
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
    ):
        assert page.headers[header] == value


def test_login_needs_its_own_form_token(env) -> None:
    c = browser(env)
    c.get("/ui/login")
    forged = c.post("/ui/login", data={"token": env.tokens["read"], "login": "guessed"})
    assert forged.status_code == 403 and "asm_session" not in forged.headers.get("set-cookie", "")
    other_site = browser(env)
    nonce = re.search(r'name="login" value="([^"]+)"', other_site.get("/ui/login").text).group(1)
    r = other_site.post(
        "/ui/login", data={"token": env.tokens["read"], "login": nonce}, headers={"Origin": "http://evil.example"}
    )
    assert r.status_code == 403


def test_a_wrong_token_gets_no_cookie(env) -> None:
    c = browser(env)
    nonce = re.search(r'name="login" value="([^"]+)"', c.get("/ui/login").text).group(1)
    r = c.post("/ui/login", data={"token": "asm_nope", "login": nonce})
    assert r.status_code == 401 and "unknown or revoked token" in r.text
    assert "asm_session" not in r.headers.get("set-cookie", "")


def test_the_cookie_is_httponly_strict(env) -> None:
    c = browser(env)
    nonce = re.search(r'name="login" value="([^"]+)"', c.get("/ui/login").text).group(1)
    r = c.post("/ui/login", data={"token": env.tokens["read"], "login": nonce})
    cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("asm_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie


def test_the_cookie_reads_the_api_but_writes_need_the_csrf_token(env) -> None:
    c = log_in(env, "submit")
    assert c.get("/api/v1/runs/1").status_code == 404  # authenticated (no such run), not 401
    yaml = {"Content-Type": "application/yaml"}
    assert c.post("/api/v1/runs", content=RECIPE, headers=yaml).status_code == 403
    assert c.post("/api/v1/runs", content=RECIPE, headers={**yaml, "X-CSRF-Token": "f" * 40}).status_code == 403
    token = csrf_of(c)
    assert (
        c.post(
            "/api/v1/runs", content=RECIPE, headers={**yaml, "X-CSRF-Token": token, "Origin": "http://evil.example"}
        ).status_code
        == 403
    )
    assert c.post("/api/v1/runs", content=RECIPE, headers={**yaml, "X-CSRF-Token": token}).status_code == 201
    # a program with a bearer token needs no CSRF token (no cookie rides along)
    api = TestClient(env.app, base_url="http://testserver/api/v1")
    assert api.post("/runs", content=RECIPE, headers={**yaml, **env.h("submit")}).status_code == 201


def test_the_csrf_token_belongs_to_the_session(env) -> None:
    read, submit = log_in(env, "read"), log_in(env, "submit")
    assert csrf_of(read) != csrf_of(submit)
    r = submit.post(
        "/api/v1/runs", content=RECIPE, headers={"Content-Type": "application/yaml", "X-CSRF-Token": csrf_of(read)}
    )
    assert r.status_code == 403


def test_logout_needs_the_csrf_token(env) -> None:
    c = log_in(env)
    assert c.post("/ui/logout").status_code == 403
    r = c.post("/ui/logout", data={"csrf": csrf_of(c)})
    assert r.status_code == 303 and 'asm_session=""' in r.headers["set-cookie"]


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/ui/binaries/3", "/ui/binaries/3"),
        ("//evil.example/ui", "/ui/runs"),
        ("/\\evil.example", "/ui/runs"),
        ("https://evil.example/ui", "/ui/runs"),
        ("/ui/\\evil", "/ui/runs"),
        ("/ui/x\r\nSet-Cookie: a=b", "/ui/runs"),
        ("/api/v1/runs", "/ui/runs"),
        (None, "/ui/runs"),
    ],
)
def test_redirects_after_login_stay_on_the_pages(path, expected) -> None:
    assert _safe_next(path) == expected


def test_key_authenticator_admits_one_key_with_its_scope() -> None:
    key = KeyAuthenticator.new_key()
    auth = KeyAuthenticator(key, scope="read")
    p = auth.authenticate(key)
    assert p is not None and p.scope == "read"
    assert auth.authenticate(key + "x") is None and auth.authenticate("") is None
    assert csrf_token(p, "s1") != csrf_token(p, "s2")


def test_unknown_run_and_binary_pages_are_404(env) -> None:
    c = log_in(env)
    assert c.get("/ui/runs/99").status_code == 404
    assert c.get("/ui/binaries/99").status_code == 404
    assert c.get("/ui/functions/99").status_code == 404
    assert c.get("/ui/runs/0").status_code == 422
