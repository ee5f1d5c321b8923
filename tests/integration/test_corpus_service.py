"""Exports from the service: the corpus recipe built by a Celery worker into PostgreSQL and S3 (Swift + s3api),
exported by ``POST /api/v1/exports`` as a Celery job with visible progress and a presigned link, and by the
CLI from the service's database and store. The tables equal, row for row, the export of the same recipe
built in the embedded mode (tests/integration/corpus_support.py says what legitimately differs: ids)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import need
from tests.integration.corpus_support import RECIPE, build_embedded, canonical_tables, make_sources, read_table
from tests.integration.service_stack import S3_KEYS, Stack, assemblage_cmd, missing_services

_missing = missing_services()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(_missing), reason=f"services not reachable: {', '.join(_missing)} (make services)"),
]

REQUEST = {
    "split": {"ratios": {"train": 0.6, "valid": 0.2, "test": 0.2}},
    "seed": 7,
    "pairs": 3,
    "include": ["pdbs", "stripped"],
}
CLI_REQUEST = ["--split", "train=0.6,valid=0.2,test=0.2", "--seed", "7", "--pairs", "3", "--with", "pdbs,stripped"]


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory) -> Path:
    need("gcc-12", "clang-19", "ld.lld-19", "make", "cmake", "meson", "ninja", "autoreconf")
    return make_sources(tmp_path_factory.getbasetemp() / "corpus")


@pytest.fixture(scope="module")
def service(tmp_path_factory, corpus_root):
    with Stack(tmp_path_factory.mktemp("corpus-service"), source_root=corpus_root) as st:
        st.start_api()
        st.start_worker("w1", queues="crawl,linux,windows-cross", concurrency=2)
        submit = st.client(st.token("submit"))
        r = submit.post("/runs", content=RECIPE, headers={"Content-Type": "application/yaml"})
        assert r.status_code == 201, r.text
        reader = st.client(st.token("read"))
        run = st.wait_run(reader, r.json()["id"], timeout=900)
        assert run["builds"] == {"succeeded": 25}, run
        yield st, submit, reader


@pytest.fixture(scope="module")
def embedded_export(corpus_root, tmp_path_factory) -> Path:
    dataset = build_embedded(corpus_root)
    out = tmp_path_factory.mktemp("embedded") / "export"
    subprocess.run(assemblage_cmd("export", str(dataset), "--out", str(out), *CLI_REQUEST, "--quiet"), check=True)
    return out


@pytest.fixture(scope="module")
def job(service, tmp_path_factory):
    """POST /exports, polled every 50 ms until finished; returns (final body, every body seen, the export)."""
    st, submit, reader = service
    r = submit.post("/exports", json=REQUEST)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "pending" and r.headers["location"] == f"/api/v1/exports/{body['id']}"
    seen = [body]
    deadline = time.monotonic() + 600
    while body["status"] not in ("finished", "failed"):
        assert time.monotonic() < deadline, f"export did not finish: {body}\n{st.log('w1')[-3000:]}"
        time.sleep(0.05)
        body = reader.get(f"/exports/{body['id']}").json()
        seen.append(body)
    assert body["status"] == "finished", (body, st.log("w1")[-3000:])
    data = httpx.get(body["url"], timeout=60).content  # the presigned link, straight from S3, no token
    out = tmp_path_factory.mktemp("service-export")
    import zstandard

    with tarfile.open(
        fileobj=io.BytesIO(zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 31)), mode="r:"
    ) as tar:
        tar.extractall(out, filter="data")
    return body, seen, data, out / f"assemblage-export-{body['id']}"


def test_the_job_shows_progress_while_it_runs(job):
    body, seen, _, _ = job
    running = [b for b in seen if b["status"] == "running"]
    assert running, "no GET saw the export running"
    phases = [b["progress"]["phase"] for b in running]
    assert len(set(phases)) >= 2, phases  # it moved through phases while we watched
    steps = [b["progress"]["step"] for b in seen]
    assert steps == sorted(steps) and body["progress"]["step"] == body["progress"]["steps"]
    assert all(b["url"] is None for b in seen if b["status"] != "finished")


def test_the_archive_is_the_presigned_object_and_checks(job):
    body, _, data, export = job
    assert "X-Amz-Signature=" in body["url"]
    assert hashlib.sha256(data).hexdigest() == body["sha256"] and len(data) == body["size"]
    need("sha256sum")
    r = subprocess.run(["sha256sum", "--strict", "-c", "MANIFEST.sha256"], cwd=export, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    summary = json.loads((export / "export.json").read_text())
    assert summary == body["result"]
    tampered = body["url"].replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert httpx.get(tampered, timeout=30).status_code == 403


def test_service_and_embedded_exports_have_identical_tables(job, embedded_export):
    _, _, _, export = job
    service_tables = canonical_tables(export)
    embedded_tables = canonical_tables(embedded_export)
    assert (
        set(service_tables)
        == set(embedded_tables)
        == {"binaries", "functions", "rvas", "lines", "pdbs", "families", "splits", "pairs"}
    )
    for table in service_tables:
        assert service_tables[table] == embedded_tables[table], table
    assert len(service_tables["functions"]) > 500 and service_tables["pairs"]

    # the objects too: same names, same bytes
    def objects(root: Path) -> dict[str, str]:
        return {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (root / "objects").rglob("*") if p.is_file()
        }

    assert objects(export) == objects(embedded_export)


def test_the_cli_exports_the_service_too(service, job, tmp_path):
    st, _, _ = service
    out = tmp_path / "cli"
    env = st.env()
    r = subprocess.run(
        assemblage_cmd("export", "service", "--out", str(out), *CLI_REQUEST, "--quiet"),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert canonical_tables(out) == canonical_tables(job[3])
    # and names the database and store explicitly
    r = subprocess.run(
        assemblage_cmd(
            "select",
            "service",
            "--database-url",
            st.database_url,
            "--storage-url",
            f"s3://{st.bucket}/corpus",
            "--where",
            "license=MIT",
            "--json",
        ),
        env={k: v for k, v in env.items() if k != "ASSEMBLAGE_DATABASE_URL"} | S3_KEYS,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["binaries"] == len(
        [b for b in read_table(out, "binaries") if b["source"] in ("src/calc", "src/calc-fork")]
    )


def test_dedup_counts_on_postgresql_equal_plain_sql(service, job):
    st, _, _ = service
    import psycopg

    with psycopg.connect(st.database_url.replace("postgresql+psycopg", "postgresql")) as conn:
        nb, nh = conn.execute("select count(*), count(distinct hash) from binaries").fetchone()
        rows, exact, no_exact, pic, no_pic = conn.execute(
            "select count(*), count(distinct hash), count(*) filter (where hash is null), count(distinct pic_hash), "
            "count(*) filter (where pic_hash is null) from functions"
        ).fetchone()
    d = job[0]["result"]["dedup"]
    assert (d["binaries"]["before"], d["binaries"]["after"]) == (nb, nh)
    assert (d["functions_exact"]["before"], d["functions_exact"]["after"]) == (rows, exact + no_exact)
    assert (d["functions_pic"]["before"], d["functions_pic"]["after"]) == (rows, pic + no_pic)


def test_binaries_listing_takes_the_selection(service):
    _, _, reader = service
    mit = reader.get("/binaries", params={"license": "mit", "limit": 1000}).json()["items"]
    assert mit and {b["source"] for b in mit} == {"src/calc", "src/calc-fork"}
    both = reader.get(
        "/binaries", params=[("source", "src/vecmath"), ("source", "src/shapes"), ("kind", "shared"), ("limit", 1000)]
    ).json()["items"]
    assert both and all(b["source"] in ("src/vecmath", "src/shapes") for b in both)
    pdb = reader.get("/binaries", params={"has_pdb": "true", "compiler": "clang", "limit": 1000}).json()["items"]
    assert pdb and {b["format"] for b in pdb} == {"pe"}
    r = reader.get("/binaries", params={"optimisation": "O2"})
    assert r.status_code == 422 and r.json()["errors"][0]["location"] == "query.optimisation"
    a = reader.get("/binaries", params={"sample": 4, "seed": 9}).json()["items"]
    assert len(a) == 4 and a == reader.get("/binaries", params={"sample": 4, "seed": 9}).json()["items"]


def test_a_bad_export_request_is_422_and_an_unknown_export_404(service):
    _, submit, reader = service
    r = submit.post("/exports", json={"where": {"optimisation": "O2"}})
    assert r.status_code == 422 and r.json()["errors"][0]["location"].endswith("optimisation")
    r = submit.post("/exports", json={"split": {"ratios": {"train": 0.9}}})
    assert r.status_code == 422
    assert reader.get("/exports/99999").status_code == 404
    assert reader.post("/exports", json={}).status_code == 403
