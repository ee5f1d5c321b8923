"""A table's Parquet files written from the corpus itself, in a process of its own, while the export copies.

An export of a whole embedded dataset spends most of its time on one table,
``lines`` (bench/export.py: 1.8 million rows; copying them into
``dataset.sqlite`` with their index is a second of CPU, reading them back into
Parquet another one and a half). Both cores work when the Parquet files are
written *beside* the copy rather than after it, straight from the corpus: this
module's :class:`Helper` starts ``python -m assemblage.corpus.export.helper``,
which reads the table from the corpus with the ADBC driver and writes the
same files the export would have written from ``dataset.sqlite``.

Why a process and not a thread: the ADBC driver carries a SQLite library of
its own, and two SQLite libraries in one process drop each other's POSIX locks
on a file when either closes it. On the export's own file that is harmless
(nothing writes it once sealed); on the corpus, which builds may be writing,
it is not. A process has locks of its own, and it costs no GIL either.

Why the files are the same rows: the export keeps ``lines`` whole only when
every function is exported and the corpus's table has the export's columns,
with the same type affinities, and no row naming a missing function (then it
copies the table record by record, rowids and all). The helper reads the rows
in rowid order in **one** query, which SQLite answers from one snapshot. That
snapshot equals the export's when no writer committed between the two: the
export reads ``PRAGMA data_version`` on a connection of its own before its
snapshot begins (:class:`Watch`) and again as soon as the helper says
its query has begun; the same value means nothing was committed in between.
Any doubt (a commit in between, a table not kept whole, a helper that failed
or counted other rows) and its files are thrown away: the export writes the
table from ``dataset.sqlite`` as it would have without it, and logs why.

The helper reads one JSON line, the job, on its standard input, writes JSON
lines (``{"began": true}``, then ``{"rows": N, "files": [[name, sha256],
...]}``) on its standard output, and exits when its standard input closes
(the export ended or died) before it is done.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["Helper", "Watch", "affinity", "same_columns"]

log = logging.getLogger(__name__)
# the helper's command line (a test may name another program, to see the export do without it)
COMMAND = [sys.executable, "-m", __name__]


class Watch:
    """``PRAGMA data_version`` of the corpus on a connection of its own: opened before the export's snapshot
    begins, it tells whether another connection committed since (:meth:`changed`)."""

    def __init__(self, database: Path) -> None:
        self._db = sqlite3.connect(f"file:{quote(str(database))}?mode=ro", uri=True, check_same_thread=False)
        self._before = self._version()

    def _version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def changed(self) -> bool:
        return self._version() != self._before

    def close(self) -> None:
        self._db.close()


class Helper:
    """One table written by a helper process (see the module); :meth:`result` says whether to keep it."""

    def __init__(self, database: Path, watch: Watch, job: dict[str, Any]) -> None:
        """``watch``: opened before the export's snapshot began (its first read)."""
        self.table = job["table"]
        self.folder = Path(job["folder"])
        self._watch = watch
        self._same: bool | None = None
        self._done: dict[str, Any] | None = None
        self.why = ""
        self._stderr = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen(
                COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True
            )
        except BaseException:
            self._stderr.close()
            watch.close()
            raise
        assert self._proc.stdin is not None  # PIPE
        self._proc.stdin.write(json.dumps({**job, "database": str(database)}) + "\n")
        self._proc.stdin.flush()  # left open: the helper exits when it closes
        self._reader = threading.Thread(target=self._read, name=f"export-helper-{self.table}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("began"):  # its snapshot is taken: was anything committed since ours began?
                self._same = not self._watch.changed()
            elif "rows" in message:
                self._done = message

    def cancel(self, why: str) -> None:
        """Not needed (the table is not kept whole): stop it, its files are not used."""
        if not self.why:
            self.why = why
        self._stop()

    def _stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._reader.join()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                pipe.close()
        self._stderr.close()
        self._watch.close()

    def result(self, rows: int) -> list[tuple[Path, str]] | None:
        """The files (path, sha256) when they hold the ``rows`` rows of the export's snapshot, else None
        (``why`` says why; the folder is then emptied for the export to write the table itself)."""
        if not self.why:
            code = self._proc.wait()  # its standard input stays open until then: closed, it would stop
            self._reader.join()
            self._stderr.seek(0)
            stderr = self._stderr.read().decode("utf-8", "replace")
            if code != 0:
                tail = stderr.strip()[-2000:]
                self.why = f"the helper exited {code}" + (f": {tail}" if tail else "")
            elif self._same is not True:
                self.why = "the corpus changed between the two snapshots"
            elif self._done is None or self._done["rows"] != rows:
                got = None if self._done is None else self._done["rows"]
                self.why = f"the helper wrote {got} rows, the export has {rows}"
        self._stop()
        if self.why:
            log.info("%s: written from dataset.sqlite after all (%s)", self.table, self.why)
            for path in self.folder.glob("*.parquet"):
                path.unlink()
            return None
        assert self._done is not None
        log.info("%s: written from the corpus by the helper process, beside the copy", self.table)
        return [(self.folder / name, sha) for name, sha in self._done["files"]]


# ------------------------------------------------------------------ the helper process


def _exit_when_orphaned() -> None:
    """Exit as soon as standard input closes (the export is done with us, or is gone)."""
    sys.stdin.read()
    os._exit(3)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main() -> None:
    line = sys.stdin.readline()
    if not line.strip():
        raise SystemExit(f"python -m {__name__} reads its job, one JSON line, on standard input (the export sends it)")
    job = json.loads(line)
    threading.Thread(target=_exit_when_orphaned, daemon=True).start()
    import pyarrow as pa

    from assemblage.corpus.export.parquet import TableWriter, arrow_type, sqlite_to_parquet

    cols = job["columns"]
    schema = pa.schema([pa.field(c["name"], arrow_type(c["kind"]), nullable=c["nullable"]) for c in cols])
    files: list[Path] = []
    writer = TableWriter(Path(job["folder"]), schema, rows_per_file=job["rows_per_file"], on_file=files.append)
    began = False

    def progress(n: int) -> None:
        nonlocal began
        if not began:  # the query has stepped: its snapshot is the one every row comes from
            began = True
            print(json.dumps({"began": True}), flush=True)

    rows = sqlite_to_parquet(
        Path(job["database"]),
        [(f't."{c["name"]}"', c["name"]) for c in cols],
        schema,
        f'FROM "{job["table"]}" t ORDER BY t.rowid',
        writer,
        text_columns=frozenset(c["name"] for c in cols if c["text"]),
        progress=progress,
        read_only=True,
    )
    writer.close()
    progress(0)
    print(json.dumps({"rows": rows, "files": [[p.name, _sha256(p)] for p in files]}), flush=True)


def affinity(declared: str) -> str:
    """SQLite's type affinity of a declared column type (its documented rules, in order)."""
    t = declared.upper()
    if "INT" in t:
        return "INTEGER"
    if any(x in t for x in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if not t or "BLOB" in t:
        return "BLOB"
    if any(x in t for x in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def same_columns(db: Any, table: str, schema_a: str, schema_b: str) -> bool:
    """Whether ``schema_a.table`` and ``schema_b.table`` have the same columns, in order, of the same affinity."""

    def cols(schema: str) -> list[tuple[str, str]]:
        return [(r[1], affinity(r[2])) for r in db.execute(f'PRAGMA {schema}.table_info("{table}")')]

    return cols(schema_a) == cols(schema_b)


if __name__ == "__main__":
    main()
