"""Parquet tables written in row groups as the rows stream in: ``data/<table>/<part>-NNNNN.parquet``.

Layout: one folder per table, readable whole by ``pyarrow.dataset.dataset(folder)``
and by ``datasets.load_dataset("parquet", data_dir=folder)``. Without a split
the files are ``part-00000.parquet``, ``part-00001.parquet``, ...; with a split
every side has its own files, ``train-00000.parquet``, ``valid-00000.parquet``,
..., so that Hugging Face ``datasets`` (which recognises ``train``, ``valid`` /
``validation`` / ``dev`` and ``test`` in file names) loads the sides as its
splits, and every row also carries a ``split`` column for pyarrow filters.
A new file starts every ``rows_per_file`` rows (1,048,576 by default), so
readers can work on files in parallel. A side with no rows gets no file
(``datasets`` refuses a split with no data: "Instruction 'test' corresponds to
no data"); a table with no rows at all gets one empty file, so its schema is
still there to read.

Memory: each side buffers at most one row group, written as it fills:
``row_group`` rows (65,536 by default) or ``row_group_bytes`` of Arrow data
(8 MiB), whichever comes first, so a table of any length, and of rows of any
width, costs the same. (Without the byte bound, 65,536 ``functions`` rows with
their source text made the peak of bench/export.py 35 MiB higher on its 100,320
function corpus than on its 20,320 function one; with it, 9 MiB.)
Compression is zstd level 1: on the 1.8 million ``lines`` rows of bench/export.py
it wrote in 0.38 s of CPU (13 MiB) against 0.56 s (12 MiB) at level 3 and
0.43 s (23 MiB) with snappy. Dictionary encoding is on for text columns only:
on integer columns (ids, addresses, lengths: few repeats in a row group) it cost
CPU and bought nothing; writing the 721,001 ``lines`` rows of bench/export.py took
0.18 s of CPU (4.3 MiB) against 0.28 s (6.8 MiB) with a dictionary for every column.

**Reading the rows**: :func:`sqlite_to_parquet` reads a table of the export's
own SQLite file (:mod:`assemblage.corpus.export.sqlite`) into Arrow batches
in C, with the reader of :mod:`~assemblage.corpus.export.batches` (the system's
SQLite library; the 1.8 million ``lines`` rows of bench/export.py read and
written in 0.91 s of CPU against 1.15 s with the ADBC driver; through
``sqlite3`` tuples and ``pyarrow.array`` reading alone took six times the
driver's). Columns declared ``VARCHAR``/``TEXT``
hold text whatever was inserted (SQLite's text affinity) and are read as they
are; JSON and dates, declared with numeric affinity, are read with
``CAST(... AS TEXT)``, reals with ``CAST(... AS REAL)``, flags as integers.
Each column is then cast to the type the models give it.

Rows read from the **corpus itself** (``read_only``: the helper process's
``lines``) are read as they are stored, with no ``CAST`` (a value of another
type than its column's is an error, and the export writes the table itself),
and only ever with that reader (batches.py says why).

Where the reader was not built (it is optional, see setup.py), the ADBC
SQLite driver's low-level API reads the export's file (its DB-API module
imports ``pyarrow.dataset`` and pandas, 0.5 s of CPU an export does not
need). The driver infers each column's type from the values of its first
batch and fails when a later batch disagrees (a column that is NULL for
65,536 rows and then text). So the first batch's rows are looked at first
(with ``sqlite3``, a few milliseconds): when a column is NULL all through
them, the query starts with one row of typed placeholder values, dropped after
reading (a ``UNION ALL`` that costs a quarter of the reading time, so only
then).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq

from assemblage.corpus.export import layout
from assemblage.corpus.export.layout import ROW_GROUP, ROW_GROUP_BYTES

__all__ = ["TableWriter", "ROW_GROUP", "ROW_GROUP_BYTES", "arrow_type", "sqlite_to_parquet", "write_job"]

_KINDS: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date32": pa.date32(),
    "string": pa.string(),
    "binary": pa.binary(),
}


def arrow_type(kind: str) -> pa.DataType:
    """The Arrow type of a column kind (:attr:`assemblage.corpus.export.columns.Column.kind`)."""
    return _KINDS[kind]


class _Side:
    def __init__(self, folder: Path, prefix: str, schema: pa.Schema, owner: TableWriter, first_file: int = 0) -> None:
        self.folder, self.prefix, self.schema, self.owner = folder, prefix, schema, owner
        self.pending: list[pa.RecordBatch] = []
        self.pending_rows = 0
        self.pending_bytes = 0
        self.file_index = first_file
        self.file_rows = 0
        self.writer: pq.ParquetWriter | None = None
        self.path: Path | None = None
        self.rows = 0

    def _open(self) -> pq.ParquetWriter:
        if self.writer is None:
            self.path = self.folder / f"{self.prefix}-{self.file_index:05d}.parquet"
            self.writer = pq.ParquetWriter(
                self.path,
                self.schema,
                compression="zstd",
                compression_level=1,
                use_dictionary=self.owner.dictionary,
                write_statistics=True,
            )
        return self.writer

    def add(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        self.rows += batch.num_rows
        self.pending.append(batch)
        self.pending_rows += batch.num_rows
        self.pending_bytes += batch.nbytes
        if self.pending_rows >= self.owner.row_group or self.pending_bytes >= self.owner.row_group_bytes:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        table = pa.Table.from_batches(self.pending, schema=self.schema)
        self.pending, self.pending_rows, self.pending_bytes = [], 0, 0
        offset = 0
        while offset < table.num_rows:
            room = self.owner.rows_per_file - self.file_rows
            piece = table.slice(offset, min(room, table.num_rows - offset))
            self._open().write_table(piece, row_group_size=self.owner.row_group)
            self.file_rows += piece.num_rows
            offset += piece.num_rows
            if self.file_rows >= self.owner.rows_per_file:
                self._close_file()

    def _close_file(self) -> None:
        if self.writer is not None:
            self.writer.close()
            assert self.path is not None  # set with the writer
            self.owner.on_file(self.path)
            self.writer, self.path = None, None
            self.file_index += 1
            self.file_rows = 0

    def close(self, *, keep_empty: bool = False) -> None:
        self.flush()
        if keep_empty and self.writer is None and self.file_index == 0:
            self._open()  # the table's only file: its schema, no rows
        self._close_file()


class TableWriter:
    """One table's Parquet files; ``write`` takes record batches (with a ``split`` column when split)."""

    def __init__(
        self,
        folder: Path,
        schema: pa.Schema,
        *,
        sides: list[str] | None = None,
        row_group: int = ROW_GROUP,
        row_group_bytes: int = ROW_GROUP_BYTES,
        rows_per_file: int | None = None,
        first_file: int = 0,
        on_file: Callable[[Path], object] = lambda p: None,
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.row_group, self.on_file = row_group, on_file
        self.rows_per_file = rows_per_file or layout.ROWS_PER_FILE  # read now: a test may set it
        self.row_group_bytes = row_group_bytes
        self.schema = schema
        # dictionary pages for text columns only: ids, addresses and sizes hardly repeat within a row group
        # (ParquetWriter takes column names there; pyarrow's stubs say bool only)
        self.dictionary: Any = [
            f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
        ]
        self.sides = sides
        self.rows = 0
        names = sides or ["part"]
        # first_file: where a writer given one stretch of a table (rows_per_file rows from a multiple of it)
        # starts numbering its files, so that stretches written at once name their files as one writer would
        self._sides = {name: _Side(folder, name, schema, self, first_file) for name in names}
        self.first_file = first_file

    def write(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        if self.sides is None:
            self._sides["part"].add(batch)
            return
        import pyarrow.compute as pc  # imported when needed: a fifth of a second, and a table of one type needs none

        split = batch.column(batch.schema.get_field_index("split"))
        for name, side in self._sides.items():
            # pyarrow-stubs type the operands as Scalar/Array; pyarrow.compute takes a Python str as a scalar
            part = batch.filter(pc.equal(split, name))  # type: ignore[call-overload]
            side.add(part)

    def close(self) -> None:
        for i, side in enumerate(self._sides.values()):
            side.close(keep_empty=self.rows == 0 and i == 0 and self.first_file == 0)

    def sides_with_rows(self) -> list[str]:
        """The sides (or ``part``) that got rows, in order."""
        return [name for name, side in self._sides.items() if side.rows]


def _placeholder(t: pa.DataType) -> str:
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return "0"
    if pa.types.is_floating(t):
        return "0.0"
    if pa.types.is_binary(t):
        return "x''"
    return "''"


def _read_as(t: pa.DataType, expr: str) -> str:
    if pa.types.is_floating(t):
        return f"CAST({expr} AS REAL)"
    if pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_binary(t):
        return expr
    return f"CAST({expr} AS TEXT)"  # strings, JSON and dates are stored as text; numeric affinity may not keep it


def _cast(array: pa.Array, t: pa.DataType) -> pa.Array:
    if array.type == t:
        return array
    import pyarrow.compute as pc

    if pa.types.is_timestamp(t):
        naive = pc.cast(array, pa.timestamp(t.unit))  # "YYYY-MM-DD HH:MM:SS.ffffff", UTC as stored
        return naive.cast(t) if t.tz else naive
    if pa.types.is_date(t):
        return pc.cast(array, t)
    return pc.cast(array, t)


def sqlite_to_parquet(
    path: Path,
    columns: list[tuple[str, str]],
    schema: pa.Schema,
    from_sql: str,
    writer: TableWriter,
    *,
    text_columns: frozenset[str] = frozenset(),
    batch_rows: int = 16_384,
    progress: Callable[[int], None] = lambda n: None,
    read_only: bool = False,
    reader: str = "",
) -> int:
    """Stream ``SELECT <columns> <from_sql>`` from the SQLite file at ``path`` into ``writer``.

    ``columns`` are (SQL expression, name) in ``schema``'s order; ``text_columns`` names those declared
    with SQLite's text affinity (``VARCHAR``, ``TEXT``), which hold text or NULL whatever was inserted and
    are read without a ``CAST``. ``read_only``: the file is someone else's (the corpus itself, read by
    :mod:`assemblage.corpus.export.helper`), opened ``mode=ro``, and read as it is stored (no ``CAST``).
    ``reader``: ``batches`` or ``adbc``; by default the first when it was built (never ``adbc`` on the
    corpus). Returns the rows written.
    """
    from assemblage.corpus.export import batches

    types = [schema.field(name).type for _, name in columns]
    uri = f"file:{quote(str(path))}" + ("?mode=ro" if read_only else "")
    exprs = [
        expr if read_only or name in text_columns else _read_as(t, expr) for (expr, name), t in zip(columns, types)
    ]
    why = batches.why_unavailable()
    reader = reader or ("batches" if read_only or not why else "adbc")
    if reader == "adbc" and read_only:  # someone else's file, the live corpus: see batches.py
        raise ValueError("the corpus is read with the system's SQLite library (batches), never the ADBC driver's")
    if reader == "batches" and why:
        raise RuntimeError(why)
    read = _with_batches if reader == "batches" else _with_adbc
    rows = 0
    for batch in read(uri, exprs, types, from_sql, batch_rows):
        arrays = [_cast(batch.column(i), t) for i, t in enumerate(types)]
        writer.write(pa.RecordBatch.from_arrays(arrays, schema=schema))
        rows += batch.num_rows
        progress(batch.num_rows)
    return rows


def _as_read(t: pa.DataType) -> pa.DataType:
    """The type the C reader reads a column of type ``t`` as: flags as integers, dates as their text."""
    if pa.types.is_boolean(t):
        return pa.int64()
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return pa.string()
    return t


def _with_batches(
    uri: str, exprs: list[str], types: list[pa.DataType], from_sql: str, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """Batches read by :mod:`~assemblage.corpus.export.batches` (the system's SQLite, in C)."""
    from assemblage.corpus.export import batches

    read_schema = pa.schema([pa.field(f"c{i}", _as_read(t)) for i, t in enumerate(types)])
    yield from batches.read_batches(uri, f"SELECT {', '.join(exprs)} {from_sql}", read_schema, batch_rows)


def _with_adbc(
    uri: str, exprs: list[str], types: list[pa.DataType], from_sql: str, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """Batches read by the ADBC SQLite driver (when the C reader was not built; see the module)."""
    # the driver's low-level API: its DB-API module imports pyarrow.dataset and with it pandas (0.5 s of CPU)
    import adbc_driver_manager
    import adbc_driver_sqlite

    sql = f"SELECT {', '.join(exprs)} {from_sql}"
    with closing(sqlite3.connect(uri, uri=True)) as db:
        # the driver types a column by its first batch: when a column is NULL all through it, the query starts
        # with one row of typed placeholders (dropped after reading); a UNION ALL costs a quarter of the time
        seen = db.execute(
            f"SELECT {', '.join(f'max(c{i} IS NOT NULL)' for i in range(len(exprs)))} FROM (SELECT * FROM "
            f"(SELECT {', '.join(f'{e} AS c{i}' for i, e in enumerate(exprs))} {from_sql}) LIMIT {batch_rows})"
        ).fetchone()
    skip = 1 if any(v == 0 for v in seen) else 0
    if skip:
        sql = f"SELECT {', '.join(_placeholder(t) for t in types)} UNION ALL {sql}"
    with (
        adbc_driver_sqlite.connect(uri) as adbc,
        adbc_driver_manager.AdbcConnection(adbc) as conn,
        adbc_driver_manager.AdbcStatement(conn) as stmt,
    ):
        stmt.set_options(**{adbc_driver_sqlite.StatementOptions.BATCH_ROWS.value: str(batch_rows)})
        stmt.set_sql_query(sql)
        stream, _ = stmt.execute_query()
        with pa.RecordBatchReader.from_stream(stream) as batches:
            for batch in batches:
                if skip:
                    batch, skip = batch.slice(1), 0
                if batch.num_rows:
                    yield batch


def write_job(job: dict[str, Any], progress: Callable[[int], None] = lambda n: None) -> dict[str, Any]:
    """Write one Parquet job: a table, or one stretch of one, read from a SQLite file.

    ``job`` is plain JSON (the export runs it in a thread or hands it to its helper process):
    ``database``, ``read_only``, ``columns`` (``name``, ``kind``, ``nullable``, ``text``: text affinity),
    ``exprs`` ([SQL, name] per column), ``from_sql``, ``folder``, ``sides`` (or None), ``first_file``,
    ``rows_per_file``. Returns ``rows``, ``files`` ([file name, sha256], in order) and ``sides`` (those that
    got rows).
    """
    cols = job["columns"]
    schema = pa.schema([pa.field(c["name"], arrow_type(c["kind"]), nullable=c["nullable"]) for c in cols])
    files: list[Path] = []
    writer = TableWriter(
        Path(job["folder"]),
        schema,
        sides=job["sides"],
        rows_per_file=job["rows_per_file"],
        first_file=job["first_file"],
        on_file=files.append,
    )
    try:
        rows = sqlite_to_parquet(
            Path(job["database"]),
            [(expr, name) for expr, name in job["exprs"]],
            schema,
            job["from_sql"],
            writer,
            text_columns=frozenset(c["name"] for c in cols if c["text"]),
            progress=progress,
            read_only=job["read_only"],
        )
    except TypeError as exc:  # the C reader: a value stored with another type than its column's
        from assemblage.errors import ExportError

        raise ExportError(
            f"cannot write data/{job['table']}: in the dataset's {job['table']} table, {exc} "
            "(each column is read as the type the dataset's schema declares)"
        ) from None
    writer.close()
    from assemblage.corpus.export.files import sha256_of

    return {"rows": rows, "files": [[p.name, sha256_of(p)] for p in files], "sides": writer.sides_with_rows()}
