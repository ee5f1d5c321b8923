"""What the attack tests share: servers on loopback, git repositories, canaries and where to look for them.

Every server here is real (a socket on 127.0.0.0/8 served by a thread of the test)
and records who connected, so a test can tell "refused before connecting" from
"connected, then failed". Canaries are unique strings planted by a test (in files
outside the source root, in the environment of the service's processes); a test
then reads every place the service writes (every column of every table, every
object of the bucket, every file under the stack's folder, every API answer) and
asserts they are not there.
"""

from __future__ import annotations

import base64
import http.server
import os
import socket
import struct
import subprocess
import tarfile
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "Canary",
    "LoopbackServer",
    "StaticServer",
    "RedirectServer",
    "AuthGitServer",
    "RawServer",
    "closed_port",
    "git",
    "make_repo",
    "bare_for_http",
    "c_project",
    "tarball",
    "find_in_database",
    "find_in_bucket",
    "find_in_files",
    "assert_nowhere",
    "edit_recipe_text",
    "query",
    "servers",
]


def new_canary(kind: str = "canary") -> str:
    return f"asm-{kind}-{uuid.uuid4().hex}"


class Canary:
    """A string that must never leave where the test put it."""

    def __init__(self, kind: str = "canary") -> None:
        self.value = new_canary(kind)

    def __str__(self) -> str:
        return self.value


# ------------------------------------------------------------------ servers


class LoopbackServer:
    """A threaded server on ``host`` (a loopback address); ``hits`` lists what it was asked."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.hits: list[str] = []
        self.headers: list[dict[str, str]] = []  # of each request, for the HTTP servers
        self._lock = threading.Lock()

    def record(self, what: str) -> None:
        with self._lock:
            self.hits.append(what)

    @property
    def port(self) -> int:  # pragma: no cover - defined by subclasses
        raise NotImplementedError

    def url(self, path: str = "/", scheme: str = "http", userinfo: str = "") -> str:
        return f"{scheme}://{userinfo}{self.host}:{self.port}{path}"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _HTTPBase(LoopbackServer):
    handler_class: type

    def start(self):
        owner = self

        class Handler(self.handler_class):  # type: ignore[misc, valid-type]
            server_owner = owner

            def log_message(self, *args) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer((self.host, 0), Handler)
        self._port = self._server.server_address[1]
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        return self._port

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Static(http.server.SimpleHTTPRequestHandler):
    server_owner: StaticServer

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, directory=str(self.server_owner.root), **kwargs)

    def do_GET(self) -> None:
        self.server_owner.record(self.path)
        self.server_owner.headers.append(dict(self.headers))
        super().do_GET()

    def do_HEAD(self) -> None:
        self.server_owner.record(self.path)
        super().do_HEAD()


class StaticServer(_HTTPBase):
    """Serves the files of ``root`` (a dumb-HTTP git repository, archives...)."""

    handler_class = _Static

    def __init__(self, root: Path, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.root = Path(root)


class _Redirect(http.server.BaseHTTPRequestHandler):
    server_owner: RedirectServer

    def do_GET(self) -> None:
        self.server_owner.record(self.path)
        self.send_response(302)
        self.send_header("Location", self.server_owner.target.rstrip("/") + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()


class RedirectServer(_HTTPBase):
    """Answers every GET with a 302 to ``target`` + the path asked."""

    handler_class = _Redirect

    def __init__(self, target: str, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.target = target


class _Auth(_Static):
    server_owner: AuthGitServer

    def do_GET(self) -> None:
        expected = "Basic " + base64.b64encode(self.server_owner.credentials.encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.server_owner.record(f"401 {self.path}")
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()


class AuthGitServer(StaticServer):
    """A static server that wants HTTP basic credentials ``user:password`` (as a git host with tokens does)."""

    handler_class = _Auth

    def __init__(self, root: Path, credentials: str, host: str = "127.0.0.1") -> None:
        super().__init__(root, host)
        self.credentials = credentials


class RawServer(LoopbackServer):
    """A TCP server that misbehaves: ``banner`` (a non-HTTP status line), ``silent`` (never answers),
    ``reset`` (closes with a TCP reset)."""

    def __init__(self, behaviour: str, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.behaviour = behaviour
        self._held: list[socket.socket] = []

    def start(self):
        self._sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self.host, 0))
        self._port = self._sock.getsockname()[1]
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        return self._port

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.record("connect")
            if self.behaviour == "banner":
                try:
                    conn.recv(65536)
                    conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
                finally:
                    conn.close()
            elif self.behaviour == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            else:  # silent: keep it open, say nothing
                self._held.append(conn)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()
        for c in self._held:
            c.close()


def closed_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def servers(*items: LoopbackServer) -> Iterator[tuple[LoopbackServer, ...]]:
    started = []
    try:
        for item in items:
            started.append(item.start())
        yield tuple(started)
    finally:
        for item in reversed(started):
            item.stop()


# ------------------------------------------------------------------ sources


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def c_project(folder: Path, marker: str) -> Path:
    """A one-file C program whose binary would carry ``marker`` (in .rodata) if it were ever built."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.c").write_text(
        f'#include <stdio.h>\nstatic const char marker[] = "{marker}";\nint main(void) {{ puts(marker); return 0; }}\n'
    )
    return folder


