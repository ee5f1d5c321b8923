"""What a worker process needs: its identity, its pipeline Context, its heartbeats.

Identity: ``<celery node>/<instance>`` for the worker (one per start) and
``<celery node>/<instance>/<pid>`` for the process that runs a build; that is
what ``Build.worker`` records. A build is alive while the row of that process
in ``workers`` is fresh; the coordinator requeues builds whose process went
silent for ``worker_dead_after`` seconds.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from assemblage.db import models as m
from assemblage.db.session import make_engine, make_sessionmaker, session_scope
from assemblage.pipeline.context import Context
from assemblage.settings import Settings
from assemblage.sources.policy import FetchPolicy
from assemblage.storage import store_from_settings

__all__ = [
    "Runtime",
    "runtime",
    "reset_runtime",
    "set_identity",
    "node_id",
    "process_id",
    "beat",
    "touch",
    "Heartbeat",
    "set_instance_id",
    "build_heartbeat",
    "is_alive",
]

log = logging.getLogger(__name__)

_identity: dict[str, str] = {"node": f"worker@{socket.gethostname()}", "instance": uuid.uuid4().hex[:8]}
_runtime: Runtime | None = None
_lock = threading.Lock()


def set_identity(node: str, instance_id: str | None = None) -> None:
    """Called once when a worker starts (its forked pool processes inherit it)."""
    _identity["node"] = node
    _identity["instance"] = uuid.uuid4().hex[:8]
    if instance_id:
        _identity["instance_id"] = instance_id


def set_instance_id(instance_id: str | None) -> None:
    """The EC2 instance this worker runs on (recorded in its heartbeat rows)."""
    if instance_id:
        _identity["instance_id"] = instance_id


def node_id() -> str:
    return f"{_identity['node']}/{_identity['instance']}"


def process_id() -> str:
    return f"{node_id()}/{os.getpid()}"


class Runtime:
    """One process's engine, sessions and store (created after a fork, never shared across one)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: Engine = make_engine(settings.database_url)
        self.sessions: sessionmaker[Session] = make_sessionmaker(self.engine)
        self.store = store_from_settings(settings)
        self.pid = os.getpid()
        self.fetch_policy = FetchPolicy.for_service(settings)  # resolves the service's own hosts once

    def context(self) -> Context:
        cache = Path(self.settings.cache_dir).resolve()
        cache.mkdir(parents=True, exist_ok=True)
        return Context(
            sessions=self.sessions,
            store=self.store,
            cache_dir=cache,
            work_root=self.settings.work_root,
            worker=process_id(),
            source_root=Path(self.settings.source_root).resolve(),
            fetch_policy=self.fetch_policy,
            max_builds=self.settings.max_builds_per_run,
            max_binaries=self.settings.max_binaries_per_build,
        )


def runtime(settings: Settings) -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None or _runtime.pid != os.getpid():
            _runtime = Runtime(settings)
        return _runtime


def reset_runtime() -> None:
    """Forget the parent's connections after a fork."""
    global _runtime
    with _lock:
        if _runtime is not None:
            _runtime.engine.dispose(close=False)
        _runtime = None


# ------------------------------------------------------------------ heartbeats


def beat(
    sessions: sessionmaker[Session],
    *,
    wid: str,
    kind: str,
    queues: list[str] | None = None,
    build_id: int | None = None,
    instance_id: str | None = None,
) -> None:
    """Insert or refresh one heartbeat row."""
    with session_scope(sessions) as s:
        touch(s, wid=wid, kind=kind, queues=queues, build_id=build_id, instance_id=instance_id)


def touch(
    s: Session,
    *,
    wid: str,
    kind: str,
    queues: list[str] | None = None,
    build_id: int | None = None,
    instance_id: str | None = None,
) -> None:
    """Insert or refresh one heartbeat row in the caller's transaction.

    ``instance_id`` (the EC2 instance, from the instance metadata) is what the fleet
    reconciler protects from scale-in while a build of this worker runs.
    """
    now = m.utcnow()
    instance_id = instance_id or _identity.get("instance_id")
    # an UPDATE's result is a CursorResult (it has rowcount); Session.execute is typed as any statement's Result
    n = cast(
        CursorResult[Any],
        s.execute(update(m.Worker).where(m.Worker.id == wid).values(last_seen=now, build_id=build_id)),
    ).rowcount
    if not n:
        s.add(
            m.Worker(
                id=wid,
                kind=kind,
                node=_identity["node"],
                hostname=socket.gethostname(),
                pid=os.getpid(),
                queues=list(queues or []),
                build_id=build_id,
                instance_id=instance_id,
                started_at=now,
                last_seen=now,
            )
        )
        s.flush()


def forget(sessions: sessionmaker[Session], wid: str) -> None:
    with session_scope(sessions) as s:
        s.execute(delete(m.Worker).where(m.Worker.id == wid))


def is_alive(s: Session, wid: str | None, dead_after: float) -> bool:
    """Whether the process ``wid`` has sent a heartbeat in the last ``dead_after`` seconds."""
    if not wid:
        return False
    seen = s.scalar(select(m.Worker.last_seen).where(m.Worker.id == wid))
    if seen is None:
        return False
    if seen.tzinfo is None:  # SQLite drops the zone
        seen = seen.replace(tzinfo=m.utcnow().tzinfo)
    return seen >= m.utcnow() - timedelta(seconds=dead_after)


class Heartbeat:
    """A daemon thread refreshing one heartbeat row every ``interval`` seconds until stopped."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        wid: str,
        kind: str,
        interval: float,
        queues: list[str] | None = None,
        build_id: int | None = None,
    ) -> None:
        self.sessions, self.wid, self.kind = sessions, wid, kind
        self.interval, self.queues, self.build_id = interval, queues, build_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{kind}", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                beat(self.sessions, wid=self.wid, kind=self.kind, queues=self.queues, build_id=self.build_id)
            except SQLAlchemyError as exc:  # the database is away: keep trying
                log.warning("heartbeat %s failed: %s", self.wid, exc.__class__.__name__)
            self._stop.wait(self.interval)

    def stop(self, *, forget_row: bool = True) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if forget_row:
            try:
                forget(self.sessions, self.wid)
            except SQLAlchemyError:
                pass


@contextmanager
def build_heartbeat(rt: Runtime, build_id: int) -> Iterator[None]:
    """Heartbeats of this process while it works on ``build_id``."""
    hb = Heartbeat(
        rt.sessions, wid=process_id(), kind="process", interval=rt.settings.heartbeat_interval, build_id=build_id
    ).start()
    try:
        yield
    finally:
        hb.stop()
