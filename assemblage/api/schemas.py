"""Response (and query) schemas of the API, separate from the database models."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any

from fastapi import HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "RunCreated",
    "RunOut",
    "Problem",
    "CoverageOut",
    "CellOut",
    "BuildOut",
    "BinaryOut",
    "BinaryDetail",
    "FunctionOut",
    "RvaOut",
    "LineOut",
    "InlineOut",
    "Include",
    "Page",
    "WorkerOut",
    "WorkersOut",
    "HealthOut",
    "IdPath",
    "Filter",
    "encode_cursor",
    "decode_cursor",
    "Limit",
    "Cursor",
]

MAX_ID = 2**63 - 1
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
# query strings reach SQL: printable, no NUL, bounded
Filter = Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00-\x1f]*$")]
Limit = Annotated[int, Query(ge=1, le=1000)]
Cursor = Annotated[
    str | None, Query(max_length=100, pattern=r"^[A-Za-z0-9_=-]*$", description="the `next` of the previous page")
]
INCLUDES = ("lines", "inlines")
Include = Annotated[
    list[str] | None,
    Query(
        description="more of each function: `lines` (its line table), `inlines` (what was inlined "
        "into it); comma-separated or repeated (include=lines,inlines)"
    ),
]


def parse_include(values: list[str] | None) -> frozenset[str]:
    """``include`` values (repeated or comma-separated) as a set; 422 naming an unknown one."""
    from fastapi.exceptions import RequestValidationError

    found = {v.strip() for value in (values or [])[:20] for v in value[:200].split(",") if v.strip()}
    unknown = sorted(found - set(INCLUDES))
    if unknown:
        raise RequestValidationError(
            [
                {
                    "type": "literal_error",
                    "loc": ("query", "include"),
                    "input": unknown[0],
                    "msg": f"unknown include {unknown[0]!r} (expected: {', '.join(INCLUDES)})",
                }
            ]
        )
    return frozenset(found)


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """The last id of the previous page (0 for the first); 422 for a cursor we did not make."""
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        last = int(value)
        if kind != "id" or not 0 <= last <= MAX_ID:
            raise ValueError(raw)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise HTTPException(422, [{"location": "query.after", "message": "not a cursor given by this API"}]) from None
    return last


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class RunCreated(_Out):
    id: int
    status: str


class Problem(_Out):
    location: str
    message: str


class RunOut(_Out):
    id: int
    recipe: str
    status: str
    notes: list[Any]
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    builds: dict[str, int]
    total: int
    binaries: int
    unsandboxed: int = 0  # builds that ran without a sandbox (allow_unsandboxed): they had the network and the host


class CellOut(_Out):
    build_id: int
    source: str
    config: str
    status: str
    reason: str | None
    message: str | None
    binaries: int
    reused: bool


class CoverageOut(_Out):
    run: int
    sources: list[str]
    configs: list[str]
    cells: list[CellOut]


class BuildOut(_Out):
    id: int
    run_id: int
    source_id: int
    source: str
    config: str
    status: str
    reason: str | None
    message: str | None
    build_system: str | None
    dependencies: list[str] = []  # Debian packages installed for the build
    dependency_image_digest: str | None = None  # the derived docker image (id) that had them
    worker: str | None
    attempts: int
    duration: float | None
    analysis_duration: float | None
    reused_from_id: int | None
    opt_mismatches: int
    started_at: datetime | None
    finished_at: datetime | None
    has_log: bool
    # how the build's steps were isolated: bubblewrap, docker, or none (allow_unsandboxed); None: no step ran
    sandbox: str | None = None


class BinaryOut(_Out):
    id: int
    file_name: str
    hash: str
    size: int
    platform: str
    arch: str
    format: str
    toolchain: str
    optimization: str
    config: str
    license: str | None
    source: str
    run_id: int
    build_id: int
    function_count: int
    opt_mismatch: bool


class BinaryDetail(BinaryOut):
    path: str
    build_mode: str
    toolset_version: str | None
    github_url: str | None
    repo_commit_hash: str | None
    source_kind: str
    source_version: str | None
    bits: int | None
    kind: str | None
    relpath: str
    flags_requested: list[Any]
    flags_observed: list[Any] | None
    opt_observed: str | None
    producer: str | None
    elf_build_id: str | None
    stripped_hash: str | None
    analysis_error: str | None


class RvaOut(_Out):
    start: int
    end: int


class LineOut(_Out):
    line_number: int
    rva: int
    length: int
    source_file: str | None
    source_code: str | None


class InlineOut(_Out):
    callee: str
    caller: str | None
    start: int
    end: int
    call_file: str | None
    call_line: int | None


class FunctionOut(_Out):
    id: int
    binary_id: int
    name: str
    start: int
    end: int
    size: int
    source_file: str | None
    decl_line: int | None
    hash: str | None = Field(None, description="sha256 of the function's bytes")
    pic_hash: str | None = Field(None, description="sha256 of its bytes with relocated operands masked")
    linkage_name: str | None = None
    demangled: str | None = None
    size_inferred: bool = False
    label_source: str
    rvas: list[RvaOut] = []
    lines: list[LineOut] | None = Field(None, description="with include=lines: the line table rows, by address")
    inlines: list[InlineOut] | None = Field(
        None, description="with include=inlines: the functions inlined into this one (their ranges inside it)"
    )


class Page(BaseModel):
    items: list[Any]
    next: str | None


class WorkerOut(_Out):
    id: str
    node: str
    hostname: str
    pid: int
    queues: list[Any]
    started_at: datetime
    last_seen: datetime
    alive: bool
    busy: list[int]


class WorkersOut(BaseModel):
    workers: list[WorkerOut]
    queues: dict[str, int] | None


class HealthOut(BaseModel):
    status: str
    database: str
    broker: str
    store: str
