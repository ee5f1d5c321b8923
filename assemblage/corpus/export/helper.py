"""The export's helper process: Parquet files written beside the copy, ``lines`` straight from the corpus.

An export of a whole embedded dataset spends most of its CPU on one table,
``lines`` (bench/export.py: 1.8 million rows; copying them into
``dataset.sqlite`` with their index is a second of CPU, reading them into
Parquet another one and a half). The export copies in C on one core; the
helper, ``python -m assemblage.corpus.export.helper`` started by
:class:`Helper` as the export begins, works on the other:

1. it reads ``lines`` from the corpus itself (with the C reader of
   :mod:`~assemblage.corpus.export.batches`, the system's SQLite) and writes
   the files the export would have written from ``dataset.sqlite``;
2. once the export's file is sealed, it writes the other Parquet tables from
   that file (:meth:`Helper.submit`), while the export counts duplicates,
   hashes ``dataset.sqlite`` and copies the objects. The export itself then
   never imports pyarrow.

Why a process and not a thread: it works on the other core while the export's
own thread holds the GIL between its copies, and pyarrow is never imported by
the export's process.

Why its ``lines`` are the export's rows: the export keeps ``lines`` whole only
when every function is exported and the corpus's table has the export's
columns, with the same type affinities, and no row naming a missing function
(then it copies the table record by record, rowids and all). The helper reads
the rows in rowid order in **one** query, which SQLite answers from one
snapshot. That snapshot equals the export's when no writer committed between
the two: :class:`Watch` reads ``PRAGMA data_version`` on a connection of its
own before either snapshot begins and again once both have; the same value
means nothing was committed in between. Any doubt (a commit in between, a
table not kept whole, a helper that failed or counted other rows) and its
``lines`` are thrown away: the export writes the table from ``dataset.sqlite``
itself, as it would have without a helper, and logs why (and when the helper
failed, every table it was given too).

The helper is one more process reading a WAL database, as safe as any, on the
condition SQLite sets for every process: that none opens and closes the
database's files behind SQLite's back. POSIX locks belong to a process, and
closing any descriptor of a file drops all of them; a process that copied its
open dataset's files (``shutil.copytree`` of the folder) has lost the locks on
the WAL index that tell the next process to open the dataset it is in use, and
that process (the helper) then re-initialises the index under the first one's
readers: the export's snapshot read an older state of the dataset, or failed
with "database disk image is malformed" (our tests did that once, in about one
run in five, until they copied the dataset through SQLite's backup instead).

Protocol: JSON lines. On its standard input the helper reads the ``lines``
job, then ``{"jobs": [...]}`` (:func:`~assemblage.corpus.export.parquet.write_job`);
on its standard output it says ``{"began": true}`` (its query has stepped),
``{"lines": result}``, then ``{"job": i, "result": ...}`` for each job. When
its standard input closes before it is done (the export ended or died), it
exits.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sqlite3
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

from assemblage._spawn import popen

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
    """The helper process of one export (see the module): ``lines`` from the corpus first (started before
    the export's own snapshot, whose first read it is told of: :meth:`began`), then, once the export's file
    is sealed, the Parquet jobs it is handed (:meth:`submit`); :meth:`finish` says what to keep."""

    def __init__(self, database: Path, watch: Watch, lines_job: dict[str, Any]) -> None:
        """``watch``: opened before the export's snapshot began (its first read)."""
        self.job = lines_job
        self.folder = Path(lines_job["folder"])
        self._watch = watch
        self._same: bool | None = None
        self._unsure = ""  # why the watch could not tell
        self._began: set[str] = set()  # "helper", "export": whose snapshots have begun
        self._lock = threading.Lock()
        self._lines: dict[str, Any] | None = None
        self._results: dict[int, dict[str, Any]] = {}
        self._jobs: int | None = None
        self.why = ""  # why its lines are not kept
        self.failed = ""  # why nothing it wrote is kept
        self._stderr = tempfile.TemporaryFile()
        try:
            self._proc = popen(  # under the spawn lock, as every child of ours (assemblage._spawn)
                COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True
            )
        except BaseException:
            self._stderr.close()
            watch.close()
            raise
        self._send({**lines_job, "database": str(database), "read_only": True})
        self._reader = threading.Thread(target=self._read, name="export-helper", daemon=True)
        self._reader.start()

    def _send(self, message: Any) -> None:
        assert self._proc.stdin is not None  # PIPE, left open: the helper exits when it closes
        try:
            self._proc.stdin.write(json.dumps(message) + "\n")
            self._proc.stdin.flush()
        except OSError:  # it has exited: finish() says why
            pass

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if not isinstance(message, dict):
                continue
            if message.get("began"):
                self.began("helper")
            elif "lines" in message:
                self._lines = message["lines"]
            elif "job" in message:
                self._results[message["job"]] = message["result"]

    def began(self, who: str) -> None:
        """``who``'s snapshot has begun (``export``: its first read; ``helper``: its query's first step). Once
        both have, was anything committed since the watch opened, before either began? If not, they are one."""
        with self._lock:
            self._began.add(who)
            if self._began == {"helper", "export"}:
                try:
                    self._same = not self._watch.changed()
                except sqlite3.Error as exc:  # cannot tell: not the same, then
                    self._same, self._unsure = False, str(exc)

    def submit(self, jobs: list[dict[str, Any]]) -> None:
        """Parquet jobs (:func:`~assemblage.corpus.export.parquet.write_job`) to run after ``lines``."""
        self._jobs = len(jobs)
        self._send({"jobs": jobs})

    def cancel(self, why: str) -> None:
        """Not needed after all, or the export failed: stop it; nothing it wrote is kept."""
        self.why = self.why or why
        self.failed = self.failed or why
        log.info("lines: the helper process is stopped (%s)", why)
        if self._proc.poll() is None:
            self._proc.kill()
        self._end()

    def _end(self) -> None:
        self._proc.wait()
        self._reader.join()
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        self._stderr.close()
        self._watch.close()

    def finish(self, lines: int) -> tuple[list[list[str]] | None, list[dict[str, Any]] | None]:
        """Wait for it. Returns the ``lines`` files ([name, sha256], in ``job``'s folder) when they hold the
        ``lines`` rows of the export's snapshot, else None (the folder emptied, ``why`` says why); and the
        results of the submitted jobs, in order, or None when it failed (``failed`` says why: their files
        are to be written again)."""
        if self._jobs is None:
            self.submit([])
        if not self.failed:
            code = self._proc.wait()  # its standard input stays open until then: closed, it would stop
            self._reader.join()
            self._stderr.seek(0)
            tail = self._stderr.read().decode("utf-8", "replace").strip()[-2000:]
            if code != 0:
                self.failed = f"the helper exited {code}" + (f": {tail}" if tail else "")
            elif len(self._results) != self._jobs:
                self.failed = f"the helper ran {len(self._results)} of {self._jobs} jobs"
        self._end()
        if self.failed:
            self.why = self.why or self.failed
        elif self._same is not True:
            self.why = "the corpus changed between the two snapshots" + (f" ({self._unsure})" if self._unsure else "")
        elif self._lines is None or self._lines["rows"] != lines:
            got = None if self._lines is None else self._lines["rows"]
            self.why = f"the helper wrote {got} rows, the export has {lines}"
        kept: list[list[str]] | None = None
        if self.why:
            log.info("lines: written from dataset.sqlite after all (%s)", self.why)
            for path in self.folder.glob("*.parquet"):
                path.unlink()
        else:
            assert self._lines is not None
            log.info("lines: written from the corpus by the helper process, beside the copy")
            kept = self._lines["files"]
        if self.failed:
            return kept, None
        return kept, [self._results[i] for i in range(self._jobs or 0)]


# ------------------------------------------------------------------ the helper process


def _read_stdin(lines: queue.Queue[str], done: threading.Event) -> None:
    """Standard input, line by line. The export keeps it open until this process has exited: when it closes
    first, the export is gone, and so is the reason to go on. (Nothing at all: started by hand, say so.)"""
    got = False
    for line in sys.stdin:
        got = True
        lines.put(line)
    if got and not done.is_set():
        os._exit(3)
    lines.put("")


def main() -> None:
    inbox: queue.Queue[str] = queue.Queue()
    done = threading.Event()
    threading.Thread(target=_read_stdin, args=(inbox, done), daemon=True).start()
    first = inbox.get()
    if not first.strip():
        raise SystemExit(f"python -m {__name__} reads its jobs, JSON lines, on standard input (the export sends them)")
    from assemblage.corpus.export.parquet import write_job

    said = threading.Lock()

    def say(message: dict[str, Any]) -> None:
        with said:
            print(json.dumps(message), flush=True)

    began = False

    def progress(n: int) -> None:
        nonlocal began
        if not began:  # the query has stepped: its snapshot is the one every row comes from
            began = True
            say({"began": True})

    lines = write_job(json.loads(first), progress)
    progress(0)
    say({"lines": lines})
    jobs = json.loads(inbox.get())["jobs"]
    from concurrent.futures import ThreadPoolExecutor

    def run(i: int) -> None:
        say({"job": i, "result": write_job(jobs[i])})

    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(run, i) for i in range(len(jobs))]:
            future.result()
    done.set()


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
