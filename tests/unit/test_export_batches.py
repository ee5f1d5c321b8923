"""The C reader of SQLite batches (assemblage/corpus/export/_batches.c): the system's SQLite library, every
value as sqlite3 reads it, one snapshot per query, and a clear error for a value of another type."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pyarrow as pa
import pytest

from assemblage.corpus.export import batches

SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("ratio", pa.float64()),
        pa.field("name", pa.string()),
        pa.field("raw", pa.binary()),
    ]
)
ROWS = [
    (1, 0.5, "main", b"\x00\x01"),
    (2, None, None, None),
    (-(2**63), -1e300, "", b""),
    (2**63 - 1, 3.0, "ünïcødé \U0001f600\nline two\x00after a NUL", b"\xff" * 300),
    (5, float("inf"), "x" * 70_000, None),
    (6, 0.0, None, b"\x00"),
    (7, -0.0, "seven", None),
]


def _uri(path: Path) -> str:
    return f"file:{path}?mode=ro"


def _db(tmp_path: Path, rows=ROWS, wal: bool = False) -> Path:
    path = tmp_path / "t.sqlite"
    with closing(sqlite3.connect(path)) as db, db:
        if wal:
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (id INTEGER NOT NULL, ratio REAL, name TEXT, raw BLOB)")
        db.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", rows)
    return path


def _read(path: Path, sql: str = "SELECT id, ratio, name, raw FROM t ORDER BY rowid", batch_rows: int = 3):
    return list(batches.read_batches(_uri(path), sql, SCHEMA, batch_rows))


def test_the_reader_is_built_and_links_the_sqlite_library_of_python():
    """Its reason to exist: the corpus is read by one SQLite library only (batches.py says why)."""
    assert batches.why_unavailable() == ""
    from assemblage.corpus.export import _batches

    assert _batches.sqlite_version() == sqlite3.sqlite_version


@pytest.mark.parametrize("batch_rows", [1, 3, 7, 1000])
def test_every_value_reads_as_sqlite3_reads_it(tmp_path, batch_rows):
    path = _db(tmp_path)
    got = _read(path, batch_rows=batch_rows)
    assert [b.num_rows for b in got] == [min(batch_rows, len(ROWS) - i) for i in range(0, len(ROWS), batch_rows)]
    with closing(sqlite3.connect(path)) as db:
        expect = db.execute("SELECT id, ratio, name, raw FROM t ORDER BY rowid").fetchall()
    rows = [tuple(r.values()) for b in got for r in b.to_pylist()]
    assert rows == expect
    table = pa.Table.from_batches(got)
    assert table.schema == SCHEMA
    assert [table.column(i).null_count for i in range(4)] == [0, 1, 2, 3]


def test_no_rows_give_no_batch_and_the_query_sees_one_snapshot(tmp_path):
    path = _db(tmp_path, wal=True)
    assert _read(path, "SELECT id, ratio, name, raw FROM t WHERE id = 12345") == []
    it = batches.read_batches(_uri(path), "SELECT id, ratio, name, raw FROM t ORDER BY rowid", SCHEMA, 2)
    first = next(it)
    with closing(sqlite3.connect(path)) as writer, writer:  # a build commits while the reader is half way
        writer.execute("INSERT INTO t VALUES (100, 1.0, 'late', NULL)")
        writer.execute("DELETE FROM t WHERE id = 7")
    rest = list(it)
    ids = [r["id"] for b in [first, *rest] for r in b.to_pylist()]
    assert ids == [r[0] for r in ROWS]  # what was there when the query began, neither more nor less


@pytest.mark.parametrize(
    ("value", "column", "holds"),
    [("7", 0, "text"), (1.5, 0, "a real"), (b"\x01", 0, "a blob"), (3, 2, "an integer"), (b"x", 2, "a blob")],
)
def test_a_value_of_another_type_is_an_error_naming_column_and_row(tmp_path, value, column, holds):
    path = tmp_path / "t.sqlite"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE t (a, b REAL, c, d BLOB)")  # a, c: no affinity, values stay as given
        db.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", [(1, 1.0, "one", None)] * 4)
        db.execute(f"UPDATE t SET {'abcd'[column]} = ? WHERE rowid = 3", (value,))
    want = {0: "integer", 2: "text"}[column]
    with pytest.raises(TypeError, match=rf"column {column} \(\w\) of row 3 holds {holds}, not (an? )?{want}"):
        list(batches.read_batches(_uri(path), "SELECT a, b, c, d FROM t ORDER BY rowid", SCHEMA, 2))


def test_text_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "t.sqlite"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE t (id INTEGER, ratio REAL, name TEXT, raw BLOB)")
        db.execute("INSERT INTO t VALUES (1, 1.0, CAST(x'c328' AS TEXT), NULL)")
    with pytest.raises(pa.ArrowInvalid, match="(?i)utf-?8"):
        _read(path)


def test_bad_arguments_and_sql_are_clear_errors(tmp_path):
    from assemblage.corpus.export._batches import Reader

    path = _db(tmp_path)
    with pytest.raises(ValueError, match="the query has 4 columns, 2 kinds were given"):
        Reader(_uri(path), "SELECT id, ratio, name, raw FROM t", "if", 10)
    with pytest.raises(ValueError, match="unknown column kind x"):
        Reader(_uri(path), "SELECT id, ratio, name, raw FROM t", "ifsx", 10)
    with pytest.raises(RuntimeError, match="no such table: nope"):
        list(batches.read_batches(_uri(path), "SELECT 1, 2, 3, 4 FROM nope", SCHEMA))
    with pytest.raises(RuntimeError, match="unable to open"):
        list(batches.read_batches(_uri(tmp_path / "missing.sqlite"), "SELECT 1", pa.schema([("a", pa.int64())])))
    with pytest.raises(ValueError, match="reads int64, float64, string and binary columns, not"):
        list(batches.read_batches(_uri(path), "SELECT id FROM t", pa.schema([("id", pa.bool_())])))
    assert batches.kinds_of(["int64", "string", "float64", "binary"]) == "isfb"
    assert batches.kinds_of(["int64", "timestamp"]) is None


def test_the_corpus_is_never_read_by_the_adbc_drivers_sqlite(tmp_path):
    """The helper's job on the corpus (read_only) goes through the reader, and the ADBC driver, which carries
    a SQLite of its own, is not even loaded: a job in a fresh interpreter, which reports what it imported."""
    path = _db(tmp_path, wal=True)
    cols = [
        {"name": "id", "kind": "int64", "nullable": False, "text": False},
        {"name": "ratio", "kind": "float64", "nullable": True, "text": False},
        {"name": "name", "kind": "string", "nullable": True, "text": True},
        {"name": "raw", "kind": "binary", "nullable": True, "text": False},
    ]
    job = {
        "table": "t",
        "stretch": None,
        "database": str(path),
        "read_only": True,
        "columns": cols,
        "exprs": [[f't."{c["name"]}"', c["name"]] for c in cols],
        "from_sql": 'FROM "t" t ORDER BY t.rowid',
        "folder": str(tmp_path / "out"),
        "sides": None,
        "first_file": 0,
        "rows_per_file": 1 << 20,
    }
    script = (
        "import json, sys; from assemblage.corpus.export.parquet import write_job; "
        "r = write_job(json.loads(sys.argv[1])); "
        "print(json.dumps([r['rows'], sorted(m for m in sys.modules if m.startswith('adbc'))]))"
    )
    done = subprocess.run([sys.executable, "-c", script, json.dumps(job)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows, adbc = json.loads(done.stdout)
    assert (rows, adbc) == (len(ROWS), [])
    import pyarrow.dataset as pads

    assert [tuple(r.values()) for r in pads.dataset(tmp_path / "out").to_table().to_pylist()] == ROWS
