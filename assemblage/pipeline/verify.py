"""``assemblage verify DIR``: rebuild a seeded sample of a run's builds from its lock and compare every binary.

The sample is drawn from the run's succeeded builds that left binaries,
sorted by (source position, configuration), with ``random.Random(seed)``, so
the same ``--sample N --seed S`` picks the same builds on every machine. The
builds are rebuilt by :func:`~assemblage.pipeline.rebuild.rebuild` into a
scratch dataset (removed afterwards), fetching from the dataset's own source
cache; drift refuses as it does for ``rebuild``.

Every binary of a sampled build is compared by sha256 with the rebuilt one of
the same path; so is its PDB. Each difference is explained section by
section (:mod:`assemblage.binaries.diff`) and stored in the dataset
(``verifications``, ``verification_differences``) with the counts.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from assemblage.binaries.diff import CAUSES, DERIVED_CAUSES, FileDiff, compare_files
from assemblage.db import models as m
from assemblage.db.session import session_scope
from assemblage.pipeline.embedded import Dataset, Progress
from assemblage.pipeline.lock import LockedBuild, lock_for_run, lock_sha256
from assemblage.pipeline.rebuild import Drift, rebuild
from assemblage.storage.base import ObjectStore, blob_key
from assemblage.storage.local import LocalStore

__all__ = ["Difference", "VerifyReport", "sample_builds", "verify_run"]


@dataclass
class Difference:
    source: str
    config: str
    relpath: str
    kind: str  # binary | pdb
    status: str  # differs | missing | extra
    original: str | None
    rebuilt: str | None
    build_id: int
    binary_id: int | None = None
    sections: list[dict] = field(default_factory=list)
    causes: list[str] = field(default_factory=list)
    message: str | None = None

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "config": self.config,
            "relpath": self.relpath,
            "kind": self.kind,
            "status": self.status,
            "original_sha256": self.original,
            "rebuilt_sha256": self.rebuilt,
            "build_id": self.build_id,
            "binary_id": self.binary_id,
            "causes": self.causes,
            "sections": self.sections,
            "message": self.message,
        }


@dataclass
class VerifyReport:
    verification_id: int
    run_id: int
    sample: int | None
    seed: int
    builds: int
    compared: int
    identical: int
    differences: list[Difference]
    drift: list[Drift]

    @property
    def share(self) -> float:
        return 100.0 * self.identical / self.compared if self.compared else 100.0

    def share_text(self) -> str:
        pct = self.share
        if self.identical < self.compared and pct >= 99.95:
            return "99.9%"  # never round a difference away
        return f"{pct:.1f}%"

    def to_dict(self) -> dict:
        return {
            "verification": self.verification_id,
            "run": self.run_id,
            "sample": self.sample,
            "seed": self.seed,
            "builds": self.builds,
            "compared": self.compared,
            "identical": self.identical,
            "share": round(self.share, 3),
            "drift": [d.to_dict() for d in self.drift],
            "differences": [d.to_dict() for d in self.differences],
        }


def sample_builds(builds: list[LockedBuild], sample: int | None, seed: int) -> list[LockedBuild]:
    """The builds ``verify`` rebuilds: succeeded ones with binaries, ``sample`` of them drawn with ``seed``."""
    candidates = sorted(
        (b for b in builds if b.status == "succeeded" and b.binaries), key=lambda b: (b.source, b.config)
    )
    if sample is None or sample >= len(candidates):
        return candidates
    picked = random.Random(seed).sample(candidates, sample)
    return sorted(picked, key=lambda b: (b.source, b.config))


def _explain(diff: FileDiff) -> tuple[list[dict], list[str]]:
    sections = [
        {"name": s.name, "cause": s.cause, "detail": s.detail, "size": [s.size_a, s.size_b]} for s in diff.sections
    ]
    return sections, diff.causes


def _local(store: ObjectStore) -> LocalStore:
    assert isinstance(store, LocalStore)  # a dataset folder's store (open_dataset)
    return store


def verify_run(
    dataset: Dataset,
    *,
    run_id: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    jobs: int = 1,
    allow_drift: bool = False,
    progress: Progress | None = None,
    base: Path | None = None,
    work_root: Path | None = None,
    keep: bool = False,
) -> VerifyReport:
    """Rebuild a sample of the run's builds and compare; stores and returns the report."""
    ctx = dataset.context
    with ctx.sessions() as s:
        lock = lock_for_run(s, run_id)
        run_id = lock.run.id
        ids = _ids(s, run_id)
    chosen = sample_builds(lock.builds, sample, seed)
    labels = {src.position: src.label for src in lock.sources}
    scratch = Path(tempfile.mkdtemp(prefix="asm-verify-", dir=work_root))
    try:
        result = rebuild(
            lock,
            scratch / "dataset",
            base=base,
            allow_drift=allow_drift,
            jobs=jobs,
            progress=progress,
            cache_dir=dataset.root / "sources",
            only={(b.source, b.config) for b in chosen},
            work_root=work_root,
        )
        with result.dataset.context.sessions() as s:
            again = {(b.source, b.config): b for b in lock_for_run(s, result.run_id).builds}
        compared = identical = 0
        differences: list[Difference] = []
        for b in chosen:
            build_id, binary_ids = ids[(b.source, b.config)]
            redo = again.get((b.source, b.config))
            rebuilt = {x.relpath: x for x in redo.binaries} if redo else {}
            for orig in b.binaries:
                compared += 1
                new = rebuilt.get(orig.relpath)
                common: dict[str, Any] = dict(
                    source=labels.get(b.source, str(b.source)),
                    config=b.config,
                    relpath=orig.relpath,
                    build_id=build_id,
                    binary_id=binary_ids.get(orig.relpath),
                )
                if new is None:
                    why = (
                        f"the rebuild {redo.status}" + (f" ({redo.reason})" if redo and redo.reason else "")
                        if redo
                        else "the rebuild did not run"
                    )
                    differences.append(
                        Difference(
                            kind="binary",
                            status="missing",
                            original=orig.sha256,
                            rebuilt=None,
                            causes=["rebuild_failed"],
                            message=f"{why}; no {orig.relpath}",
                            **common,
                        )
                    )
                    continue
                if new.sha256 == orig.sha256:
                    identical += 1
                else:
                    diff = compare_files(
                        _local(ctx.store).local_path(blob_key(orig.sha256)),
                        _local(result.dataset.context.store).local_path(blob_key(new.sha256)),
                    )
                    sections, causes = _explain(diff)
                    differences.append(
                        Difference(
                            kind="binary",
                            status="differs",
                            original=orig.sha256,
                            rebuilt=new.sha256,
                            sections=sections,
                            causes=causes,
                            **common,
                        )
                    )
                if orig.pdb_sha256 and new.pdb_sha256 != orig.pdb_sha256:
                    if new.pdb_sha256:
                        diff = compare_files(
                            _local(ctx.store).local_path(blob_key(orig.pdb_sha256)),
                            _local(result.dataset.context.store).local_path(blob_key(new.pdb_sha256)),
                        )
                        sections, causes = _explain(diff)
                    else:
                        sections, causes = [], ["rebuild_failed"]
                    differences.append(
                        Difference(
                            kind="pdb",
                            status="differs",
                            original=orig.pdb_sha256,
                            rebuilt=new.pdb_sha256,
                            sections=sections,
                            causes=causes,
                            **common,
                        )
                    )
            for extra in sorted(set(rebuilt) - {x.relpath for x in b.binaries}):
                differences.append(
                    Difference(
                        kind="binary",
                        status="extra",
                        original=None,
                        rebuilt=rebuilt[extra].sha256,
                        message="only in the rebuild",
                        source=labels.get(b.source, str(b.source)),
                        config=b.config,
                        relpath=extra,
                        build_id=build_id,
                        causes=["unknown"],
                    )
                )
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)
    report = VerifyReport(
        verification_id=0,
        run_id=run_id,
        sample=sample,
        seed=seed,
        builds=len(chosen),
        compared=compared,
        identical=identical,
        differences=differences,
        drift=result.drift,
    )
    report.verification_id = _store(ctx, report, lock_sha256(lock))
    return report