def make_repo(folder: Path, marker: str) -> str:
    """A git repository of :func:`c_project`; returns its commit."""
    c_project(folder, marker)
    git("init", "-q", cwd=folder)
    git("add", ".", cwd=folder)
    git("commit", "-q", "-m", "init", cwd=folder)
    return git("rev-parse", "HEAD", cwd=folder)


def bare_for_http(work: Path, bare: Path) -> Path:
    """A bare clone of ``work`` that a static HTTP server can serve (git's dumb protocol)."""
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True, capture_output=True)
    git("update-server-info", cwd=bare)
    return bare


def tarball(path: Path, folder: Path, arcname: str) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        tf.add(folder, arcname=arcname)
    return path


# ------------------------------------------------------------------ where canaries must not be


def find_in_database(url: str, needles: Iterable[str]) -> list[str]:
    """``table.row`` of every row (any column, as text) that holds one of ``needles``."""
    from sqlalchemy import create_engine, inspect, text

    needles = [n for n in needles if n]
    engine = create_engine(url)
    found = []
    try:
        with engine.connect() as c:
            for table in inspect(c).get_table_names():
                for (row,) in c.execute(text(f'SELECT t::text FROM "{table}" t')):
                    for n in needles:
                        if n in row:
                            found.append(f"{table}: {n} in {row[:300]}")
    finally:
        engine.dispose()
    return found


def find_in_bucket(bucket: str, needles: Iterable[str]) -> list[str]:
    import boto3

    from tests.integration.service_stack import S3_ENDPOINT, S3_KEYS

    s3 = boto3.client(
        "s3",
        endpoint_url=S3_ENDPOINT,
        aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    found = []
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    except s3.exceptions.NoSuchBucket:
        return []
    for key in keys:
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        for n in needles:
            if n and n.encode() in data:
                found.append(f"s3://{bucket}/{key}: {n}")
    return found


def find_in_files(root: Path, needles: Iterable[str], *, skip: Iterable[Path] = ()) -> list[str]:
    skip = [Path(p).resolve() for p in skip]
    found = []
    for p in Path(root).rglob("*"):
        if p.is_symlink() or not p.is_file() or any(p.resolve().is_relative_to(s) for s in skip):
            continue
        data = p.read_bytes()
        for n in needles:
            if n and n.encode() in data:
                found.append(f"{p}: {n}")
    return found


def assert_nowhere(stack, needles: Iterable[str], *, answers: Iterable[str] = (), skip: Iterable[Path] = ()) -> None:
    """None of ``needles`` in the stack's database, bucket, files (logs, caches, scratch) or the API answers."""
    needles = [str(n) for n in needles]
    found = find_in_database(stack.database_url, needles) + find_in_bucket(stack.bucket, needles)
    found += find_in_files(stack.root, needles, skip=skip)
    for answer in answers:
        found += [f"API answer: {n}" for n in needles if n in answer]
    assert not found, "\n".join(found[:20])


def edit_recipe_text(stack, run_id: int, text: str) -> None:
    """Replace a run's stored recipe, as an older API or someone with the database could have written it."""
    from sqlalchemy import create_engine
    from sqlalchemy import text as sql

    engine = create_engine(stack.database_url)
    try:
        with engine.begin() as c:
            n = c.execute(
                sql("UPDATE recipes SET text = :t WHERE id = (SELECT recipe_id FROM runs WHERE id = :r)"),
                {"t": text, "r": run_id},
            ).rowcount
        assert n == 1
    finally:
        engine.dispose()


def query(stack, statement: str, **params) -> list[tuple]:
    from sqlalchemy import create_engine
    from sqlalchemy import text as sql

    engine = create_engine(stack.database_url)
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(sql(statement), params)]
    finally:
        engine.dispose()
