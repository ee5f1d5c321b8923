"""``OUT/dataset.sqlite``: the Assemblage-compatible schema, written from any database, and the export's
working copy of its tables.

The tables ``binaries``, ``functions``, ``rvas``, ``lines`` and ``pdbs`` get every
column of our models (a superset of the published Assemblage schema, so
scripts written for that dataset run on an export; new model columns flow in),
``functions`` also gets ``family_id`` and ``trivial``; ``families``
(family_id, function_id), ``splits`` (binary_id, split) and ``pairs`` (when
asked) are added. Foreign keys are declared only between exported tables (a
binary's ``build_id`` names a build of the source database, which is not
exported), and the indexes a reader needs to join (``functions.binary_id``,
``functions.family_id``, ``rvas.function_id``, ``lines.function_id``,
``pdbs.binary_id``, ``families.function_id``) are built after the rows are in, which is faster than
maintaining them row by row.

Every export writes this file first, even when only Parquet is asked for (then
it is a scratch file, deleted at the end): the Parquet tables are read back
from it in C (:mod:`assemblage.corpus.export.parquet`), and from an embedded
dataset the rows get here in C too, with ``INSERT ... SELECT`` across an
``ATTACH``ed connection (see :mod:`assemblage.corpus.export.run`). From
PostgreSQL they come through :meth:`ExportDB.write` (``executemany``, only the
columns whose storage differs, dates and JSON, touched in Python). The file is
written with ``journal_mode=OFF`` and ``synchronous=OFF``: it is new and the
export is renamed into place only when complete, so a crash leaves no half
file behind to protect.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, MetaData, Table
from sqlalchemy import Column as SAColumn
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql.ddl import sort_tables_and_constraints

from assemblage.corpus.export.columns import Column, sqlite_row_converter

__all__ = ["ExportDB", "PRAGMAS", "INDEXES", "index_sql"]

# what readers join on (functions.family_id groups a family; families.function_id joins back to a function)
INDEXES = {
    "functions": ["binary_id", "family_id"],
    "rvas": ["function_id"],
    "lines": ["function_id"],
    "pdbs": ["binary_id"],
    "families": ["function_id"],
}
REFERENCES = {
    ("functions", "binary_id"): "binaries.id",
    ("rvas", "function_id"): "functions.id",
    ("lines", "function_id"): "functions.id",
    ("pdbs", "binary_id"): "binaries.id",
    ("families", "function_id"): "functions.id",
    ("splits", "binary_id"): "binaries.id",
}
# a new file, renamed into place when complete: nothing to journal; 8 MiB of page cache whatever its size
# (rows are appended in rowid order, so a bigger cache bought nothing but memory in bench/export.py)
PRAGMAS = ("journal_mode=OFF", "synchronous=OFF", "cache_size=-8192")
# bench/export.py (721,001 lines rows): copying them, counting them and indexing them took 0.39 s of CPU with
# 64 KiB pages against 0.47 s with SQLite's default 4 KiB (and 68,000 reads of the file became 5,000)
PAGE_SIZE = 65536


def index_sql(table: str, column: str, schema: str | None = None) -> str:
    """The DDL of the export's index on ``table.column`` (in the attached ``schema`` when given)."""
    prefix = f"{schema}." if schema else ""
    return f'CREATE INDEX IF NOT EXISTS {prefix}"ix_{table}_{column}" ON "{table}" ("{column}")'


class ExportDB:
    """The export's SQLite file: tables created from the columns, rows written, indexes at the end."""

    def __init__(self, path: Path, tables: dict[str, list[Column]]) -> None:
        self.path = path
        self.tables = tables
        self.metadata = MetaData()
        for name, cols in tables.items():
            sa_cols = []
            for c in cols:
                ref = REFERENCES.get((name, c.name))
                args: list[Any] = [ForeignKey(ref)] if ref and ref.split(".")[0] in tables else []
                primary = c.primary_key or (name, c.name) == ("splits", "binary_id")
                # INTEGER PRIMARY KEY is SQLite's rowid: joins on it are lookups, scans come in its order
                t = BigInteger().with_variant(Integer(), "sqlite") if primary else c.type
                sa_cols.append(SAColumn(c.name, t, *args, primary_key=primary, nullable=c.nullable))
            Table(name, self.metadata, *sa_cols)
        # DDL from the models' types, as SQLAlchemy renders them for SQLite (what create_all would run), in a
        # file with 64 KiB pages: a sixteenth of the reads and writes of 4 KiB pages for the same rows
        dialect = sqlite_dialect()
        with closing(sqlite3.connect(path, isolation_level=None)) as db:
            db.execute(f"PRAGMA page_size={PAGE_SIZE}")
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("BEGIN")
            for table, _ in sort_tables_and_constraints(list(self.metadata.tables.values())):
                if table is not None:
                    db.execute(str(CreateTable(table).compile(dialect=dialect)))
            db.execute("COMMIT")
        self._db: sqlite3.Connection | None = None
        self._sealed = False
        self._sql = {
            name: f'INSERT INTO "{name}" ({", ".join(chr(34) + c.name + chr(34) for c in cols)}) '
            f"VALUES ({', '.join('?' for _ in cols)})"
            for name, cols in tables.items()
        }
        self._convert = {name: sqlite_row_converter(cols) for name, cols in tables.items()}

    @property
    def db(self) -> sqlite3.Connection:
        """A connection of our own (after the source's snapshot has written what it writes); in a transaction
        until :meth:`seal`, in autocommit after it."""
        if self._db is None:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            for pragma in PRAGMAS:
                self._db.execute(f"PRAGMA {pragma}")
            if not self._sealed:
                self._db.execute("BEGIN")
        return self._db

    def converted(self, table: str, rows: Sequence[Any]) -> Sequence[Any]:
        """Driver rows (in the table's column order) as sqlite3 stores them."""
        convert = self._convert[table]
        return convert(rows) if convert else rows

    def insert_sql(self, table: str, schema: str | None = None) -> str:
        prefix = f"{schema}." if schema else ""
        return self._sql[table].replace("INSERT INTO ", f"INSERT INTO {prefix}", 1)

    def write(self, table: str, rows: Sequence[Any]) -> None:
        """Rows in the order of the table's columns."""
        self.db.executemany(self._sql[table], self.converted(table, rows))

    def count(self, table: str) -> int:
        return int(self.db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])

    def seal(self, *, indexes: bool) -> None:
        """The rows are all in: the indexes (when asked) and the commit; the connection then only reads."""
        db = self.db
        if indexes:
            for table, columns in INDEXES.items():
                if table not in self.tables:
                    continue
                for col in columns:
                    if any(c.name == col for c in self.tables[table]):
                        db.execute(index_sql(table, col))  # unless it came with the rows (run.py)
        db.execute("COMMIT")
        if indexes:
            db.execute("PRAGMA journal_mode=DELETE")
        self._sealed = True

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def abort(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None
