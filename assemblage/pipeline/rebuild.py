"""``assemblage rebuild LOCK --out DIR``: exactly the builds a lock pins, on this machine, in a new dataset.

Before anything is built, :func:`check_drift` compares the lock with what this
machine would use:

* every source is fetched from its *pinned* entry (the commit, not the
  branch; the archive's sha256; the Debian version) and its pin recomputed
  (a local folder's tree hash must match);
* every toolchain is probed where the build would run (the host, or the
  docker image) and compared: each compiler's ``--version`` line, each Debian
  package version, the image id (its content digest);
* the configuration's flags, the wrapper's reproducibility flags and the
  reproducibility variables are recomputed and compared, and so is whether
  the build runs in the sandbox (the fixed ``/build`` path).

Any difference refuses the rebuild (:class:`~assemblage.errors.DriftError`,
exit 11) with the list, unless ``allow_drift``: then the rebuild goes ahead and
the differences are recorded on the new run (``runs.lock_origin``), next to
the lock's digest and the run it came from. The new run's sources keep the
lock's ``SOURCE_DATE_EPOCH``; its builds are the lock's (source x
configuration), nothing more.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import TypeAdapter

from assemblage.builds.engine import BuildRequest, make_runner
from assemblage.builds.reproducible import (
    FIXED_PREFIX,
    ToolchainInfo,
    probe_toolchain,
    repro_env,
    repro_flags,
)
from assemblage.db import models as m
from assemblage.db.session import session_scope
from assemblage.errors import AssemblageError, DriftError, LockError
from assemblage.pipeline.embedded import Dataset, Progress, execute_run, open_dataset
from assemblage.pipeline.lock import Lock, LockedBuild, lock_sha256
from assemblage.recipes.matrix import Config
from assemblage.recipes.models import SourceSpec
from assemblage.toolchains.registry import get_toolchain

__all__ = ["Drift", "RebuildResult", "check_drift", "rebuild"]


@dataclass(frozen=True)
class Drift:
    """One way this machine differs from the lock."""

    what: str
    locked: str | None
    here: str | None

    def __str__(self) -> str:
        return f"{self.what}: locked {self.locked!r}, here {self.here!r}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RebuildResult:
    dataset: Dataset
    run_id: int
    drift: list[Drift]


def _source_drift(lock: Lock, positions: set[int], base: Path, cache: Path) -> list[Drift]:
    from assemblage.sources import fetch_source, source_pin

    out = []
    for src in lock.sources:
        if src.position not in positions or not src.pinned:
            continue
        what = f"source {src.label} (sources[{src.position}])"
        try:
            spec = TypeAdapter(SourceSpec).validate_python(src.pinned)
            pin = source_pin(fetch_source(spec, base=base, cache=cache))
        except AssemblageError as exc:
            out.append(Drift(what, src.pin, f"unavailable: {exc}"))
            continue
        except ValueError as exc:  # pydantic's ValidationError
            raise LockError(f"lock: sources[{src.position}].pinned is not a source entry: {exc}") from None
        if pin != src.pin:
            out.append(Drift(what, src.pin, pin))
    return out


def _compare_toolchain(locked: ToolchainInfo, here: ToolchainInfo) -> list[Drift]:
    where = f"toolchain {locked.toolchain} ({locked.platform}-{locked.arch}, {locked.runner})"
    out = []
    if (locked.image and locked.image.id) != (here.image and here.image.id):
        out.append(
            Drift(
                f"{where}: image {locked.image.name if locked.image else ''} id",
                locked.image.id if locked.image else None,
                here.image.id if here.image else None,
            )
        )
    here_tools = {t.command: t for t in here.tools}
    for t in locked.tools:
        h = here_tools.get(t.command)
        if h is None or h.version != t.version:
            out.append(Drift(f"{where}: {t.command} --version", t.version, h.version if h else None))
    for pkg in sorted(set(locked.packages) | set(here.packages)):
        a, b = locked.packages.get(pkg), here.packages.get(pkg)
        if a != b and pkg in locked.packages:
            out.append(Drift(f"{where}: Debian package {pkg}", a, b))
    return out


def _request(build: LockedBuild, lock: Lock) -> BuildRequest:
    settings = build.settings
    from assemblage.pipeline.plan import RunPlan

    options = RunPlan.model_validate(lock.recipe.options).build
    runner = settings.runner if settings else options.runner
    image = settings.image.name if settings and settings.image else options.image
    return BuildRequest(source_dir=Path("."), config=Config.parse(build.config), runner=runner, image=image)


def _dependency_image_drift(builds: list[LockedBuild]) -> list[Drift]:
    """Images a build used besides its own (e.g. build dependencies): each must be here with the same id."""
    out: list[Drift] = []
    seen: set[tuple[str, str | None]] = set()
    for b in builds:
        for dep in b.settings.dependency_images if b.settings else []:
            if (dep.name, dep.id) in seen:
                continue
            seen.add((dep.name, dep.id))
            try:
                here = (
                    make_runner(
                        BuildRequest(
                            source_dir=Path("."), config=Config.parse(b.config), runner="docker", image=dep.name
                        )
                    ).image_ref()
                    or {}
                )
            except AssemblageError as exc:
                out.append(Drift(f"dependency image {dep.name} id", dep.id, f"unavailable: {exc}"))
                continue
            if here.get("id") != dep.id:
                out.append(Drift(f"dependency image {dep.name} id", dep.id, here.get("id")))
    return out


def _toolchain_drift(lock: Lock, builds: list[LockedBuild]) -> list[Drift]:
    out: list[Drift] = _dependency_image_drift(builds)
    probed: dict[int, ToolchainInfo | None] = {}
    flag_checked: set[tuple] = set()
    unrecorded: set[str] = set()
    for b in builds:
        if b.toolchain is None or b.settings is None:
            if b.status in ("succeeded", "failed", "no_binaries") and b.config not in unrecorded:
                unrecorded.add(b.config)  # a run made before builds recorded their environment
                out.append(Drift(f"build {b.config}: toolchain and settings", "not recorded in the lock", None))
            continue
        if not 0 <= b.toolchain < len(lock.toolchains):
            raise LockError(f"lock: a build of {b.config} names toolchain {b.toolchain}, which the lock does not list")
        locked = lock.toolchains[b.toolchain]
        cfg = Config.parse(b.config)
        tc = get_toolchain(cfg.toolchain)
        compilers = tc.compilers(cfg.platform, cfg.arch, cfg.opt, tuple(b.flags_requested))
        try:
            runner = make_runner(_request(b, lock))
        except AssemblageError as exc:
            out.append(Drift(f"runner {b.settings.runner} for {b.config}", b.settings.runner, f"unavailable: {exc}"))
            continue
        if b.toolchain not in probed:
            here = probe_toolchain(runner, tc.name, compilers, tc.packages(cfg.platform, cfg.arch))
            probed[b.toolchain] = here
            out += _compare_toolchain(locked, here)
        s = b.settings
        key = (b.config, tuple(b.flags_requested), s.sandboxed, s.source_date_epoch)
        if key in flag_checked:
            continue
        flag_checked.add(key)
        where = f"build {b.config}"
        if s.sandboxed != runner.sandbox:
            out.append(
                Drift(f"{where}: sandboxed (fixed build path {FIXED_PREFIX})", str(s.sandboxed), str(runner.sandbox))
            )
            continue
        if list(compilers.cflags) != s.cflags:
            out.append(Drift(f"{where}: cflags", " ".join(s.cflags), " ".join(compilers.cflags)))
        if list(compilers.ldflags) != s.ldflags:
            out.append(Drift(f"{where}: ldflags", " ".join(s.ldflags), " ".join(compilers.ldflags)))
        if runner.sandbox:  # the prefix map names the build's own folder otherwise
            flags = list(repro_flags(tc.family, tc.version, compilers, view=FIXED_PREFIX, epoch=s.source_date_epoch))
            if flags != s.wrapper_flags:
                out.append(Drift(f"{where}: wrapper flags", " ".join(s.wrapper_flags), " ".join(flags)))
        for k, v in repro_env(s.source_date_epoch).items():
            if s.env.get(k) != v:
                out.append(Drift(f"{where}: variable {k}", s.env.get(k), v))
    return out


def check_drift(lock: Lock, builds: list[LockedBuild], *, base: Path, cache: Path) -> list[Drift]:
    """Every difference between what ``lock`` pins for ``builds`` and what this machine would use."""
    positions = {b.source for b in builds}
    return _source_drift(lock, positions, base, cache) + _toolchain_drift(lock, builds)


def _base(lock: Lock, base: Path | None) -> Path:
    if base is not None:
        return Path(base).resolve()
    if lock.run.base and Path(lock.run.base).is_dir():
        return Path(lock.run.base)
    return Path.cwd()


def rebuild(
    lock: Lock,
    out: Path,
    *,
    base: Path | None = None,
    allow_drift: bool = False,
    jobs: int = 1,
    progress: Progress | None = None,
    cache_dir: Path | None = None,
    only: set[tuple[int, str]] | None = None,
    work_root: Path | None = None,
) -> RebuildResult:
    """Rebuild the lock's builds (``only`` those (source position, configuration) when given) into ``out``.

    ``out`` must not hold a dataset yet. ``cache_dir`` is where sources are fetched (default
    ``out/sources``); ``base`` where relative paths start (default the lock's, else here).
    """
    out = Path(out).resolve()
    if (out / "dataset.sqlite").exists():
        raise LockError(f"{out} already holds a dataset; rebuild into a new folder")
    builds = [b for b in lock.builds if only is None or (b.source, b.config) in only]
    base = _base(lock, base)
    cache = Path(cache_dir) if cache_dir is not None else out / "sources"
    created = not out.exists()
    drift = check_drift(lock, builds, base=base, cache=cache)
    if drift and not allow_drift:
        if created and out.exists():  # nothing of a refused rebuild stays behind (fetched sources)
            shutil.rmtree(out, ignore_errors=True)
        raise DriftError(drift)
    dataset = open_dataset(out, work_root=work_root)
    if cache_dir is not None:
        dataset = Dataset(root=dataset.root, context=_with_cache(dataset.context, Path(cache_dir)))
    run_id = _create_rows(dataset, lock, builds, base=base, drift=drift, allow_drift=allow_drift)
    execute_run(dataset, run_id, jobs=jobs, progress=progress)
    return RebuildResult(dataset=dataset, run_id=run_id, drift=drift)


def _with_cache(ctx, cache: Path):
    from dataclasses import replace

    return replace(ctx, cache_dir=cache)


def _create_rows(
    dataset: Dataset, lock: Lock, builds: list[LockedBuild], *, base: Path, drift: list[Drift], allow_drift: bool
) -> int:
    positions = {b.source for b in builds}
    with session_scope(dataset.context.sessions) as s:
        rec = m.Recipe(name=lock.recipe.name, text=lock.recipe.text, sha256=lock.recipe.sha256)
        s.add(rec)
        s.flush()
        run = m.Run(
            recipe_id=rec.id,
            status="pending",
            notes=[],
            options={**lock.recipe.options, "base": str(base)},
            lock_origin={
                "lock_sha256": lock_sha256(lock),
                "run": lock.run.id,
                "assemblage": lock.assemblage,
                "allow_drift": allow_drift,
                "drift": [d.to_dict() for d in drift],
            },
        )
        s.add(run)
        s.flush()
        source_ids = {}
        for src in lock.sources:
            if src.position not in positions:
                continue
            row = m.Source(
                run_id=run.id,
                position=src.position,
                spec=src.spec,
                pinned_spec=src.pinned,
                label=src.label,
                kind=src.kind,
                name=src.name,
                source_date_epoch=src.source_date_epoch,
            )
            if not src.pinned:
                row.status, row.error = "failed", "the lock does not pin this source (its fetch had failed)"
            s.add(row)
            s.flush()
            source_ids[src.position] = row
        configs: dict[str, m.Configuration] = {}
        for b in builds:
            cfg = configs.get(b.config) or _config_row(s, b.config)
            configs[b.config] = cfg
            source = source_ids.get(b.source)
            if source is None:
                raise LockError(f"lock: a build names source {b.source}, which the lock does not list")
            build = m.Build(
                run_id=run.id, source_id=source.id, configuration_id=cfg.id, flags_requested=b.flags_requested
            )
            if source.status == "failed":
                build.status, build.reason, build.message = "skipped", "source_unavailable", source.error
                build.finished_at = m.utcnow()
            s.add(build)
        run.expanded = True  # its sources and builds are all here (a rebuild has no crawl)
        return run.id  # pending: execute_run starts it


def _config_row(s, identifier: str) -> m.Configuration:
    from sqlalchemy import select

    row = s.scalar(select(m.Configuration).where(m.Configuration.identifier == identifier))
    if row is None:
        c = Config.parse(identifier)
        row = m.Configuration(identifier=c.id, platform=c.platform, arch=c.arch, toolchain=c.toolchain, opt=c.opt)
        s.add(row)
        s.flush()
    return row
