"""POST/GET /api/v1/exports in-process (SQLite, a local store, the recording dispatcher), the export job run
in-process, and the sweep that resends lost export messages. The same job on PostgreSQL + S3 + Celery is
tested in tests/integration/test_corpus_service.py."""

from __future__ import annotations

import hashlib
import io
import tarfile
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from assemblage.api import create_app
from assemblage.corpus.jobs import run_export_job
from assemblage.db import models as m
from assemblage.db.auth import create_token
from assemblage.db.session import make_engine, make_sessionmaker, session_scope
from assemblage.settings import load_settings
from assemblage.storage import LocalStore
from assemblage.tasks.dispatch import RecordingDispatcher
from tests.unit.test_corpus import START, make_dataset, own

SECRET = "unit-test-secret-0123456789"


class Env:
    def __init__(self, root: Path) -> None:
        import assemblage.db.auth  # noqa: F401 - the tokens table

        make_dataset(root, {"a": own("a", 3) + [START], "b": own("b", 2) + [START], "c": own("c", 4) + [START]})
        self.settings = load_settings(
            environment="test", secret_key=SECRET, database_url=f"sqlite:///{root / 'dataset.sqlite'}", source_root=root
        )
        self.sessions = make_sessionmaker(make_engine(self.settings.database_url))
        self.store = LocalStore(root)
        self.dispatcher = RecordingDispatcher()
        self.app = create_app(self.settings, sessions=self.sessions, store=self.store, dispatcher=self.dispatcher)
        self.http = TestClient(self.app, base_url="http://testserver/api/v1")
        with session_scope(self.sessions) as s:
            self.tokens = {scope: create_token(s, scope=scope, secret=SECRET) for scope in ("read", "submit")}

    def h(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[scope]}"}

    def run_job(self, export_id: int) -> str:
        with session_scope(self.sessions) as s:  # what the task's claim does
            s.get(m.Export, export_id).status = "running"
        return run_export_job(self.sessions, self.store, self.settings.database_url, export_id)


@pytest.fixture
def env(tmp_path) -> Env:
    return Env(tmp_path / "ds")


def test_post_records_the_job_and_sends_it_after_the_commit(env):
    r = env.http.post(
        "/exports", json={"where": {"source": ["a", "b"]}, "formats": ["parquet", "files"]}, headers=env.h("submit")
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["location"] == f"/api/v1/exports/{body['id']}"
    assert body["status"] == "pending" and body["progress"]["phase"] == "queued" and body["url"] is None
    assert body["request"]["where"]["source"] == ["a", "b"] and body["request"]["formats"] == ["parquet", "files"]
    assert env.dispatcher.sent == [("export", body["id"], None)]
    with env.sessions() as s:
        assert s.get(m.Export, body["id"]).status == "pending"


@pytest.mark.parametrize(
    "payload,where",
    [
        ({"where": {"optimisation": "O2"}}, "optimisation"),
        ({"formats": ["xml"]}, "formats"),
        ({"split": {"ratios": {"train": 0.5}}}, "ratios"),
        ({"split": {"ratios": {"train": 0.5, "test": 0.5}, "by": "config"}}, "by"),
        ({"bogus": True}, "bogus"),
    ],
)
def test_bad_requests_are_422_and_nothing_is_sent(env, payload, where):
    r = env.http.post("/exports", json=payload, headers=env.h("submit"))
    assert r.status_code == 422 and where in r.json()["errors"][0]["location"]
    assert env.dispatcher.sent == []


def test_a_read_token_cannot_export(env):
    assert env.http.post("/exports", json={}, headers=env.h("read")).status_code == 403
    assert env.http.post("/exports", json={}).status_code == 401


def test_the_job_exports_packs_stores_and_the_api_serves_it(env, tmp_path):
    r = env.http.post(
        "/exports", json={"split": {"ratios": {"train": 0.5, "test": 0.5}}, "seed": 2}, headers=env.h("submit")
    )
    export_id = r.json()["id"]
    assert env.http.get(f"/exports/{export_id}/download", headers=env.h("read")).status_code == 409
    assert env.run_job(export_id) == "finished"
    assert env.run_job(export_id) == "finished"  # a redelivered task changes nothing
    body = env.http.get(f"/exports/{export_id}", headers=env.h("read")).json()
    assert body["status"] == "finished" and body["error"] is None
    assert body["progress"]["phase"] == "finished" and body["progress"]["step"] == body["progress"]["steps"]
    assert body["url"] is None and body["download"] == f"/api/v1/exports/{export_id}/download"  # local store
    assert body["result"]["binaries"] == 6 and body["result"]["split"]["dropped_pic_hashes"] == 1
    data = env.http.get(f"/exports/{export_id}/download", headers=env.h("read")).content
    assert hashlib.sha256(data).hexdigest() == body["sha256"] and len(data) == body["size"]
    import zstandard

    with tarfile.open(fileobj=io.BytesIO(zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 28))) as t:
        names = t.getnames()
        manifest = t.extractfile(f"assemblage-export-{export_id}/MANIFEST.sha256").read().decode()
        for line in manifest.splitlines():
            digest, rel = line.split("  ", 1)
            member = t.extractfile(f"assemblage-export-{export_id}/{rel}")
            assert hashlib.sha256(member.read()).hexdigest() == digest, rel
    assert f"assemblage-export-{export_id}/data/functions/train-00000.parquet" in names
    listing = env.http.get("/exports", headers=env.h("read")).json()
    assert [e["id"] for e in listing["items"]] == [export_id]


