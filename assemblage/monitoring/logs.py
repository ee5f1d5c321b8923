"""Logs as text or as JSON lines, with the run and build ids of the work in progress on every line.

The ids live in a :class:`contextvars.ContextVar` (``run_id``, ``build_id``,
``source_id``, ``task``, ``task_id``), set around each Celery task
(:mod:`assemblage.tasks.jobs`) and around each build step, and copied onto
every record by :class:`ContextFilter`, which sits on the handler rather than
on a logger so that lines from any library (Celery's own "Task ... succeeded",
SQLAlchemy, botocore) carry them too. Threads start with an empty context, so
a heartbeat thread's lines carry no build id: they are not about one build.

``ASSEMBLAGE_LOG_FORMAT=json`` writes one JSON object per line::

    {"time": "2026-12-01T10:00:00.123Z", "level": "INFO", "logger": "assemblage.tasks.jobs",
     "message": "build 12 finished: succeeded", "process": 4711, "run_id": 3, "build_id": 12,
     "task": "assemblage.build", "task_id": "..."}

which log shippers (CloudWatch agent, Vector, Loki's promtail) index without
a parser of their own.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import IO, Any

__all__ = [
    "ContextFilter",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "log_context",
    "bind_log_context",
    "reset_log_context",
    "current_log_context",
    "CONTEXT_FIELDS",
]

CONTEXT_FIELDS = ("run_id", "build_id", "source_id", "task", "task_id")
_context: ContextVar[dict[str, Any] | None] = ContextVar("assemblage_log_context", default=None)


def current_log_context() -> dict[str, Any]:
    return dict(_context.get() or {})


def bind_log_context(**fields: Any) -> Token:
    """Add fields to the context until :func:`reset_log_context` is called with the returned token."""
    return _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}})


def reset_log_context(token: Token) -> None:
    _context.reset(token)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Every line logged inside the block carries ``fields`` (None values are left out)."""
    token = bind_log_context(**fields)
    try:
        yield
    finally:
        reset_log_context(token)


class ContextFilter(logging.Filter):
    """Copies the current context's fields onto each record (``record.build_id`` ...)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _context.get() or {}
        record.assemblage_context = ctx
        for key, value in ctx.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def _iso(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, process, context fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        doc.update(getattr(record, "assemblage_context", None) or {})
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger [run=3 build=12] message``: the ids only when there are some."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(ctx)s%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ctx = getattr(record, "assemblage_context", None) or {}
        shown = [f"{k.removesuffix('_id')}={ctx[k]}" for k in ("run_id", "build_id", "source_id") if k in ctx]
        record.ctx = f"[{' '.join(shown)}] " if shown else ""
        return super().format(record)


def configure_logging(fmt: str = "text", level: str | int = "INFO", *, stream: IO[str] | None = None) -> None:
    """One handler on the root logger with the context filter; other handlers are removed.

    Called by ``assemblage serve`` (uvicorn's loggers then propagate to it) and by
    Celery's ``setup_logging`` signal in workers (so Celery leaves logging to us).
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    logging.captureWarnings(True)
