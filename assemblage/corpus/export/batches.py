"""Arrow batches of a SQLite query, read in C with the system's SQLite library.

Every Parquet table of an export is read from SQLite into Arrow: the export's
own ``dataset.sqlite`` once it is sealed, and, in the export's helper process
(:mod:`assemblage.corpus.export.helper`), the corpus's ``lines``. Python's
:mod:`sqlite3` module would take seconds for the 1.8 million ``lines`` rows of
``bench/export.py``. The ADBC SQLite driver reads them in C, but with more
CPU than this reader (its connections take SQLite's mutex for every value;
ours open with ``SQLITE_OPEN_NOMUTEX``, one thread per connection): read and
written to Parquet, those ``lines`` took 0.91 s of CPU against the driver's
1.15 s, the 100,320 ``functions`` 0.24 s against 0.33 s (medians of 6,
alternating). The driver also carries a SQLite library of its own, of another version than the system's
(3.5x against Debian 12's 3.40). Two SQLite libraries in one process do not
know each other's POSIX locks on a file, and closing the file in one drops the
locks the other holds; with one library, a process can read any file it likes.

So this small C module (``_batches.c``, built by ``pip install`` from
setup.py; it links ``libsqlite3``, the library Python's :mod:`sqlite3` links)
steps the query without the GIL and hands back each batch's column buffers,
which become Arrow arrays without a copy. Values are not converted: a value
whose storage class is not its column's (text in an integer column) is an
error naming the column and the row; the caller casts in SQL what it wants
converted (:func:`assemblage.corpus.export.parquet.sqlite_to_parquet`).

:func:`available` says whether the module was built (it is optional: without a
C compiler and ``libsqlite3-dev``, ``pip install`` goes on without it, and
exports read with the ADBC driver and do without the helper).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["available", "kinds_of", "read_batches", "why_unavailable"]

# column kind (assemblage.corpus.export.columns) -> the reader's kind
_READER_KINDS = {"int64": "i", "float64": "f", "string": "s", "binary": "b"}


def why_unavailable() -> str:
    """Empty when the reader can be used, else why not."""
    try:
        from assemblage.corpus.export import _batches
    except ImportError as exc:
        return f"the C reader of SQLite batches was not built ({exc})"
    if _batches.sqlite_version() != sqlite3.sqlite_version:  # another library than sqlite3's: the reason it exists
        return f"the C reader links SQLite {_batches.sqlite_version()}, Python's sqlite3 {sqlite3.sqlite_version}"
    return ""


def available() -> bool:
    return not why_unavailable()


def kinds_of(kinds: list[str]) -> str | None:
    """The reader's kinds for these column kinds, or None when one of them is not one it reads."""
    got = [_READER_KINDS.get(k) for k in kinds]
    return None if any(k is None for k in got) else "".join(k for k in got if k)


def read_batches(uri: str, sql: str, schema: pa.Schema, batch_rows: int = 16_384) -> Iterator[pa.RecordBatch]:
    """The rows of ``sql`` over the SQLite file ``uri`` (a ``file:`` URI, opened read-only), as batches of
    ``schema``, whose fields are int64, float64, string or binary (else ValueError). One query: one
    snapshot of the file."""
    import pyarrow as pa

    from assemblage.corpus.export._batches import Reader

    types = [f.type for f in schema]
    by_type = {pa.int64(): "i", pa.float64(): "f", pa.string(): "s", pa.binary(): "b"}
    if any(t not in by_type for t in types):
        raise ValueError(f"the C reader reads int64, float64, string and binary columns, not {types}")
    kinds = "".join(by_type[t] for t in types)
    with Reader(uri, sql, kinds, batch_rows) as reader:
        for rows, columns in reader:
            arrays = []
            for t, (nulls, validity, data, *offsets) in zip(types, columns):
                buffers = [None if validity is None else pa.py_buffer(validity)]
                buffers += [pa.py_buffer(o) for o in offsets] + [pa.py_buffer(data)]
                arrays.append(pa.Array.from_buffers(t, rows, buffers, null_count=nulls))
            batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
            batch.validate(full=True)  # text that is not UTF-8 stops here, not in a reader of the export
            yield batch
