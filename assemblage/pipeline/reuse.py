"""Build reuse: which finished build a new build of a later run may take its result from.

A build is reused when an earlier build had the same key (every input that can change the result,
:func:`build_key`) and ended in a way the same inputs give again (:func:`reusable`): a success, no
binaries, or a failure whose reason is deterministic (``models.REUSABLE_FAILURES``). A reused build
points at the build that did the work (``builds.reused_from_id``), whose binaries it shares.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from assemblage.db import models as m
from assemblage.pipeline.plan import RunPlan
from assemblage.recipes.models import BuildOptions

__all__ = ["build_key", "reusable", "toolchain_identity"]

_IDENTITY_TTL = 60.0
_identities: dict[tuple, tuple[float, dict[str, Any]]] = {}
_identities_lock = threading.Lock()


def build_key(
    *,
    label: str,
    pin: str | None,
    config: str,
    flags: list[str],
    options: RunPlan,
    source_date_epoch: int | None = None,
    toolchain: dict[str, Any] | None = None,
) -> str:
    """The reuse key of a build: every input that can change its result.

    The source's content (label and pin), the configuration, the flags, the outputs asked for, the
    build options (runner, image, and the limits: a failure under ``memory: 16MiB`` says nothing about
    ``memory: 4GiB``; sizes compared in bytes, so ``4GiB`` and ``4096MiB`` are one key) and the
    ``SOURCE_DATE_EPOCH`` the build gets, and the toolchain it would compile with here
    (:func:`toolchain_identity`: an upgraded compiler or another image builds again).
    Schema 2: keys of schema 1 (no options) never match again.
    """
    b, limits = options.build, options.limits()
    doc = {
        "label": label,
        "pin": pin,
        "config": config,
        "flags": flags,
        "outputs": options.outputs.model_dump(mode="json"),
        "build": {
            "runner": b.runner,
            "image": b.image,
            "timeout": limits.timeout,
            "memory": limits.memory,
            "processes": limits.processes,
            "disk": limits.file_size,
            "jobs_per_build": b.jobs_per_build,
        },
        "source_date_epoch": source_date_epoch,
        "toolchain": toolchain,
        "schema": 2,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def reusable(s: Session, key: str, build_id: int) -> m.Build | None:
    """The earliest finished build with ``key`` whose outcome the same inputs give again (or None)."""
    return s.scalar(
        select(m.Build)
        .where(
            m.Build.key == key,
            m.Build.id != build_id,
            m.Build.status.in_(m.REUSABLE_STATUSES),
            or_(m.Build.status != "failed", m.Build.reason.in_(m.REUSABLE_FAILURES)),
        )
        .order_by(m.Build.id)
        .limit(1)
    )


def toolchain_identity(config: str, flags: list[str], build: BuildOptions) -> dict[str, Any]:
    """The toolchain a build of ``config`` would use on this machine, found without running anything.

    The local runner: each command of the configuration's compiler set (compilers, ``ar``,
    ``strip``...) as the host's PATH resolves it, with the size and modification time of the file
    it points at (a package upgrade changes them; the same package version installed on two
    machines has the same ones, as dpkg keeps the files' times). The docker runner: the image's
    id (the digest of its configuration). Cached for a minute per process. When it cannot be
    told (no docker daemon, an unknown toolchain), a marker that matches only itself.
    """
    runner, image = build.runner, build.image
    cache_key = (config, tuple(flags), runner, image, os.environ.get("PATH"))
    now = time.monotonic()
    with _identities_lock:
        hit = _identities.get(cache_key)
        if hit and now - hit[0] < _IDENTITY_TTL:
            return hit[1]
    identity = _identity(config, flags, runner, image)
    with _identities_lock:
        _identities[cache_key] = (now, identity)
    return identity


def _identity(config: str, flags: list[str], runner: str, image: str | None) -> dict[str, Any]:
    from assemblage.recipes.matrix import Config
    from assemblage.toolchains.registry import get_toolchain

    try:
        cfg = Config.parse(config)
        tc = get_toolchain(cfg.toolchain)
        if tc.remote_only:
            return {"remote": tc.name}
        if runner == "docker":
            from assemblage.builds.docker_runner import DEFAULT_IMAGE, _image_ref

            return {"image": _image_ref(image or DEFAULT_IMAGE)["id"]}
        compilers = tc.compilers(cfg.platform, cfg.arch, cfg.opt, tuple(flags))
        found: dict[str, Any] = {}
        for command in compilers.commands():
            path = shutil.which(command)
            if path is None:
                found[command] = None
                continue
            real = os.path.realpath(path)
            st = os.stat(real)
            found[command] = [real, st.st_size, int(st.st_mtime)]
        return {"commands": found}
    except Exception as exc:  # noqa: BLE001 - a build that cannot be told apart is built, never reused wrongly
        return {"unknown": f"{type(exc).__name__}"}
