"""The service's export job: the same export as ``assemblage export``, packed and put in the object store.

``POST /api/v1/exports`` records an ``exports`` row (pending) and sends the
``assemblage.export`` task, on the ``crawl`` queue: every deployment runs crawl
workers, and an export is the same kind of work as a fetch (database and store
I/O, no compiler), so it needs no new worker. The task claims the row
(``assemblage.tasks.jobs.claim_export``) and calls :func:`run_export_job`:

1. export into a scratch folder (``ASSEMBLAGE_WORK_ROOT`` or the system's
   temporary folder) with :func:`~assemblage.corpus.export.run.export_corpus`,
   reading the service's database and store;
2. pack it into one deterministic ``assemblage-export-<id>.tar.zst``;
3. store it at ``exports/<id>/assemblage-export-<id>.tar.zst`` (S3 checks the
   upload's MD5 and records its sha256);
4. record the key, size, sha256 and the summary (``exports.result``).

Progress (phase, rows or objects done, total when known) is written to the row
as the export goes, at most twice a second and at every phase change, in its own
short transactions, so ``GET /api/v1/exports/{id}`` shows it while the export's
own snapshot transaction is still open. ``GET`` then answers a presigned link to
the archive.

A failure the user can fix (a bad selection, a corrupt object) fails the job with
its message; a transient one (database or S3 unavailable) is raised for the
task to retry; a redelivered task finds the job finished and does nothing.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from assemblage.corpus.request import ExportRequest
from assemblage.db import models as m
from assemblage.db.session import session_scope
from assemblage.errors import AssemblageError
from assemblage.storage import ObjectStore

__all__ = ["create_export", "run_export_job", "RowProgress", "PHASES", "archive_key"]

# the phases in the order an export goes through them (GET /exports/{id} reports step/steps)
PHASES = (
    "queued",
    "select",
    "binaries",
    "functions",
    "rvas",
    "lines",
    "pdbs",
    "pairs",
    "sqlite indexes",
    "parquet",
    "objects",
    "datasheet",
    "manifest",
    "pack",
    "upload",
    "finished",
)


def archive_name(export_id: int) -> str:
    return f"assemblage-export-{export_id}"


def archive_key(export_id: int) -> str:
    return f"exports/{export_id}/{archive_name(export_id)}.tar.zst"


def create_export(sessions: sessionmaker[Session], request: ExportRequest, *, token_id: int | None = None) -> int:
    """Record a pending export (commit before sending its task)."""
    with session_scope(sessions) as s:
        row = m.Export(
            status="pending",
            request=request.model_dump(mode="json"),
            phase="queued",
            done=0,
            phases_done=0,
            attempts=0,
            token_id=token_id,
            updated_at=m.utcnow(),
        )
        s.add(row)
        s.flush()
        return row.id


class RowProgress:
    """An :class:`~assemblage.corpus.export.run.ExportProgress` that writes to the export's row."""

    def __init__(self, sessions: sessionmaker[Session], export_id: int, *, interval: float = 0.5) -> None:
        self.sessions, self.export_id, self.interval = sessions, export_id, interval
        self.name: str | None = None
        self.done = 0
        self.total: int | None = None
        self._written = 0.0

    def phase(self, name: str, total: int | None = None) -> None:
        self.name, self.done, self.total = name, 0, total
        self._write()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if time.monotonic() - self._written >= self.interval:
            self._write()

    def _write(self) -> None:
        with session_scope(self.sessions) as s:
            row = s.get(m.Export, self.export_id)
            if row is None:
                return
            row.phase, row.done, row.total, row.updated_at = self.name, self.done, self.total, m.utcnow()
            if self.name in PHASES:
                row.phases_done = PHASES.index(self.name)
        self._written = time.monotonic()


def run_export_job(
    sessions: sessionmaker[Session],
    store: ObjectStore,
    database_url: str,
    export_id: int,
    *,
    work_root: Path | None = None,
    description: str = "service",
) -> str:
    """Export, pack and store one claimed export; returns its final status (see the module)."""
    from assemblage.corpus.export.files import pack_folder
    from assemblage.corpus.export.run import export_corpus
    from assemblage.corpus.source import Corpus
    from assemblage.storage.s3 import TransientStorageError

    with session_scope(sessions) as s:
        row = s.get(m.Export, export_id)
        if row is None:
            return "missing"
        if row.status in ("finished", "failed"):
            return row.status
        request = ExportRequest.model_validate(row.request)
    progress = RowProgress(sessions, export_id)
    corpus = Corpus(database_url=database_url, store=store, description=description)
    name = archive_name(export_id)
    if work_root is not None:
        Path(work_root).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"asm-export-{export_id}-", dir=work_root) as tmp:
        try:
            summary = export_corpus(corpus, request, Path(tmp) / name, progress=progress)
            progress.phase("pack")
            archive = Path(tmp) / f"{name}.tar.zst"
            sha = pack_folder(Path(tmp) / name, archive, prefix=name)
            progress.phase("upload", 1)
            key = archive_key(export_id)
            store.store(key, archive, meta={"content-type": "application/zstd", "sha256": sha})
            size = archive.stat().st_size
        except TransientStorageError:
            raise  # the task retries it
        except AssemblageError as exc:
            _finish(sessions, export_id, status="failed", error=str(exc))
            return "failed"
    _finish(
        sessions,
        export_id,
        status="finished",
        key=key,
        size=size,
        sha256=sha,
        result=summary.model_dump(mode="json"),
        phase="finished",
        phases_done=PHASES.index("finished"),
        done=1,
        total=1,
    )
    return "finished"


def _finish(sessions: sessionmaker[Session], export_id: int, **fields) -> None:
    with session_scope(sessions) as s:
        row = s.get(m.Export, export_id, with_for_update=True)
        if row is None or row.status in ("finished", "failed"):
            return
        for k, v in fields.items():
            setattr(row, k, v)
        row.finished_at = row.updated_at = m.utcnow()
