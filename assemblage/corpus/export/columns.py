"""The exported tables' columns, read from the SQLAlchemy models so that new columns flow through.

An export carries **every column** of ``binaries``, ``functions``, ``rvas``,
``lines`` and ``pdbs`` as the models declare them (a column added to
:mod:`assemblage.db.models`, such as the source text of functions, appears in the
Parquet files and in ``dataset.sqlite`` without a change here), plus derived
columns (``family_id``, ``trivial``, ``split``). Each column's Arrow type and
its SQLite storage follow from its SQLAlchemy type:

=================  ==========================  ===================================
SQLAlchemy         Arrow (Parquet)             dataset.sqlite
=================  ==========================  ===================================
Integer, BigInt    int64                       INTEGER
Float, Numeric     float64                     REAL
Boolean            bool                        INTEGER 0/1
String, Text       string                      TEXT
DateTime           timestamp[us, UTC]          TEXT ``YYYY-MM-DD HH:MM:SS.ffffff``
                                               (UTC, as SQLAlchemy stores it)
Date               date32                      TEXT ``YYYY-MM-DD``
JSON               string (canonical JSON:     TEXT (the same JSON)
                   sorted keys, no spaces)
LargeBinary        binary                      BLOB
anything else      string (``str(value)``)     TEXT
=================  ==========================  ===================================

Rows reach ``dataset.sqlite`` first (converted by ``to_sqlite`` where the
storage differs) and the Parquet files are read back from it, cast to the
Arrow types above (:mod:`assemblage.corpus.export.parquet`). JSON is written
canonically because PostgreSQL's ``json`` and SQLite's text keep whatever
spacing they were given: canonical text makes the embedded and the service
exports equal.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, types

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Column", "table_columns", "derived", "sqlite_row_converter"]

Convert = Callable[[Any], Any]


@dataclass(frozen=True)
class Column:
    name: str
    type: types.TypeEngine  # the SQLAlchemy type (for dataset.sqlite's DDL)
    kind: str  # the Arrow type's name: "bool", "int64", "float64", "timestamp", "date32", "string", "binary"
    to_sqlite: Convert | None = None  # a driver's value -> what dataset.sqlite stores
    nullable: bool = True
    primary_key: bool = False

    @property
    def arrow(self) -> pa.DataType:
        """The Arrow type (pyarrow is imported only by an export that writes Parquet)."""
        from assemblage.corpus.export.parquet import arrow_type

        return arrow_type(self.kind)


def _sqlite_datetime(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return str(value)


def _json(value: Any) -> Any:
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _text(value: Any) -> Any:
    return None if value is None else str(value)


def _date(value: Any) -> Any:
    return None if value is None else value.isoformat()


def column_for(name: str, t: types.TypeEngine, *, nullable: bool = True, primary_key: bool = False) -> Column:
    kw: dict[str, Any] = {"nullable": nullable, "primary_key": primary_key}
    if isinstance(t, types.Boolean):
        return Column(name, t, "bool", **kw)
    if isinstance(t, types.Integer):
        return Column(name, t, "int64", **kw)
    if isinstance(t, (types.Float, types.Numeric)):
        return Column(name, t, "float64", to_sqlite=lambda v: None if v is None else float(v), **kw)
    if isinstance(t, types.DateTime):
        return Column(name, t, "timestamp", to_sqlite=_sqlite_datetime, **kw)
    if isinstance(t, types.Date):
        return Column(name, t, "date32", to_sqlite=_date, **kw)
    if isinstance(t, types.JSON):
        return Column(name, t, "string", to_sqlite=_json, **kw)
    if isinstance(t, types.LargeBinary):
        return Column(name, t, "binary", **kw)
    if isinstance(t, types.String):  # String, Text, Unicode, Enum
        return Column(name, t, "string", **kw)
    return Column(name, t, "string", to_sqlite=_text, **kw)


def table_columns(table: Table) -> list[Column]:
    """Every column of a model's table, in declaration order.

    Only the primary key is declared NOT NULL in an export: a dataset built by an older assemblage lacks
    the columns later models added, and those are exported empty (a constraint would refuse them).
    """
    return [
        column_for(c.name, c.type, nullable=not c.primary_key, primary_key=bool(c.primary_key)) for c in table.columns
    ]


def derived(name: str, t: types.TypeEngine, *, nullable: bool = True) -> Column:
    """A column an export adds (``family_id``, ``trivial``, ``split``)."""
    return column_for(name, t, nullable=nullable)


def sqlite_row_converter(columns: list[Column]) -> Callable[[Sequence[Any]], list[Any]] | None:
    """A function turning driver rows into rows sqlite3 stores, or None when they already are."""
    conv = [(i, c.to_sqlite) for i, c in enumerate(columns) if c.to_sqlite is not None]
    if not conv:
        return None

    def convert(rows: Sequence[Any]) -> list[Any]:
        out = []
        for row in rows:
            row = list(row)
            for i, fn in conv:
                row[i] = fn(row[i])
            out.append(row)
        return out

    return convert
