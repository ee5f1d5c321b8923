"""The API in-process on SQLite, a local store and the recording dispatcher (no services needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from assemblage.api import create_app
from assemblage.db import models as m
from assemblage.db.auth import create_token
from assemblage.db.session import init_schema, make_engine, make_sessionmaker, session_scope
from assemblage.settings import load_settings
from assemblage.storage import LocalStore
from assemblage.tasks.dispatch import RecordingDispatcher

RECIPE = """\
name: api-test
sources:
  - path: recipes/samples/calc
matrix:
  platform: [linux]
  arch: [x86_64]
  toolchain: [gcc-12]
  opt: [O0, O2]
"""
SECRET = "unit-test-secret-0123456789"


class Env:
    def __init__(self, tmp: Path) -> None:
        import assemblage.db.auth  # noqa: F401 - the tokens table

        self.settings = load_settings(
            environment="test", secret_key=SECRET, database_url=f"sqlite:///{tmp}/db.sqlite", source_root=tmp
        )
        engine = make_engine(self.settings.database_url)
        init_schema(engine)
        self.sessions = make_sessionmaker(engine)
        self.store = LocalStore(tmp / "objects")
        self.dispatcher = RecordingDispatcher()
        self.app = create_app(self.settings, sessions=self.sessions, store=self.store, dispatcher=self.dispatcher)
        self.http = TestClient(self.app, base_url="http://testserver/api/v1")
        self.tokens = {}
        with session_scope(self.sessions) as s:
            for scope in ("read", "submit", "admin"):
                self.tokens[scope] = create_token(s, scope=scope, secret=SECRET)

    def h(self, scope: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[scope]}"} if scope else {}


@pytest.fixture
def env(tmp_path) -> Env:
    return Env(tmp_path)


def seed(env: Env, tmp_path: Path, n: int = 25) -> list[int]:
    """n binaries over two configurations, each with two functions; the first has bytes in the store."""
    blob = tmp_path / "calc.bin"
    blob.write_bytes(b"\x7fELF fake binary")
    sha, key = env.store.store_blob(blob)
    ids = []
    with session_scope(env.sessions) as s:
        rec = m.Recipe(name="seed", text="x", sha256="0" * 64)
        s.add(rec)
        s.flush()
        run = m.Run(recipe_id=rec.id, status="finished")
        s.add(run)
        s.flush()
        src = m.Source(
            run_id=run.id, position=0, spec={"path": "x"}, label="x", kind="path", name="x", status="fetched"
        )
        s.add(src)
        cfgs = [
            m.Configuration(
                identifier=f"linux-x86_64-gcc-12-{o}", platform="linux", arch="x86_64", toolchain="gcc-12", opt=o
            )
            for o in ("O0", "O2")
        ]
        s.add_all(cfgs)
        s.flush()
        builds = [
            m.Build(run_id=run.id, source_id=src.id, configuration_id=c.id, status="succeeded", log_key=None)
            for c in cfgs
        ]
        s.add_all(builds)
        s.flush()
        env.store.store(f"logs/build-{builds[0].id}.log", blob)
        builds[0].log_key = f"logs/build-{builds[0].id}.log"
        for i in range(n):
            c = cfgs[i % 2]
            b = m.Binary(
                file_name=f"bin{i}",
                path=key,
                platform="linux",
                build_mode="Release",
                optimization=c.opt,
                hash=sha if i == 0 else f"{i:064x}",
                size=16,
                license="mit" if i % 3 == 0 else None,
                build_id=builds[i % 2].id,
                run_id=run.id,
                source="x",
                source_kind="path",
                arch="x86_64",
                format="elf",
                toolchain="gcc-12",
                config=c.identifier,
                relpath=f"bin{i}",
            )
            s.add(b)
            s.flush()
            ids.append(b.id)
            for j in range(2):
                f = m.Function(
                    binary_id=b.id,
                    name="main" if j == 0 else f"helper{i}",
                    start=4096 + 64 * j,
                    end=4096 + 64 * j + 32,
                    size=32,
                    label_source="dwarf",
                )
                s.add(f)
                s.flush()
                s.add(m.Rva(function_id=f.id, start=f.start, end=f.end))
    return ids


# ------------------------------------------------------------------ runs


def test_post_yaml_recipe_creates_a_run_and_dispatches_after_commit(env):
    r = env.http.post("/runs", content=RECIPE, headers={**env.h("submit"), "Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body == {"id": body["id"], "status": "pending"}
    assert env.dispatcher.sent == [("start", body["id"], None)]
    with env.sessions() as s:  # the rows were committed before the task was sent
        assert s.get(m.Run, body["id"]).status == "pending"
    run = env.http.get(f"/runs/{body['id']}", headers=env.h("read")).json()
    assert run["builds"] == {} and run["status"] == "pending"  # the start task expands it
    from assemblage.pipeline.steps import Context, expand_run

    ctx = Context(sessions=env.sessions, store=env.store, cache_dir=env.settings.cache_dir)
    assert expand_run(ctx, body["id"]) is True
    assert expand_run(ctx, body["id"]) is False  # a second delivery changes nothing
    run = env.http.get(f"/runs/{body['id']}", headers=env.h("read")).json()
    assert run["builds"] == {"pending": 2} and run["total"] == 2 and run["recipe"] == "api-test"
    cov = env.http.get(f"/runs/{body['id']}/coverage", headers=env.h("read")).json()
    assert cov["configs"] == ["linux-x86_64-gcc-12-O0", "linux-x86_64-gcc-12-O2"]
    assert {c["status"] for c in cov["cells"]} == {"pending"}


def test_post_json_recipe(env):
    import yaml

    r = env.http.post("/runs", json=yaml.safe_load(RECIPE), headers=env.h("admin"))
    assert r.status_code == 201, r.text


def test_invalid_recipe_gives_located_errors(env):
    bad = RECIPE.replace("gcc-12", "gcc-99").replace("name: api-test", "name: API Test\nbogus: 1")
    r = env.http.post("/runs", content=bad, headers={**env.h("submit"), "Content-Type": "application/yaml"})
    assert r.status_code == 422
    problems = r.json()["errors"]
    locations = {p["location"] for p in problems}
    assert {"name", "bogus"} <= locations and any(loc.startswith("matrix.toolchain") for loc in locations)
    assert all(set(p) == {"location", "message"} for p in problems)
    assert env.dispatcher.sent == []


def test_not_yaml_and_wrong_content_type(env):
    r = env.http.post(
        "/runs", content="name: [unclosed", headers={**env.h("submit"), "Content-Type": "application/yaml"}
    )
    assert r.status_code == 422 and "YAML" in r.json()["errors"][0]["message"]
    r = env.http.post("/runs", content=RECIPE, headers={**env.h("submit"), "Content-Type": "text/plain"})
    assert r.status_code == 415


def test_unknown_run_is_404(env):
    assert env.http.get("/runs/999", headers=env.h("read")).status_code == 404
    assert env.http.get("/runs/999/coverage", headers=env.h("read")).status_code == 404


# ------------------------------------------------------------------ auth


def _write_operations(app) -> list[tuple[str, str]]:
    ops = []
    for path, item in app.openapi()["paths"].items():
        for method in item:
            if method in ("post", "put", "patch", "delete"):
                ops.append((method, path.removeprefix("/api/v1")))
    return ops


def test_every_write_endpoint_refuses_missing_or_weak_tokens(env):
    ops = _write_operations(env.app)
    assert ("post", "/runs") in ops
    for method, path in ops:
        url = path.replace("{run_id}", "1")
        for headers, code in (
            ({}, 401),
            (env.h("read"), 403),
            ({"Authorization": "Bearer asm_forged"}, 401),
            ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
        ):
            r = env.http.request(method, url, content=RECIPE, headers={**headers, "Content-Type": "application/yaml"})
            assert r.status_code == code, (method, path, headers, r.status_code)
    assert env.dispatcher.sent == []


def test_reads_need_a_token(env):
    assert env.http.get("/binaries").status_code == 401
    assert env.http.get("/binaries", headers=env.h("read")).status_code == 200
    assert env.http.get("/health").status_code == 200  # liveness probes carry no token


def test_tokens_are_stored_hashed(env):
    from assemblage.db.auth import ApiToken

    with env.sessions() as s:
        hashes = [t.token_hash for t in s.query(ApiToken)]
    for token in env.tokens.values():
        assert token not in hashes and all(token[4:] not in h for h in hashes)


def test_revoked_token_is_refused(env):
    from assemblage.db.auth import ApiToken

    with session_scope(env.sessions) as s:
        for t in s.query(ApiToken).filter(ApiToken.scope == "read"):
            t.revoked_at = m.utcnow()
    assert env.http.get("/binaries", headers=env.h("read")).status_code == 401


# ------------------------------------------------------------------ binaries and functions


def test_binaries_filter_and_keyset_pagination(env, tmp_path):
    ids = seed(env, tmp_path, 25)
    seen, cursor = [], None
    while True:
        params = {"opt": "O2", "limit": 4, **({"after": cursor} if cursor else {})}
        page = env.http.get("/binaries", params=params, headers=env.h("read")).json()
        seen += [b["id"] for b in page["items"]]
        assert all(b["optimization"] == "O2" for b in page["items"])
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == [i for n, i in enumerate(ids) if n % 2 == 1]
    lic = env.http.get("/binaries", params={"license": "mit"}, headers=env.h("read")).json()["items"]
    assert len(lic) == 9
    none = env.http.get("/binaries", params={"platform": "windows"}, headers=env.h("read")).json()
    assert none == {"items": [], "next": None}


def test_bad_cursor_is_422(env):
    r = env.http.get("/binaries", params={"after": "bm90LWEtY3Vyc29y"}, headers=env.h("read"))
    assert r.status_code == 422


def test_binary_detail_functions_and_download(env, tmp_path):
    ids = seed(env, tmp_path, 3)
    d = env.http.get(f"/binaries/{ids[0]}", headers=env.h("read")).json()
    assert d["file_name"] == "bin0" and d["path"].startswith("objects/")
    funcs = env.http.get(f"/binaries/{ids[0]}/functions", headers=env.h("read")).json()
    assert [f["name"] for f in funcs["items"]] == ["main", "helper0"]
    assert funcs["items"][0]["rvas"] == [{"start": 4096, "end": 4128}]
    r = env.http.get(f"/binaries/{ids[0]}/download", headers=env.h("read"))
    assert r.status_code == 200 and r.content == b"\x7fELF fake binary"
    assert env.http.get("/binaries/99999", headers=env.h("read")).status_code == 404


def test_functions_by_name(env, tmp_path):
    seed(env, tmp_path, 5)
    page = env.http.get("/functions", params={"name": "main", "limit": 2}, headers=env.h("read")).json()
    assert len(page["items"]) == 2 and page["next"]
    rest = env.http.get("/functions", params={"name": "main", "after": page["next"]}, headers=env.h("read")).json()
    assert len(rest["items"]) == 3 and rest["next"] is None


def test_build_and_log(env, tmp_path):
    seed(env, tmp_path, 1)
    with env.sessions() as s:
        b1, b2 = [b.id for b in s.query(m.Build).order_by(m.Build.id)]
    assert env.http.get(f"/builds/{b1}", headers=env.h("read")).json()["has_log"] is True
    assert env.http.get(f"/builds/{b1}/log", headers=env.h("read")).text.startswith("\x7fELF")
    assert env.http.get(f"/builds/{b2}/log", headers=env.h("read")).status_code == 404


def test_workers_and_health(env):
    from assemblage.tasks.runtime import beat

    beat(env.sessions, wid="linux@h/abc", kind="node", queues=["crawl", "linux"])
    beat(env.sessions, wid="linux@h/abc/42", kind="process", build_id=7)
    w = env.http.get("/workers", headers=env.h("read")).json()
    assert [x["id"] for x in w["workers"]] == ["linux@h/abc"]
    assert w["workers"][0]["alive"] and w["workers"][0]["busy"] == [7]
    h = env.http.get("/health").json()
    assert h == {"status": "ok", "database": "ok", "broker": "ok", "store": "ok"}


def test_openapi_and_docs(env):
    assert env.http.get("/openapi.json").status_code == 200
    assert TestClient(env.app).get("/docs").status_code == 200
    spec = env.app.openapi()
    assert spec["paths"]["/api/v1/runs"]["post"]["requestBody"]["content"].keys() >= {"application/yaml"}
    json.dumps(spec)


def test_broker_down_the_run_is_still_recorded(env):
    class Down:
        def send(self, *a):
            raise ConnectionError("broker away")

        def ping(self):
            raise ConnectionError("broker away")

        def depths(self):
            return None

    env.app.state.dispatcher = Down()
    r = env.http.post("/runs", content=RECIPE, headers={**env.h("submit"), "Content-Type": "application/yaml"})
    assert r.status_code == 201  # the sweeper sends its start task once the broker answers
    h = env.http.get("/health")
    assert h.status_code == 503 and h.json()["broker"].startswith("error")


@pytest.mark.parametrize("source", ["path: /etc", "path: ../../..", "archive: /etc/passwd", "git: /root/repo"])
def test_local_sources_must_stay_inside_the_source_root(env, source):
    bad = RECIPE.replace("path: recipes/samples/calc", source)
    r = env.http.post("/runs", content=bad, headers={**env.h("submit"), "Content-Type": "application/yaml"})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["location"].startswith("sources[0].")
    assert env.dispatcher.sent == []


def test_the_log_endpoint_streams_from_the_store_without_loading_the_log_whole(env, tmp_path, monkeypatch):
    """Issue 8, item 6: GET /builds/{id}/log reads the object in chunks (store.get is never called)."""
    from assemblage.api.routers import builds as builds_router

    seed(env, tmp_path, n=2)
    with session_scope(env.sessions) as s:
        b = s.query(m.Build).filter(m.Build.log_key.is_not(None)).one()
        build_id, key = b.id, b.log_key
    big = tmp_path / "big.log"
    with open(big, "wb") as fh:
        fh.write(b"head\n" + b"x" * (8 << 20) + b"\ntail\n")
    env.store.store(key, big)
    reads: list[int] = []
    real_open = env.store.open

    class Counting:
        def __init__(self, fh) -> None:
            self.fh = fh

        def read(self, n: int = -1) -> bytes:
            assert 0 < n <= builds_router.LOG_CHUNK  # never "read it all"
            data = self.fh.read(n)
            reads.append(len(data))
            return data

        def close(self) -> None:
            self.fh.close()

    monkeypatch.setattr(env.store, "open", lambda k: Counting(real_open(k)))
    monkeypatch.setattr(env.store, "get", lambda k: pytest.fail("the log endpoint loaded the whole object"))
    with env.http.stream("GET", f"/builds/{build_id}/log", headers=env.h("read")) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        body = b"".join(r.iter_bytes())
    assert body.startswith(b"head\n") and body.endswith(b"\ntail\n") and len(body) == big.stat().st_size
    assert len(reads) > 100 and max(reads) <= builds_router.LOG_CHUNK