def test_a_job_that_cannot_be_done_fails_with_the_reason(env):
    victim = next(p for p in (Path(env.store.root) / "objects").rglob("*") if p.is_file())
    victim.write_bytes(b"changed")
    export_id = env.http.post("/exports", json={}, headers=env.h("submit")).json()["id"]
    assert env.run_job(export_id) == "failed"
    body = env.http.get(f"/exports/{export_id}", headers=env.h("read")).json()
    assert body["status"] == "failed" and "corrupt" in body["error"] and body["url"] is None


def test_the_sweep_resends_pending_exports_and_requeues_dead_ones(env):
    from assemblage.tasks.coordinator import requeue_dead_exports, resend_lost
    from assemblage.tasks.runtime import beat

    first = env.http.post("/exports", json={}, headers=env.h("submit")).json()["id"]
    second = env.http.post("/exports", json={}, headers=env.h("submit")).json()["id"]
    sent = []
    assert resend_lost(env.sessions, lambda *a: sent.append(a)) == 2
    assert sent == [("export", first, None), ("export", second, None)]
    beat(env.sessions, wid="node/x/1", kind="process")
    beat(env.sessions, wid="node/x/2", kind="process")
    old = m.utcnow() - timedelta(seconds=120)
    with session_scope(env.sessions) as s:
        for eid, worker in ((first, "node/x/1"), (second, "node/x/2")):
            row = s.get(m.Export, eid)
            row.status, row.worker, row.started_at, row.updated_at = "running", worker, old, old
        s.get(m.Worker, "node/x/1").last_seen = old  # the first export's process went silent
    sent.clear()
    assert requeue_dead_exports(env.sessions, 30, lambda *a: sent.append(a)) == [first]
    assert sent == [("export", first, None)]
    with env.sessions() as s:
        assert (s.get(m.Export, first).status, s.get(m.Export, second).status) == ("pending", "running")


def test_the_openapi_document_describes_the_export_routes(env):
    spec = env.app.openapi()
    post = spec["paths"]["/api/v1/exports"]["post"]
    schema = post["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    props = spec["components"]["schemas"][schema]["properties"]
    assert {"where", "formats", "split", "seed", "pairs", "drop_trivial", "unique_binaries", "include"} <= set(props)
    assert "201" in post["responses"] and "422" in post["responses"]
    got = spec["paths"]["/api/v1/exports/{export_id}"]["get"]["responses"]["200"]["content"]["application/json"]
    out = spec["components"]["schemas"][got["schema"]["$ref"].rsplit("/", 1)[1]]["properties"]
    assert {"status", "progress", "url", "result"} <= set(out)
    params = {p["name"] for p in spec["paths"]["/api/v1/binaries"]["get"]["parameters"]}
    assert {"source", "build", "kind", "config", "license", "size", "sample", "seed", "limit", "after"} <= params
