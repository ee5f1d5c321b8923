"""A run's lock: everything needed to rebuild its binaries bit for bit, as one versioned JSON document.

``assemblage lock DIR`` and ``GET /api/v1/runs/{id}/lock`` print it;
``assemblage rebuild LOCK`` and ``assemblage verify`` read it back through
:func:`parse_lock`, so a lock that does not validate is refused with every
problem and its place (:class:`~assemblage.errors.LockError`, exit 2).

What it holds (:class:`Lock`):

* ``recipe``: the recipe's text and sha256, and the options in force;
* ``sources``: each source as the recipe names it, its pin (git commit,
  archive sha256, Debian version, ``tree:`` hash of a local folder), the
  *pinned* entry that rebuild fetches (never the floating ref), and the
  ``SOURCE_DATE_EPOCH`` its builds got;
* ``toolchains``: every toolchain as probed where it ran (compiler
  ``--version`` lines, Debian package versions, the image and its digest for
  docker builds); builds refer to them by index;
* ``builds``: per source x configuration, the status, the build system, the
  settings that reached the build (variables, flags, umask, build path,
  runner, limits, dependency images) and the sha256 of every binary and PDB.

A lock is shown to read tokens (``GET /runs/{id}/lock``) and published with
datasets, so it carries no credentials: URLs in the recipe text and the
sources' entries are redacted (``https://***@host/...``, see
:func:`assemblage.urls.redact`; the sha256 is the submitted recipe's). A rebuild
of a source that needed credentials needs them again (a git credential helper,
or the URL edited in the lock).

Two locks of the same recipe built the same way are equal except in ``run``
(the run's id, its dates and the folder relative paths started from), which
:func:`comparable` drops: the embedded mode and the service produce the same
lock for the same recipe on the same toolchains (tests/integration/test_repro_service.py).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from assemblage.builds.reproducible import BuildEnvironment, BuildSettings, ToolchainInfo
from assemblage.db import models as m
from assemblage.errors import LockError
from assemblage.urls import redact, redact_document

__all__ = [
    "LOCK_VERSION",
    "Lock",
    "LockedBinary",
    "LockedBuild",
    "LockedSource",
    "comparable",
    "lock_for_run",
    "lock_json",
    "lock_sha256",
    "parse_lock",
]

LOCK_VERSION: Final = 1


def _assemblage_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("assemblage")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree without installing
        return "unknown"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LockedRun(_Model):
    """Where and when the run was made: the part of a lock that differs between two equal runs."""

    id: int
    status: str
    created_at: datetime | None = None
    finished_at: datetime | None = None
    base: str | None = None  # the folder relative paths of the recipe started from


class LockedRecipe(_Model):
    name: str
    sha256: str
    text: str
    options: dict[str, Any]  # build, outputs, flags in force


class LockedSource(_Model):
    position: int
    label: str
    kind: str
    name: str
    status: str  # fetched | failed | pending
    spec: dict[str, Any]  # the recipe's entry
    pinned: dict[str, Any] | None = None  # the entry with its pin filled in: what rebuild fetches
    pin: str | None = None  # commit SHA, archive sha256, tree:<sha256>
    commit: str | None = None
    sha256: str | None = None
    version: str | None = None  # Debian version, or the git tag at the commit
    source_date_epoch: int | None = None


class LockedBinary(_Model):
    relpath: str
    sha256: str
    size: int
    format: str
    pdb_sha256: str | None = None


class LockedBuild(_Model):
    source: int  # the source's position
    config: str

    @field_validator("config")
    @classmethod
    def _config(cls, v: str) -> str:
        from assemblage.recipes.matrix import Config
        from assemblage.toolchains.registry import TOOLCHAINS

        if Config.parse(v).toolchain not in TOOLCHAINS:  # ValueError: not an identifier
            raise ValueError(f"unknown toolchain in {v!r}")
        return v

    flags_requested: list[str] = Field(default_factory=list)
    status: str
    reason: str | None = None
    build_system: str | None = None
    toolchain: int | None = None  # index into Lock.toolchains
    settings: BuildSettings | None = None  # None: the build never ran (skipped before starting)
    binaries: list[LockedBinary] = Field(default_factory=list)


class Lock(_Model):
    lock_version: Literal[1] = LOCK_VERSION
    assemblage: str
    run: LockedRun
    recipe: LockedRecipe
    sources: list[LockedSource]
    toolchains: list[ToolchainInfo]
    builds: list[LockedBuild]

    def source(self, position: int) -> LockedSource:
        for src in self.sources:
            if src.position == position:
                return src
        raise LockError(f"the lock names no source at position {position}")


def _settings(env: dict[str, Any] | None) -> tuple[BuildSettings | None, ToolchainInfo | None]:
    if not env:
        return None, None
    full = BuildEnvironment.model_validate(env)
    return full.settings(), full.toolchain


def lock_for_run(s: Session, run_id: int | None = None) -> Lock:
    """The lock of run ``run_id`` (the latest run when None). :class:`LookupError` when there is none."""
    if run_id is None:
        run_id = s.scalar(select(m.Run.id).order_by(m.Run.id.desc()).limit(1))
        if run_id is None:
            raise LookupError("the dataset has no run")
    run = s.get(m.Run, run_id)
    if run is None:
        raise LookupError(f"no run {run_id}")
    options = {k: v for k, v in (run.options or {}).items() if k != "base"}
    sources = list(s.scalars(select(m.Source).where(m.Source.run_id == run_id).order_by(m.Source.position)))
    positions = {src.id: src.position for src in sources}
    locked_sources = [
        LockedSource(
            position=src.position,
            label=src.label,
            kind=src.kind,
            name=src.name,
            status=src.status,
            spec=redact_document(src.spec),
            pinned=redact_document(src.pinned_spec),
            pin=src.pin,
            commit=src.commit,
            sha256=src.sha256,
            version=src.version,
            source_date_epoch=src.source_date_epoch,
        )
        for src in sources
    ]
    rows = s.execute(
        select(m.Build, m.Configuration.identifier)
        .join(m.Configuration, m.Build.configuration_id == m.Configuration.id)
        .where(m.Build.run_id == run_id)
    ).all()
    origin_ids = {b.reused_from_id or b.id for b, _ in rows}
    binaries: dict[int, list[LockedBinary]] = {}
    if origin_ids:
        pdbs = dict(
            s.execute(
                select(m.Pdb.binary_id, m.Pdb.hash)
                .join(m.Binary, m.Pdb.binary_id == m.Binary.id)
                .where(m.Binary.build_id.in_(origin_ids))
            ).all()
        )
        for x in s.scalars(select(m.Binary).where(m.Binary.build_id.in_(origin_ids))):
            binaries.setdefault(x.build_id, []).append(
                LockedBinary(relpath=x.relpath, sha256=x.hash, size=x.size, format=x.format, pdb_sha256=pdbs.get(x.id))
            )
    toolchains: list[ToolchainInfo] = []
    index: dict[str, int] = {}
    builds = []
    for b, config in rows:
        settings, toolchain = _settings(b.environment)
        tc_index = None
        if toolchain is not None:
            key = toolchain.model_dump_json()
            if key not in index:
                index[key] = len(toolchains)
                toolchains.append(toolchain)
            tc_index = index[key]
        builds.append(
            LockedBuild(
                source=positions[b.source_id],
                config=config,
                flags_requested=list(b.flags_requested or []),
                status=b.status,
                reason=b.reason,
                build_system=b.build_system,
                toolchain=tc_index,
                settings=settings,
                binaries=sorted(binaries.get(b.reused_from_id or b.id, []), key=lambda x: x.relpath),
            )
        )
    builds.sort(key=lambda x: (x.source, x.config))
    # toolchains in a stable order (by first use), so equal runs give equal documents
    order = sorted(
        range(len(toolchains)),
        key=lambda i: (
            toolchains[i].toolchain,
            toolchains[i].platform,
            toolchains[i].arch,
            toolchains[i].model_dump_json(),
        ),
    )
    renumber = {old: new for new, old in enumerate(order)}
    builds = [
        b.model_copy(update={"toolchain": renumber[b.toolchain]}) if b.toolchain is not None else b for b in builds
    ]
    return Lock(
        assemblage=_assemblage_version(),
        run=LockedRun(
            id=run.id,
            status=run.status,
            created_at=run.created_at,
            finished_at=run.finished_at,
            base=(run.options or {}).get("base"),
        ),
        recipe=LockedRecipe(
            name=run.recipe.name, sha256=run.recipe.sha256, text=redact(run.recipe.text), options=options
        ),
        sources=locked_sources,
        toolchains=[toolchains[i] for i in order],
        builds=builds,
    )


def lock_json(lock: Lock) -> str:
    """The lock as the text `assemblage lock` prints (stable key order, two-space indent)."""
    return json.dumps(lock.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"


def lock_sha256(lock: Lock) -> str:
    """A digest of what a lock pins (``run`` left out: two equal runs have equal digests)."""
    return hashlib.sha256(json.dumps(comparable(lock), sort_keys=True).encode()).hexdigest()


def comparable(lock: Lock) -> dict[str, Any]:
    """The lock without the fields that legitimately differ between two runs of one recipe (``run``)."""
    return lock.model_dump(mode="json", exclude={"run"})


def parse_lock(text: str | bytes, *, where: str = "lock") -> Lock:
    """Read a lock; every problem with its place, as a :class:`LockError`."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LockError(f"{where}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise LockError(f"{where}: a lock is a JSON object, not {type(data).__name__}")
    version = data.get("lock_version")
    if version != LOCK_VERSION:
        raise LockError(f"{where}: lock_version {version!r} is not one this assemblage reads ({LOCK_VERSION})")
    try:
        return Lock.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"]).lstrip(".")
            problems.append(f"  {loc or '(top)'}: {e['msg']}")
        raise LockError(f"{where}: {len(problems)} problem(s) in the lock\n" + "\n".join(problems)) from None
