"""Build reuse: which finished build a new build of a later run may take its result from.

A build is reused when an earlier build had the same key (every input that can change the result,
:func:`build_key`) and ended in a way the same inputs give again (:func:`reusable`): a success, no
binaries, or a failure whose reason is deterministic (``models.REUSABLE_FAILURES``). A reused build
points at the build that did the work (``builds.reused_from_id``), whose binaries it shares.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from assemblage.builds.runner import Limits
from assemblage.db import models as m

__all__ = ["build_key", "limits_of", "reusable"]


def build_key(*, label: str, pin: str | None, config: str, flags: list[str], options: dict[str, Any],
              source_date_epoch: int | None = None) -> str:
    """The reuse key of a build: every input that can change its result.

    The source's content (label and pin), the configuration, the flags, the outputs asked for, the
    build options (runner, image, and the limits: a failure under ``memory: 16MiB`` says nothing about
    ``memory: 4GiB``; sizes compared in bytes, so ``4GiB`` and ``4096MiB`` are one key) and the
    ``SOURCE_DATE_EPOCH`` the build gets. Schema 2: keys of schema 1 (no options) never match again.
    """
    build = options.get("build", {})
    limits = limits_of(build)
    doc = {"label": label, "pin": pin, "config": config, "flags": flags,
           "outputs": options.get("outputs", {}),
           "build": {"runner": build.get("runner") or "local", "image": build.get("image"),
                     "timeout": limits.timeout, "memory": limits.memory, "processes": limits.processes,
                     "disk": limits.file_size, "jobs_per_build": int(build.get("jobs_per_build", 1))},
           "source_date_epoch": source_date_epoch, "schema": 2}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def reusable(s: Session, key: str, build_id: int) -> m.Build | None:
    """The earliest finished build with ``key`` whose outcome the same inputs give again (or None)."""
    return s.scalar(
        select(m.Build).where(m.Build.key == key, m.Build.id != build_id, m.Build.status.in_(m.REUSABLE_STATUSES),
                              or_(m.Build.status != "failed", m.Build.reason.in_(m.REUSABLE_FAILURES)))
        .order_by(m.Build.id).limit(1)
    )


def limits_of(build: dict[str, Any]) -> Limits:
    """The limits of a build from the run's ``build`` options (sizes in bytes)."""
    from assemblage.recipes.models import parse_memory

    return Limits(
        timeout=float(build.get("timeout", 600)),
        memory=parse_memory(build.get("memory", "4GiB")),
        processes=int(build.get("processes", 512)),
        file_size=parse_memory(build.get("disk", "8GiB")),
        disk=parse_memory(build.get("disk", "8GiB")),  # the whole build folder (a watcher), not only each file
    )
