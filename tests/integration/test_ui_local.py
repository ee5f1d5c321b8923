"""``assemblage ui DIR``: the same pages over an embedded dataset, on 127.0.0.1 only, read-only,
opened in real headless Chromium by the link the command prints."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import need, unavailable
from tests.integration.browser import Browser, check_png, chromium
from tests.integration.service_stack import assemblage_cmd, free_port
from tests.integration.ui_support import EVIL_COMMENT, EVIL_FUNCTION, NO_INJECTION, copy_samples, write_hostile_project

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, scope="module")
def _chromium() -> None:
    if chromium() is None:
        unavailable("chromium is not installed (scripts/bootstrap.sh apt test)")


W, H = 1024, 768


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    need("gcc-12", "g++-12")
    root = tmp_path_factory.mktemp("ui-local")
    copy_samples(root, "calc", "broken")
    write_hostile_project(root / "hostile")
    (root / "recipe.yaml").write_text("""
name: ui-local
sources:
  - path: calc
  - path: broken
  - path: hostile
matrix:
  toolchain: [gcc-12]
  opt: [O0]
""")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "assemblage.cli",
            "build",
            str(root / "recipe.yaml"),
            "--out",
            str(root / "out"),
            "--jobs",
            "2",
            "--allow-failures",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return root / "out"


@pytest.fixture(scope="module")
def server(dataset, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("ui-server") / "ui.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            assemblage_cmd("ui", str(dataset), "--port", str(port)),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        link = None
        while link is None:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            m = re.search(r"open: (http://127\.0\.0\.1:\d+/ui/login#\S+)", log.read_text())
            if m and _answers(port):
                link = m.group(1)
            time.sleep(0.2)
        yield {"port": port, "link": link, "base": f"http://127.0.0.1:{port}"}
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/ui/login", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    b = Browser(tmp_path_factory.mktemp("chromium-local"), width=W, height=H)
    b.goto(server["link"])  # the link logs in by itself (the key sits after '#')
    b.wait_for("location.pathname === '/ui/runs'", timeout=30)
    yield b
    b.close()


def test_listens_on_loopback_only(server):
    port = f"{server['port']:04X}"
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if local.endswith(":" + port) and state == "0A":
                listening.append(local)
    assert listening == ["0100007F:" + port]


def test_the_printed_link_logs_in_and_keeps_the_key_out_of_the_address(server, browser):
    assert "#" not in browser.url()
    assert browser.eval("document.querySelector('tr.run .status').textContent") == "finished"
    assert browser.eval("document.querySelector('tr.run progress').value") == 3
    assert httpx.get(server["base"] + "/ui/runs", follow_redirects=False, timeout=10).status_code == 303
    data = browser.screenshot(Path(browser.profile.parent) / "runs.png")
    check_png(data, W, H)


def test_pages_of_the_dataset(server, browser, dataset):
    con = sqlite3.connect(dataset / "dataset.sqlite")
    bid, fid, code, comment = con.execute(
        "SELECT b.id, f.id, f.source_codes, f.top_comments FROM functions f JOIN binaries b ON f.binary_id = b.id "
        "WHERE f.name = ?",
        (EVIL_FUNCTION,),
    ).fetchone()
    run_id = con.execute("SELECT max(id) FROM runs").fetchone()[0]
    digest = con.execute("SELECT hash FROM binaries WHERE id = ?", (bid,)).fetchone()[0]
    con.close()

    browser.goto(f"{server['base']}/ui/runs/{run_id}")
    statuses = browser.eval("Array.from(document.querySelectorAll('#heatmap rect.cell')).map(r => r.dataset.status)")
    assert sorted(statuses) == ["failed", "succeeded", "succeeded"]
    check_png(browser.screenshot(Path(browser.profile.parent) / "run.png"), W, H)

    browser.goto(f"{server['base']}/ui/corpus")
    assert browser.eval("document.querySelectorAll('#chart-config g.bar').length") == 1
    check_png(browser.screenshot(Path(browser.profile.parent) / "corpus.png"), W, H)

    browser.goto(f"{server['base']}/ui/binaries/{bid}")
    assert EVIL_FUNCTION in browser.eval(
        "Array.from(document.querySelectorAll('#functions td.name')).map(td => td.textContent)"
    )
    assert browser.eval(NO_INJECTION)
    href = browser.eval("document.getElementById('download').href")
    session = next(c["value"] for c in browser.cookies() if c["name"] == "asm_session")
    got = httpx.get(href, cookies={"asm_session": session}, timeout=30)
    assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == digest

    browser.goto(f"{server['base']}/ui/functions/{fid}")
    assert browser.eval("document.getElementById('source-code').textContent") == code
    assert browser.eval("document.getElementById('top-comments').textContent") == comment == EVIL_COMMENT
    assert browser.eval(NO_INJECTION)
    check_png(browser.screenshot(Path(browser.profile.parent) / "function.png"), W, H)


def test_read_only_nothing_can_be_submitted(server, browser, dataset):
    before = hashlib.sha256((dataset / "dataset.sqlite").read_bytes()).hexdigest()
    browser.goto(f"{server['base']}/ui/export")
    assert browser.eval("document.getElementById('export-submit').disabled")
    cli = browser.eval("document.getElementById('export-cli').textContent")
    assert cli == f"assemblage export {dataset.resolve()} --out OUT --format parquet,sqlite"
    csrf = browser.eval("document.querySelector('meta[name=csrf-token]').content")
    session = next(c["value"] for c in browser.cookies() if c["name"] == "asm_session")
    r = httpx.post(
        server["base"] + "/api/v1/runs",
        cookies={"asm_session": session},
        timeout=30,
        headers={"X-CSRF-Token": csrf, "Content-Type": "application/yaml"},
        content="name: x\nsources: [{path: calc}]\n",
    )
    assert r.status_code == 403  # the key has the read scope
    assert hashlib.sha256((dataset / "dataset.sqlite").read_bytes()).hexdigest() == before


def test_a_wrong_key_is_refused(server, tmp_path):
    b = Browser(tmp_path, width=W, height=H)
    try:
        b.goto(server["link"].split("#")[0] + "#asm_wrong")
        b.wait_for("document.getElementById('login-error') !== null", timeout=30)
        assert b.eval("location.pathname") == "/ui/login"
    finally:
        b.close()


def test_a_folder_without_a_dataset_is_a_clear_error(tmp_path):
    r = subprocess.run(
        assemblage_cmd("ui", str(tmp_path), "--port", str(free_port())), capture_output=True, text=True, timeout=60
    )
    assert r.returncode != 0 and "no dataset.sqlite" in r.stderr and "Traceback" not in r.stderr