def _ids(s, run_id: int) -> dict[tuple[int, str], tuple[int, dict[str, int]]]:
    """(source position, configuration) -> (build id, {relpath: binary id}) for the run's builds."""
    rows = s.execute(
        select(m.Build.id, m.Build.reused_from_id, m.Source.position, m.Configuration.identifier)
        .join(m.Source, m.Build.source_id == m.Source.id)
        .join(m.Configuration, m.Build.configuration_id == m.Configuration.id)
        .where(m.Build.run_id == run_id)
    ).all()
    out = {}
    for bid, origin, pos, config in rows:
        binaries = dict(
            s.execute(select(m.Binary.relpath, m.Binary.id).where(m.Binary.build_id == (origin or bid))).all()
        )
        out[(pos, config)] = (bid, binaries)
    return out


def _store(ctx, report: VerifyReport, digest: str) -> int:
    with session_scope(ctx.sessions) as s:
        v = m.Verification(
            run_id=report.run_id,
            lock_sha256=digest,
            sample=report.sample,
            seed=report.seed,
            builds=report.builds,
            compared=report.compared,
            identical=report.identical,
            drift=[d.to_dict() for d in report.drift],
            finished_at=m.utcnow(),
        )
        s.add(v)
        s.flush()
        for d in report.differences:
            s.add(
                m.VerificationDifference(
                    verification_id=v.id,
                    build_id=d.build_id,
                    binary_id=d.binary_id,
                    source=d.source,
                    config=d.config,
                    relpath=d.relpath,
                    kind=d.kind,
                    status=d.status,
                    original_sha256=d.original,
                    rebuilt_sha256=d.rebuilt,
                    causes=d.causes,
                    sections=d.sections,
                    message=d.message,
                )
            )
        return v.id


def describe_cause(cause: str) -> str:
    """A cause's meaning, for summaries."""
    if cause == "rebuild_failed":
        return "the rebuild did not produce it"
    text = CAUSES.get(cause, cause)
    return f"{text} (follows)" if cause in DERIVED_CAUSES else text
