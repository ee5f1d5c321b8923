"""What an export is asked to do, and what it did: the models the CLI, the job and the API share.

The job stores the :class:`ExportRequest` it was given and the
:class:`ExportSummary` it produced (``exports.request`` and ``exports.result``)
and reads them back as these models; ``OUT/export.json`` is the summary.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from assemblage.corpus.dedup import DedupReport
from assemblage.corpus.select import MAX_ID, Selection
from assemblage.corpus.splits import SplitReport, SplitSpec

__all__ = ["ExportRequest", "ExportSummary", "FORMATS", "INCLUDES", "FORMAT_VERSION"]

FORMATS: tuple[Literal["parquet", "sqlite", "files"], ...] = ("parquet", "sqlite", "files")
INCLUDES = ("pdbs", "stripped")
FORMAT_VERSION = 1


class ExportRequest(BaseModel):
    """One export: which binaries, in which formats, deduplicated and split how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    where: Selection = Field(default_factory=Selection, description="the binaries (see GET /binaries' filters)")
    formats: list[Literal["parquet", "sqlite", "files"]] = Field(
        default_factory=lambda: list(FORMATS),
        description="parquet: data/<table>/*.parquet; sqlite: dataset.sqlite; files: objects/<sha256[:2]>/<sha256>",
    )
    split: SplitSpec | None = Field(
        None, description='leak-free sides by source, e.g. {"ratios": {"train": 0.8, "valid": 0.1, "test": 0.1}}'
    )
    seed: int = Field(0, ge=0, le=MAX_ID, description="seed of the split and of the pairs")
    pairs: int = Field(0, ge=0, le=10_000, description="positive pairs per family in data/pairs (0: none)")
    drop_trivial: bool = Field(False, description="leave out trivial functions (crt start-up code, thunks, size 0)")
    unique_binaries: bool = Field(False, description="one binary per sha256 (the first by config, source, path)")
    include: list[Literal["pdbs", "stripped"]] = Field(
        default_factory=list, description="also copy PDBs and stripped copies (files)"
    )
    archive: bool = Field(False, description="the objects as one objects.tar.zst instead of a folder")

    @field_validator("formats")
    @classmethod
    def _formats(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("name at least one format: parquet, sqlite, files")
        return sorted(set(v), key=FORMATS.index)

    @field_validator("include")
    @classmethod
    def _include(cls, v: list[str]) -> list[str]:
        return sorted(set(v), key=INCLUDES.index)


class ExportSummary(BaseModel):
    """What an export holds (``OUT/export.json``)."""

    format_version: int = FORMAT_VERSION
    assemblage_version: str
    created_at: datetime
    corpus: str
    request: ExportRequest
    candidates: int = Field(description="binaries matching the filters (before one-per-sha256 and sampling)")
    binaries: int
    tables: dict[str, int] = Field(description="rows per exported table")
    objects: int = 0
    object_bytes: int = 0
    dedup: DedupReport
    split: SplitReport | None = None
    missing_columns: dict[str, list[str]] = Field(
        default_factory=dict,
        description="model columns the corpus's database lacks (built by an older assemblage): exported empty",
    )
    files: int = Field(0, description="files listed in MANIFEST.sha256")
    bytes: int = Field(0, description="bytes of those files, export.json excepted")
