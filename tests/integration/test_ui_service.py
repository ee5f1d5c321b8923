"""The web pages of a real service (API + Celery worker on PostgreSQL, Redis and S3), in real
headless Chromium: login into an HttpOnly cookie, runs with live progress, the coverage heat
map, corpus charts, a binary and a function with its source text, the download link, the
export form's request, CSRF, and a hostile repository whose names must render as text."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time

import httpx
import pytest

from tests.conftest import unavailable
from tests.integration.browser import Browser, check_png, chromium
from tests.integration.service_stack import Stack, assemblage_cmd
from tests.integration.ui_support import (
    EVIL_COMMENT,
    EVIL_FILE,
    EVIL_FUNCTION,
    NO_INJECTION,
    PAGES,
    copy_samples,
    write_hostile_project,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("services", "_chromium"),
]


@pytest.fixture(scope="module")
def _chromium() -> None:
    if chromium() is None:
        unavailable("chromium is not installed (scripts/bootstrap.sh apt test)")


RECIPE = """\
name: ui-pages
sources:
  - path: calc
  - path: broken
  - path: hostile
matrix:
  platform: [linux]
  arch: [x86_64]
  toolchain: [gcc-12]
  opt: [O0, O2]
"""
W, H = 1280, 900


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui-service")
    sources = root / "sources"
    copy_samples(sources, "calc", "broken")
    write_hostile_project(sources / "hostile")
    with Stack(root / "stack", source_root=sources) as st:
        st.start_api()
        st.start_worker("w1", concurrency=2)
        yield st


@pytest.fixture(scope="module")
def tokens(stack):
    return {scope: stack.token(scope) for scope in ("read", "submit")}


@pytest.fixture(scope="module")
def run(stack, tokens):
    submit = stack.client(tokens["submit"])
    r = submit.post("/runs", content=RECIPE, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    return stack.wait_run(stack.client(tokens["read"]), r.json()["id"], timeout=300)


@pytest.fixture(scope="module")
def ids(stack, tokens, run):
    """One id of each kind, read over the API: the hostile binary, its function, a failed build."""
    api = stack.client(tokens["read"])
    binaries = api.get("/binaries", params={"run": run["id"]}).json()["items"]
    hostile = next(b for b in binaries if b["file_name"] == "hostile" and b["optimization"] == "O0")
    funcs = api.get(f"/binaries/{hostile['id']}/functions").json()["items"]
    fn = next(f for f in funcs if f["name"] == EVIL_FUNCTION)
    cells = api.get(f"/runs/{run['id']}/coverage").json()["cells"]
    failed = next(c for c in cells if c["status"] == "failed")
    return {
        "run": run["id"],
        "binary": hostile["id"],
        "function": fn["id"],
        "build": failed["build_id"],
        "hostile": hostile,
    }


@pytest.fixture(scope="module")
def browser(stack, tmp_path_factory):
    b = Browser(tmp_path_factory.mktemp("chromium"), width=W, height=H)
    yield b
    b.close()


def ui(stack, path: str = "") -> str:
    return f"http://127.0.0.1:{stack.api_port}{path}"


def login(browser: Browser, stack, token: str, next_path: str = "/ui/runs") -> None:
    browser.call("Network.clearBrowserCookies")
    browser.goto(ui(stack, next_path))
    assert browser.eval("location.pathname") == "/ui/login", "a page showed without a session"
    browser.submit_and_wait(
        f"document.getElementById('token').value = {json.dumps(token)};document.getElementById('login-form').submit()"
    )
    assert browser.eval("location.pathname") == next_path


def shot(browser: Browser, stack, name: str) -> None:
    data = browser.screenshot(stack.root / f"{name}.png")
    check_png(data, W, H)


def test_no_page_shows_anything_without_a_token(stack, ids):
    for page in PAGES:
        url = ui(stack, page.format(**ids))
        for cookies in ({}, {"asm_session": "asm_not-a-token"}, {"asm_session": "' OR 1=1 --"}):
            r = httpx.get(url, cookies=cookies, follow_redirects=False, timeout=30)
            assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next="), (page, r.status_code)
            assert r.content == b""
    login_page = httpx.get(ui(stack, "/ui/login"), timeout=30)
    assert login_page.status_code == 200 and "hostile" not in login_page.text and "calc" not in login_page.text
    assert "script-src 'self'" in login_page.headers["content-security-policy"]


def test_login_keeps_the_token_in_an_httponly_strict_cookie(stack, tokens, browser, run):
    login(browser, stack, tokens["read"])
    cookie = next(c for c in browser.cookies() if c["name"] == "asm_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert "asm_session" not in browser.eval("document.cookie")  # scripts cannot read it
    row = f"document.querySelector('tr.run[data-run-id=\"{run['id']}\"]')"
    assert browser.eval(f"{row}.querySelector('.status').textContent") == "finished"
    assert browser.eval(f"{row}.querySelector('progress').value") == 6
    assert browser.eval(f"{row}.querySelector('progress').max") == 6
    assert "failed 2" in browser.eval(f"{row}.querySelector('.counts').textContent")
    shot(browser, stack, "runs")


def test_a_wrong_token_is_refused_at_login(stack, browser):
    browser.call("Network.clearBrowserCookies")
    browser.goto(ui(stack, "/ui/login"))
    browser.submit_and_wait(
        "document.getElementById('token').value = 'asm_wrong';document.getElementById('login-form').submit()"
    )
    assert browser.eval("document.getElementById('login-error').textContent") == "unknown or revoked token"
    assert not [c for c in browser.cookies() if c["name"] == "asm_session"]


def test_run_page_heat_map_has_a_cell_per_build_with_the_reason_on_hover(stack, tokens, browser, ids):
    login(browser, stack, tokens["read"], f"/ui/runs/{ids['run']}")
    cells = browser.eval(
        "Array.from(document.querySelectorAll('#heatmap rect.cell')).map(r => "
        "[r.dataset.status, r.dataset.reason, r.querySelector('title').textContent])"
    )
    assert len(cells) == 6
    failed = [c for c in cells if c[0] == "failed"]
    assert len(failed) == 2 and all(c[1] == "compile_error" for c in failed)
    assert all(
        "broken \u00d7 linux-x86_64-gcc-12-" in c[2] and "(compile_error)" in c[2] and "undeclared" in c[2]
        for c in failed
    )
    assert sum(1 for c in cells if c[0] == "succeeded") == 4
    assert browser.eval("document.querySelector('#reasons').textContent").count("compile_error") == 1
    shot(browser, stack, "run")


def test_corpus_page_draws_composition_charts(stack, tokens, browser, ids):
    login(browser, stack, tokens["read"], "/ui/corpus")
    labels = browser.eval(
        "Object.fromEntries(['config', 'license', 'source', 'functions'].map(k => [k, "
        "Array.from(document.querySelectorAll('#chart-' + k + ' g.bar title')).map(t => t.textContent)]))"
    )
    assert sorted(labels["config"]) == ["linux-x86_64-gcc-12-O0: 2", "linux-x86_64-gcc-12-O2: 2"]
    assert len(labels["source"]) == 2 and all(x.endswith(": 2") for x in labels["source"])
    assert len(labels["license"]) >= 1 and len(labels["functions"]) == 2
    shot(browser, stack, "corpus")


def test_hostile_names_render_as_text_on_the_binary_and_function_pages(stack, tokens, browser, ids):
    login(browser, stack, tokens["read"], f"/ui/binaries/{ids['binary']}")
    names = browser.eval("Array.from(document.querySelectorAll('#functions td.name')).map(td => td.textContent)")
    assert EVIL_FUNCTION in names
    files = browser.eval("Array.from(document.querySelectorAll('#functions td.file')).map(td => td.textContent)")
    assert any(f"/build/src/{EVIL_FILE}" in f for f in files)
    assert browser.eval(NO_INJECTION), browser.eval("document.body.innerHTML")
    shot(browser, stack, "binary")

    browser.goto(ui(stack, f"/ui/functions/{ids['function']}"))
    assert browser.eval("document.getElementById('function-name').textContent") == EVIL_FUNCTION
    assert browser.eval("document.getElementById('top-comments').textContent") == EVIL_COMMENT
    assert (
        browser.eval("document.getElementById('source-code').textContent")
        == "template <class T> int run() { return (int)sizeof(T); }"
    )
    texts = browser.eval("Array.from(document.querySelectorAll('#lines code')).map(c => c.textContent)")
    assert "template <class T> int run() { return (int)sizeof(T); }" in texts
    assert browser.eval(NO_INJECTION), browser.eval("document.body.innerHTML")
    shot(browser, stack, "function")


def test_build_page_shows_the_failure_and_its_log(stack, tokens, browser, ids):
    login(browser, stack, tokens["read"], f"/ui/builds/{ids['build']}")
    assert "undeclared" in browser.eval("document.getElementById('build-message').textContent")
    assert "undeclared_variable" in browser.eval("document.getElementById('log').textContent")


def test_download_link_gives_the_binary_through_the_store(stack, tokens, browser, ids):
    login(browser, stack, tokens["read"], f"/ui/binaries/{ids['binary']}")
    href = browser.eval("document.getElementById('download').href")
    session = next(c["value"] for c in browser.cookies() if c["name"] == "asm_session")
    r = httpx.get(href, cookies={"asm_session": session}, follow_redirects=False, timeout=30)
    assert r.status_code == 307 and "X-Amz-Signature=" in r.headers["location"]
    data = httpx.get(r.headers["location"], timeout=30).content
    assert hashlib.sha256(data).hexdigest() == ids["hostile"]["hash"]


def test_cookie_borne_writes_need_the_csrf_token(stack, tokens, browser):
    login(browser, stack, tokens["submit"])
    csrf = browser.eval("document.querySelector('meta[name=csrf-token]').content")
    session = {"asm_session": next(c["value"] for c in browser.cookies() if c["name"] == "asm_session")}
    body = {"content": "name: Not Valid\nsources: []\n", "headers": {"Content-Type": "application/yaml"}}
    api = ui(stack, "/api/v1/runs")
    assert httpx.post(api, cookies=session, timeout=30, **body).status_code == 403
    wrong = {**body["headers"], "X-CSRF-Token": "0" * 40}
    assert httpx.post(api, cookies=session, timeout=30, content=body["content"], headers=wrong).status_code == 403
    evil = {**body["headers"], "X-CSRF-Token": csrf, "Origin": "http://evil.example"}
    assert httpx.post(api, cookies=session, timeout=30, content=body["content"], headers=evil).status_code == 403
    good = {**body["headers"], "X-CSRF-Token": csrf}
    assert httpx.post(api, cookies=session, timeout=30, content=body["content"], headers=good).status_code == 422
    assert httpx.post(ui(stack, "/ui/logout"), cookies=session, timeout=30).status_code in (403, 422)
    out = httpx.post(ui(stack, "/ui/logout"), cookies=session, data={"csrf": csrf}, timeout=30)
    assert out.status_code == 303 and 'asm_session=""' in out.headers["set-cookie"]
    # the login form has its own double-submit token: a form posted from another site cannot log in
    forged = httpx.post(ui(stack, "/ui/login"), data={"token": tokens["read"], "login": "x"}, timeout=30)
    assert forged.status_code == 403 and "set-cookie" not in forged.headers


def test_runs_page_follows_a_new_run_live(stack, tokens, browser):
    login(browser, stack, tokens["read"])
    browser.eval("window.__same_page = 1")
    submit = stack.client(tokens["submit"])
    r = submit.post(
        "/runs",
        json={
            "name": "ui-live",
            "sources": [{"path": "calc"}],
            "matrix": {"platform": ["linux"], "arch": ["x86_64"], "toolchain": ["clang-19"], "opt": ["O0"]},
        },
    )
    assert r.status_code == 201, r.text
    row = f"document.querySelector('tr.run[data-run-id=\"{r.json()['id']}\"]')"
    browser.wait_for(f"{row} !== null", timeout=30)
    browser.wait_for(f"{row}.querySelector('.status').textContent === 'finished'", timeout=240)
    assert browser.eval(f"{row}.querySelector('progress').value") == 1
    assert browser.eval(f"{row}.querySelector('.counts').textContent").strip() == "succeeded 1"
    assert browser.eval("window.__same_page") == 1  # updated in place, not reloaded


def test_export_form_sends_the_export_request(stack, tokens, browser, ids):
    login(browser, stack, tokens["read"], "/ui/export")
    assert browser.eval("document.getElementById('export-submit').disabled")
    assert "scope submit" in browser.eval("document.getElementById('export-scope').textContent")

    login(browser, stack, tokens["submit"], "/ui/export")
    csrf = browser.eval("document.querySelector('meta[name=csrf-token]').content")
    browser.eval(f"""(() => {{
        const f = document.getElementById('export-form');
        f.querySelector('select[name=run]').value = '{ids["run"]}';
        f.querySelector('select[name=opt]').value = 'O2';
        f.querySelector('input[name=split_on]').checked = true;
        f.querySelector('input[name=seed]').value = '7';
        f.dispatchEvent(new Event('change'));
        f.requestSubmit();
    }})()""")
    browser.wait_for(
        "!document.getElementById('export-status').hidden"
        " && !document.getElementById('export-status').textContent.startsWith('starting')",
        timeout=60,
    )
    sent = browser.requests("POST", "/api/v1/exports")
    assert len(sent) == 1
    assert sent[0]["headers"]["X-CSRF-Token"] == csrf
    assert json.loads(sent[0]["postData"]) == {  # the service's ExportRequest
        "formats": ["parquet", "sqlite"],
        "where": {"opt": ["O2"], "run": [ids["run"]]},
        "split": {"ratios": {"train": 0.8, "valid": 0.1, "test": 0.1}, "by": "source"},
        "seed": 7,
    }
    cli = browser.eval("document.getElementById('export-cli').textContent")
    assert cli == (
        f"assemblage export service --out OUT --format parquet,sqlite --where opt=O2 "
        f"--where run={ids['run']} --split train=0.8,valid=0.1,test=0.1 --by source --seed 7"
    )
    has_exports = "/api/v1/exports" in httpx.get(ui(stack, "/api/v1/openapi.json"), timeout=30).json()["paths"]
    status = browser.eval("document.getElementById('export-status').textContent")
    if has_exports:  # the exports job of the service: wait for its link
        browser.wait_for("document.getElementById('export-link') !== null", timeout=300)
    else:  # not on this branch yet: the page says what the service answered
        assert "HTTP 404" in status, status
    shot(browser, stack, "export")


def test_a_revoked_token_is_logged_out_at_the_next_page(stack, browser):
    token = stack.token("read")
    login(browser, stack, token)
    listing = subprocess.run(
        assemblage_cmd("token", "list"), env=stack.env(), capture_output=True, text=True, check=True
    ).stdout
    token_id = next(line.split("\t")[0] for line in listing.splitlines() if token[:10] in line)
    subprocess.run(assemblage_cmd("token", "revoke", token_id), env=stack.env(), check=True, capture_output=True)
    time.sleep(0.2)
    browser.goto(ui(stack, "/ui/corpus"))
    assert browser.eval("location.pathname") == "/ui/login"
