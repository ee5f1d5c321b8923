"""Arrow batches of a SQLite query, read with the SQLite library every other connection uses.

The export's helper process (:mod:`assemblage.corpus.export.helper`) reads the
``lines`` table of the corpus itself while the export reads the same file, and
builds may be writing it: a WAL database whose log and shared-memory index all
its connections must handle alike. Python's :mod:`sqlite3` module would take
seconds for the 1.8 million rows of ``bench/export.py``; the fast readers on
PyPI (the ADBC driver, connectorx, DuckDB) each link a SQLite library of their
own, of another version than the system's (the ADBC driver's is 3.5x, Debian
12's is 3.40). With the ADBC driver reading the corpus, one export in three of
the test suite read a state of the corpus older than its own snapshot, or
failed with ``database disk image is malformed``; with one library, none did.

So this small C module (``_batches.c``, built by ``pip install``; it links
``libsqlite3``, the library Python's :mod:`sqlite3` links) steps the query
without the GIL and hands back each batch's column buffers, which become Arrow
arrays without a copy. It reads as fast as the ADBC driver (0.8 to 1 s of CPU
for those 1.8 million rows, the same on both). Values are not converted: a
value whose storage class is not its column's (text in an integer column) is an
error naming the column and the row, and the helper's caller then writes the
table the way it would have without a helper.

:func:`available` says whether the module was built (it is optional: without a
C compiler and ``libsqlite3-dev``, ``pip install`` goes on without it, and
exports do without the helper).
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


def read_batches(
    uri: str, sql: str, schema: pa.Schema, kinds: str, batch_rows: int = 16_384
) -> Iterator[pa.RecordBatch]:
    """The rows of ``sql`` over the SQLite file ``uri`` (a ``file:`` URI, opened read-only), as batches of
    ``schema`` (whose fields have ``kinds``, see :func:`kinds_of`). One query: one snapshot of the file."""
    import pyarrow as pa

    from assemblage.corpus.export._batches import Reader

    types = [f.type for f in schema]
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
