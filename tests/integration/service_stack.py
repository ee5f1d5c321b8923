"""A whole service on this machine, for the service tests and bench/service.py.

PostgreSQL, Redis and the S3 server (Swift + s3api) are the real ones that
``make test`` starts (scripts/services.sh). The API (``assemblage serve``) and
Celery workers (``assemblage worker``) run as real subprocesses, each in its own
process group so a test can kill -9 one of them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("ASSEMBLAGE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("ASSEMBLAGE_TEST_REDIS", "redis://127.0.0.1:6379")
S3_ENDPOINT = os.environ.get("ASSEMBLAGE_TEST_S3", "http://127.0.0.1:8080")
S3_KEYS = {"AWS_ACCESS_KEY_ID": "test:tester", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def missing_services(*kinds: str) -> list[str]:
    """Which of ``kinds`` ("postgresql", "redis", "s3"; all when none given) do not answer (empty when all do)."""
    from urllib.parse import urlparse

    kinds = kinds or ("postgresql", "redis", "s3")
    unknown = set(kinds) - {"postgresql", "redis", "s3"}
    if unknown:
        raise ValueError(f"unknown service(s): {sorted(unknown)}")
    out = []
    pg = urlparse(PG_ADMIN_URL.replace("+psycopg", ""))
    if "postgresql" in kinds and not port_open(pg.hostname or "127.0.0.1", pg.port or 5432):
        out.append(f"PostgreSQL at {pg.hostname}:{pg.port or 5432} (ASSEMBLAGE_TEST_PG)")
    rd = urlparse(REDIS_URL)
    if "redis" in kinds and not port_open(rd.hostname or "127.0.0.1", rd.port or 6379):
        out.append(f"Redis at {rd.hostname}:{rd.port or 6379} (ASSEMBLAGE_TEST_REDIS)")
    s3 = urlparse(S3_ENDPOINT)
    if "s3" in kinds and not port_open(s3.hostname or "127.0.0.1", s3.port or 80):
        out.append(f"S3 at {S3_ENDPOINT} (ASSEMBLAGE_TEST_S3)")
    return out


def require_services(*kinds: str) -> None:
    """The services answer, or the test skips (a developer's machine) / fails (CI=true) naming each one that does not."""
    from tests.conftest import unavailable

    missing = missing_services(*kinds)
    if missing:
        unavailable(f"services not reachable: {', '.join(missing)} (start them: scripts/services.sh start)")


def wait_for(predicate, timeout: float = 60, what: str = "a condition", step: float = 0.2):
    """The first truthy value ``predicate()`` returns within ``timeout`` seconds; AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_database(name: str) -> str:
    """A new, empty PostgreSQL database migrated with Alembic; returns its URL."""
    from sqlalchemy import create_engine, text

    from assemblage.cli.service import upgrade_database

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade_database(url)
    return url


def drop_database(name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def assemblage_cmd(*args: str) -> list[str]:
    exe = Path(sys.executable).parent / "assemblage"
    if exe.exists():
        return [str(exe), *args]
    return [sys.executable, "-c", "from assemblage.cli.main import main; main()", *args]


@dataclass
class Stack:
    """API + workers on real PostgreSQL, Redis and S3. Use as a context manager."""

    root: Path
    name: str = field(default_factory=lambda: f"asm_test_{uuid.uuid4().hex[:8]}")
    redis_db: int = 7
    dead_after: float = 6.0
    heartbeat: float = 1.0
    sweep_interval: float = 2.0
    keep_database: bool = False
    source_root: Path = REPO  # where relative path: sources resolve (submitted local sources must be inside)
    database_url: str = ""
    api_port: int = 0
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def broker_url(self) -> str:
        return f"{REDIS_URL}/{self.redis_db}"

    @property
    def bucket(self) -> str:
        return self.name.replace("_", "-")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/api/v1"

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(S3_KEYS)
        env.update(
            {
                "ASSEMBLAGE_ENVIRONMENT": "test",
                "ASSEMBLAGE_SECRET_KEY": "test-secret-key-0123456789",
                "ASSEMBLAGE_DATABASE_URL": self.database_url,
                "ASSEMBLAGE_BROKER_URL": self.broker_url,
                "ASSEMBLAGE_STORAGE_URL": f"s3://{self.bucket}/corpus",
                "ASSEMBLAGE_S3_ENDPOINT_URL": S3_ENDPOINT,
                "ASSEMBLAGE_SOURCE_ROOT": str(self.source_root),
                "ASSEMBLAGE_HEARTBEAT_INTERVAL": str(self.heartbeat),
                "ASSEMBLAGE_WORKER_DEAD_AFTER": str(self.dead_after),
                "ASSEMBLAGE_SWEEP_INTERVAL": str(self.sweep_interval),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(extra)
        return env

    def __enter__(self) -> Stack:
        import redis

        self.root.mkdir(parents=True, exist_ok=True)
        self.database_url = create_database(self.name)
        r = redis.Redis.from_url(self.broker_url)
        r.flushdb()
        r.close()
        return self

    def __exit__(self, *exc) -> None:
        for key in list(self.procs):
            self.kill(key, signal.SIGTERM)
        for key in list(self.procs):
            self._reap(key)
        if not self.keep_database:
            try:
                drop_database(self.name)
            except Exception:  # noqa: BLE001 - cleanup must not hide the test's failure
                pass

    # ------------------------------------------------------------ processes

    def _spawn(self, key: str, args: list[str], **env: str) -> subprocess.Popen:
        log = open(self.root / f"{key}.log", "ab")
        p = subprocess.Popen(
            assemblage_cmd(*args),
            env=self.env(**env),
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[key] = p
        return p

    def start_api(self, **env: str) -> None:
        self.api_port = free_port()
        self._spawn("api", ["serve", "--host", "127.0.0.1", "--port", str(self.api_port)], **env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.procs["api"].poll() is not None:
                raise RuntimeError(f"the API exited: {self.log('api')[-3000:]}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the API did not become healthy: {self.log('api')[-3000:]}")

    def start_worker(
        self,
        key: str,
        *,
        queues: str = "crawl,linux",
        concurrency: int = 1,
        pool: str = "prefork",
        wait: bool = True,
        prefetch: int = 1,
        loglevel: str = "INFO",
        **env: str,
    ) -> subprocess.Popen:
        wdir = self.root / key
        wdir.mkdir(exist_ok=True)
        p = self._spawn(
            key,
            [
                "worker",
                "-Q",
                queues,
                "-c",
                str(concurrency),
                "-n",
                f"{key}@%h",
                "--pool",
                pool,
                "--loglevel",
                loglevel,
                "--prefetch",
                str(prefetch),
            ],
            **{"ASSEMBLAGE_CACHE_DIR": str(wdir / "cache"), **env},
        )
        if wait:
            self.wait_worker(key)
        return p

    def wait_worker(self, key: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[key].poll() is not None:
                raise RuntimeError(f"worker {key} exited: {self.log(key)[-3000:]}")
            if "ready." in self.log(key) or self._heartbeat_seen(key):
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker {key} did not start: {self.log(key)[-3000:]}")

    def _heartbeat_seen(self, key: str) -> bool:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.database_url)
        try:
            with engine.connect() as c:
                return bool(
                    c.execute(
                        text("SELECT count(*) FROM workers WHERE kind = 'node' AND node LIKE :k"), {"k": f"{key}@%"}
                    ).scalar()
                )
        finally:
            engine.dispose()

    def kill(self, key: str, sig: int = signal.SIGKILL) -> None:
        p = self.procs.get(key)
        if p is not None and p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass

    def _reap(self, key: str) -> None:
        p = self.procs.pop(key)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill_group(p)
            p.wait(timeout=5)

    @staticmethod
    def kill_group(p: subprocess.Popen) -> None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop(self, key: str, sig: int = signal.SIGTERM) -> None:
        self.kill(key, sig)
        self._reap(key)

    def log(self, key: str) -> str:
        p = self.root / f"{key}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    # ------------------------------------------------------------ API

    def token(self, scope: str) -> str:
        out = subprocess.run(
            assemblage_cmd("token", "create", "--scope", scope),
            env=self.env(),
            cwd=self.root,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip().splitlines()[-1]

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def wait_run(self, client: httpx.Client, run_id: int, timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        body: dict = {}
        while time.monotonic() < deadline:
            r = client.get(f"/runs/{run_id}")
            if r.status_code == 200:
                body = r.json()
                if body["status"] == "finished":
                    return body
            time.sleep(0.5)
        raise AssertionError(
            f"run {run_id} did not finish in {timeout}s: {body}\n"
            + "\n".join(f"--- {k}\n{self.log(k)[-2000:]}" for k in self.procs)
        )
