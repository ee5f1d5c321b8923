"""Log context and formats; /metrics on the API with several processes (prometheus-client's multiprocess mode)."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from assemblage.monitoring.logs import configure_logging, log_context

REPO = Path(__file__).resolve().parents[2]


def _capture(fmt: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    configure_logging(fmt, "INFO", stream=stream)
    return logging.getLogger("assemblage.test"), stream


def test_json_lines_carry_the_context_and_it_is_restored():
    log, stream = _capture("json")
    try:
        with log_context(run_id=3, build_id=12, source_id=None):
            log.info("inside %s", "the build")
            with log_context(task="assemblage.build"):
                log.warning("nested")
        log.info("outside")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        configure_logging("text", "WARNING")
    docs = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [d["message"] for d in docs] == ["inside the build", "nested", "outside", "failed"]
    assert (docs[0]["run_id"], docs[0]["build_id"]) == (3, 12) and "source_id" not in docs[0]
    assert docs[1]["task"] == "assemblage.build" and docs[1]["build_id"] == 12
    assert "run_id" not in docs[2] and "build_id" not in docs[2]
    assert docs[3]["level"] == "ERROR" and "ValueError: boom" in docs[3]["exception"]
    assert docs[0]["time"].endswith("Z") and docs[0]["logger"] == "assemblage.test"


def test_text_lines_show_the_ids():
    log, stream = _capture("text")
    try:
        with log_context(run_id=3, build_id=12):
            log.info("hello")
    finally:
        configure_logging("text", "WARNING")
    assert "[run=3 build=12] hello" in stream.getvalue()


WORKER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from fastapi.testclient import TestClient
    from assemblage.api import create_app
    from assemblage.db.session import make_engine, make_sessionmaker, init_schema
    from assemblage.settings import load_settings
    from assemblage.storage.local import LocalStore
    from assemblage.tasks.dispatch import RecordingDispatcher

    tmp, n, scrape = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "scrape"
    settings = load_settings(environment="test", secret_key="unit-test-secret-0123456789",
                             database_url=f"sqlite:///{tmp}/db.sqlite")
    engine = make_engine(settings.database_url)
    init_schema(engine)
    app = create_app(settings, sessions=make_sessionmaker(engine), store=LocalStore(tmp / "objects"),
                     dispatcher=RecordingDispatcher())
    client = TestClient(app)
    for _ in range(n):
        assert client.get("/api/v1/health").status_code == 200
    if scrape:
        print(client.get("/metrics").text)
""")


def test_request_latency_is_summed_over_api_processes(tmp_path):
    """Three API processes share PROMETHEUS_MULTIPROC_DIR; a scrape of any one counts every process's requests."""
    import os

    mdir = tmp_path / "prom"
    mdir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mdir)}
    script = tmp_path / "api_process.py"
    script.write_text(WORKER)
    for n in (3, 4):
        subprocess.run(
            [sys.executable, str(script), str(tmp_path), str(n), "no"],
            env=env,
            check=True,
            cwd=REPO,
            capture_output=True,
            timeout=120,
        )
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path), "5", "scrape"],
        env=env,
        check=True,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    counts = {}
    for fam in text_string_to_metric_families(out):
        for s in fam.samples:
            if s.name == "assemblage_http_request_duration_seconds_count":
                counts[(s.labels["route"], s.labels["status"])] = s.value
    assert counts[("/api/v1/health", "200")] == 3 + 4 + 5
    assert "assemblage_builds" in out  # the corpus figures come along (from the database, not the files)
