"""Curated corpora: select binaries, deduplicate, group functions into families, split without
leakage, and export (Parquet, SQLite in the Assemblage schema, the binaries, a datasheet).

The same code reads the embedded dataset (``DIR/dataset.sqlite`` + ``DIR/objects``)
and the service (PostgreSQL + S3): it works on a database URL and an
:class:`~assemblage.storage.ObjectStore` (:class:`Corpus`).
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from assemblage.corpus.dedup import DedupReport, is_trivial, trivial_clause
    from assemblage.corpus.families import family_id
    from assemblage.corpus.request import ExportRequest, ExportSummary
    from assemblage.corpus.select import Selection, license_allows, parse_where
    from assemblage.corpus.source import Corpus, open_corpus
    from assemblage.corpus.splits import SplitReport, SplitSpec, parse_split

# imported when first used: ``python -m assemblage.corpus.export.helper`` (the export's helper process) needs
# none of them, and SQLAlchemy and pydantic are a fifth of a second of its start
_WHERE = {
    "DedupReport": "dedup",
    "is_trivial": "dedup",
    "trivial_clause": "dedup",
    "family_id": "families",
    "ExportRequest": "request",
    "ExportSummary": "request",
    "Selection": "select",
    "license_allows": "select",
    "parse_where": "select",
    "Corpus": "source",
    "open_corpus": "source",
    "SplitReport": "splits",
    "SplitSpec": "splits",
    "parse_split": "splits",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"assemblage.corpus.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'assemblage.corpus' has no attribute {name!r}")


__all__ = [
    "Corpus",
    "DedupReport",
    "ExportRequest",
    "ExportSummary",
    "Selection",
    "SplitReport",
    "SplitSpec",
    "export_corpus",
    "family_id",
    "is_trivial",
    "license_allows",
    "open_corpus",
    "parse_split",
    "parse_where",
    "trivial_clause",
]


def export_corpus(*args, **kwargs):
    """See :func:`assemblage.corpus.export.run.export_corpus`."""
    from assemblage.corpus.export.run import export_corpus as run

    return run(*args, **kwargs)
