"""A worker's life, as Celery signal handlers: logging, identity, heartbeats, log context, draining.

- ``setup_logging``: our handler (text or JSON lines, :mod:`assemblage.monitoring.logs`);
  connecting to it tells Celery to leave logging alone.
- ``celeryd_init`` / ``worker_process_init``: the node's identity; a fresh runtime and the
  hand-back signal handler in each pool process.
- ``worker_ready``: the node's heartbeat thread; on EC2 (instance metadata configured) the
  instance id in the heartbeat and the spot interruption watcher.
- ``task_prerun`` / ``task_postrun``: the run, build or source id of the task in the log context,
  so every line logged while it runs carries them.
- ``worker_shutting_down``: the drain countdown (:mod:`assemblage.tasks.drain`).
"""

from __future__ import annotations

import logging
import os
import signal
from contextvars import Token
from typing import Any

from celery import signals
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from assemblage.db import models as m
from assemblage.monitoring.logs import bind_log_context, configure_logging, reset_log_context
from assemblage.tasks.app import celery_app
from assemblage.tasks.drain import Drainer, install_handback_handler
from assemblage.tasks.runtime import Heartbeat, node_id, reset_runtime, runtime, set_identity, set_instance_id

__all__: list[str] = []

log = logging.getLogger(__name__)

_node: dict[str, Any] = {}  # the main process's heartbeat, drainer, spot watcher
_task_tokens: dict[str, Token] = {}


def _settings():
    return celery_app.conf.assemblage_settings


@signals.setup_logging.connect
def _on_setup_logging(loglevel: Any = None, **_kw: Any) -> None:
    settings = _settings()
    level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else (loglevel or settings.log_level)
    configure_logging(settings.log_format, level)


@signals.celeryd_init.connect
def _on_worker_init(sender: Any = None, **_kw: Any) -> None:
    settings = _settings()
    set_identity(str(sender or "worker"))
    if settings.instance_metadata_url:  # before the pool forks, so that its processes inherit it
        from assemblage.tasks.spot import Metadata

        _node["metadata"] = Metadata(settings.instance_metadata_url)
        set_instance_id(_node["metadata"].instance_id())


@signals.worker_process_init.connect
def _on_process_init(**_kw: Any) -> None:
    reset_runtime()
    install_handback_handler()


def _pool_pids(consumer: Any) -> list[int]:
    try:
        return list(consumer.pool.info.get("processes") or [])
    except AttributeError:  # solo and thread pools have no processes of their own
        return []


@signals.worker_ready.connect
def _on_worker_ready(sender: Any = None, **_kw: Any) -> None:
    settings = _settings()
    rt = runtime(settings)
    try:
        queues = sorted(sender.app.amqp.queues.consume_from.keys())
    except AttributeError:
        queues = []
    drainer = Drainer(lambda: _pool_pids(sender), timeout=settings.drain_timeout)
    _node["drainer"] = drainer
    metadata = _node.get("metadata")
    if metadata is not None:
        from assemblage.tasks.spot import SpotWatcher

        def on_notice(seconds_left: float) -> None:
            import time

            drainer.deadline_hint = time.monotonic() + max(0.0, seconds_left - settings.spot_margin)
            os.kill(os.getpid(), signal.SIGTERM)  # Celery's warm shutdown, as for any other stop

        _node["spot"] = SpotWatcher(metadata, on_notice, interval=settings.spot_poll_interval).start()
    _node["heartbeat"] = Heartbeat(
        rt.sessions, wid=node_id(), kind="node", queues=queues, interval=settings.heartbeat_interval
    ).start()


@signals.worker_shutting_down.connect
def _on_shutting_down(sig: Any = None, how: Any = None, **_kw: Any) -> None:
    drainer = _node.get("drainer")
    if drainer is not None and str(how).lower().startswith("warm"):
        drainer.begin(f"{sig or 'signal'}, {how} shutdown")


@signals.worker_shutdown.connect
def _on_worker_shutdown(**_kw: Any) -> None:
    spot = _node.pop("spot", None)
    if spot is not None:
        spot.stop()
    hb = _node.pop("heartbeat", None)
    if hb is not None:
        hb.stop()


def _run_of(model: type[m.Build] | type[m.Source], obj_id: Any) -> int | None:
    try:
        with runtime(_settings()).sessions() as s:
            return s.scalar(select(model.run_id).where(model.id == obj_id))
    except SQLAlchemyError:
        return None  # the task itself will meet the outage and retry


@signals.task_prerun.connect
def _on_task_prerun(task_id: str | None = None, task: Any = None, args: Any = None, **_kw: Any) -> None:
    name = getattr(task, "name", None)
    obj = args[0] if args else None
    fields: dict[str, Any] = {"task": name, "task_id": task_id}
    if name == "assemblage.start_run":
        fields["run_id"] = obj
    elif name == "assemblage.build":
        fields.update(build_id=obj, run_id=_run_of(m.Build, obj))
    elif name == "assemblage.fetch":
        fields.update(source_id=obj, run_id=_run_of(m.Source, obj))
    if task_id:
        _task_tokens[task_id] = bind_log_context(**fields)


@signals.task_postrun.connect
def _on_task_postrun(task_id: str | None = None, **_kw: Any) -> None:
    token = _task_tokens.pop(task_id or "", None)
    if token is not None:
        try:
            reset_log_context(token)
        except ValueError:  # made in another context (a thread pool): nothing of ours to undo there
            pass
