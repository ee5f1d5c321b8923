"""Issue 8, items 9 and 11: denial of service by a submit token, deeply nested recipes.

The attack: a 1 MiB YAML recipe of aliases expanded to 26.4 million builds and was
accepted; parsing ran on the event loop (``/health`` took 12 s); a 400 MB body was
buffered before the size check; 2 KB of ``[[[[`` raised ``RecursionError`` (500
from the API, a traceback from ``recipe check``). Reproduced against the real API
(``assemblage serve``: uvicorn, PostgreSQL, Redis, S3) with real HTTP clients.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.service_stack import Stack, assemblage_cmd

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("services")]

MATRIX = "matrix:\n  platform: [linux]\n  arch: [x86_64]\n  toolchain: [gcc-12]\n  opt: [O0]\n"
CAP = 100


def laughs(levels: int = 9) -> str:
    """The classic: each level lists the one below ten times; 10**levels sources once expanded."""
    lines = ["name: bomb", "anchors:", "  - &l0 {path: recipes/samples/calc}"]
    for i in range(1, levels + 1):
        lines.append(f"  - &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]")
    lines.append(f"sources: *l{levels}")
    return "\n".join(lines) + "\n" + MATRIX


def alias_flood(size: int = 1 << 20) -> str:
    """A 1 MiB recipe that names one anchored source again and again."""
    head = "name: flood\nsources:\n  - &s {path: recipes/samples/calc}\n"
    line = "  - *s\n"
    return head + line * ((size - len(head) - len(MATRIX)) // len(line)) + MATRIX


def deep_yaml(depth: int = 1000) -> str:
    return "name: deep\nsources: " + "[" * depth + "]" * depth + "\n" + MATRIX


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASSEMBLAGE_MAX_BUILDS_PER_RUN", str(CAP))
        with Stack(tmp_path_factory.mktemp("dos")) as st:
            st.start_api()  # no workers: accepted runs wait in the queue
            st.submit = st.client(st.token("submit"))
            yield st


def post_yaml(api, text: str) -> httpx.Response:
    return api.submit.post("/runs", content=text, headers={"Content-Type": "application/yaml"})


def test_alias_bombs_are_located_errors_and_fast(api, tmp_path):
    for text, message in ((laughs(), "aliases expand the recipe past"), (alias_flood(), "more than 500 aliases")):
        assert len(text) < (1 << 20)
        started = time.monotonic()
        r = post_yaml(api, text)
        elapsed = time.monotonic() - started
        assert r.status_code == 422, r.text[:500]
        [problem] = r.json()["errors"]
        assert problem["location"].startswith("line ") and message in problem["message"], problem
        assert elapsed < 5, elapsed
        f = tmp_path / "bomb.yaml"
        f.write_text(text)
        started = time.monotonic()
        check = subprocess.run(assemblage_cmd("recipe", "check", str(f)), capture_output=True, text=True, timeout=60)
        assert check.returncode == 2 and message in check.stderr and "Traceback" not in check.stderr
        assert time.monotonic() - started < 10
    assert api.client(api.token("read")).get("/runs").status_code in (200, 404, 405)  # the API is still there


def test_sources_times_configurations_is_capped(api):
    sources = "".join("  - path: recipes/samples/calc\n" for _ in range(11))
    matrix = MATRIX.replace("opt: [O0]", "opt: [O0, O1, O2, O3, Os]").replace("[gcc-12]", "[gcc-12, clang-19]")
    r = post_yaml(api, f"name: wide\nsources:\n{sources}{matrix}")
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == [
        {
            "location": "sources",
            "message": (
                f"11 source(s) x 10 configuration(s) = 110 builds, more than the {CAP} this service takes in one run "
                "(ASSEMBLAGE_MAX_BUILDS_PER_RUN)"
            ),
        }
    ]
    search = post_yaml(api, "name: search\nsources:\n  - github: {query: 'language:c', limit: 101}\n" + MATRIX)
    assert search.status_code == 422 and "101 source(s) x 1 configuration(s)" in search.text
    ok = post_yaml(api, f"name: fits\nsources:\n{sources}{MATRIX}")
    assert ok.status_code == 201, ok.text


def test_health_answers_while_hostile_recipes_are_parsed(api):
    """Three ~1 MiB recipes parsed at once (each takes seconds); /health must keep answering meanwhile."""
    big = (
        "name: big\nsources:\n"
        + "".join(f"  - path: recipes/samples/calc{i}\n" for i in range(29_000))
        + MATRIX.replace("gcc-12", "no-such-toolchain")
    )  # valid until the very end: all of it is parsed
    assert len(big) < (1 << 20)
    done: list[tuple[int, float]] = []

    def submit() -> None:
        started = time.monotonic()
        with api.client(api.token("submit")) as c:
            c.timeout = 120
            r = c.post("/runs", content=big, headers={"Content-Type": "application/yaml"})
        done.append((r.status_code, time.monotonic() - started))

    posts = [threading.Thread(target=submit) for _ in range(3)]
    for p in posts:
        p.start()
    latencies = []
    with httpx.Client(timeout=60) as c:
        while any(p.is_alive() for p in posts):
            started = time.monotonic()
            assert c.get(f"{api.base_url}/health").status_code == 200
            latencies.append(time.monotonic() - started)
            time.sleep(0.05)
    for p in posts:
        p.join()
    assert [code for code, _ in done] == [422] * 3
    parse = min(seconds for _, seconds in done)
    print(
        f"3 parses at once: the fastest took {parse:.1f} s; {len(latencies)} health checks meanwhile, "
        f"slowest {max(latencies):.2f} s"
    )
    assert len(latencies) >= 5, (latencies, done)
    # on the event loop, a health check waits for a whole parse; off it, for a small share of one
    assert max(latencies) < parse / 3, (max(latencies), parse, latencies)


def _response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_an_oversized_body_is_refused_before_it_is_read(api):
    conn = http.client.HTTPConnection("127.0.0.1", api.api_port, timeout=30)
    conn.putrequest("POST", "/api/v1/runs")
    conn.putheader("Authorization", f"Bearer {api.token('submit')}")
    conn.putheader("Content-Type", "application/yaml")
    conn.putheader("Content-Length", str(400 * 1024 * 1024))
    conn.endheaders()  # not one byte of the 400 MB follows
    r = conn.getresponse()
    assert r.status == 413, r.read()
    conn.close()


def test_a_streamed_body_is_refused_once_past_the_cap(api):
    """A chunked body of no declared length: the answer must come while it is still being sent."""
    sock = socket.create_connection(("127.0.0.1", api.api_port), timeout=30)
    sock.sendall(
        (
            f"POST /api/v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api.token('submit')}\r\n"
            "Content-Type: application/yaml\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode()
    )
    block = b"# " + b"x" * (64 * 1024 - 3) + b"\n"
    chunk = f"{len(block):x}\r\n".encode() + block + b"\r\n"
    sent, limit, answer = 0, 256 * 1024 * 1024, b""
    try:
        while sent < limit:
            readable, writable, _ = select.select([sock], [sock], [], 30)
            if readable:
                answer = _response(sock)
                break
            if writable:
                sent += sock.send(chunk)
    except (BrokenPipeError, ConnectionResetError):
        answer = answer or _response(sock)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), (answer[:200], sent)
    assert sent < 32 * 1024 * 1024, sent  # the 1 MiB cap, plus what the kernel's buffers took
    assert httpx.get(f"{api.base_url}/health", timeout=30).status_code == 200


def test_deeply_nested_recipes_are_located_errors(api, tmp_path: Path):
    r = post_yaml(api, deep_yaml())
    assert r.status_code == 422 and r.json()["errors"][0]["location"].startswith("line 2, column"), r.text
    for body, location in (
        ("[" * 100_000 + "]" * 100_000, ""),
        ('{"name": "x", "description": ' + "[" * 500 + "]" * 500 + "}", "description[0][0][0]..."),
    ):
        r = api.submit.post("/runs", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, r.text[:300]
        assert r.json()["errors"][0]["location"] == location and "nested deeper than" in r.text
    nested: list = []
    for _ in range(40):
        nested = [nested]
    for text in (deep_yaml(), deep_yaml(40), json.dumps({"name": "x", "sources": nested})):
        f = tmp_path / "deep.yaml"
        f.write_text(text)
        check = subprocess.run(assemblage_cmd("recipe", "check", str(f)), capture_output=True, text=True, timeout=60)
        assert check.returncode == 2, check.stderr
        assert len(check.stderr.strip().splitlines()) == 1 and "Traceback" not in check.stderr, check.stderr
        assert "nest" in check.stderr
