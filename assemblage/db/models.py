"""The metadata schema: one set of SQLAlchemy 2 models for SQLite (embedded) and PostgreSQL.

The tables ``binaries``, ``functions``, ``rvas``, ``lines`` and ``pdbs`` are a
superset of the published Assemblage SQLite schema, so that scripts written
for that dataset keep working on ``DIR/dataset.sqlite``. Where the published
type differs from ours, the published column keeps the published type and
ours sits next to it: ``binaries.repo_last_update`` is Unix seconds (an
``Integer`` in harp-lab/Assemblage_dataset_cli's ``dataset_orm.py``), and
``binaries.repo_last_update_at`` the same instant as a timestamp. The other tables
(recipes, runs, sources, configurations, builds, inlines) are ours.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "Base",
    "Binary",
    "Build",
    "Configuration",
    "Export",
    "Function",
    "Inline",
    "Line",
    "Pdb",
    "Recipe",
    "Run",
    "Rva",
    "Source",
    "Verification",
    "VerificationDifference",
    "Worker",
    "Crawl",
    "CrawlWindow",
    "CrawlRepo",
    "HttpCache",
    "BUILD_STATUSES",
    "FINAL_STATUSES",
    "EXPORT_STATUSES",
]

# succeeded, failed, timed_out, no_binaries and skipped are final; pending and running are not.
BUILD_STATUSES = ("pending", "running", "succeeded", "failed", "timed_out", "no_binaries", "skipped")
FINAL_STATUSES = frozenset({"succeeded", "failed", "timed_out", "no_binaries", "skipped"})
# A finished build with one of these outcomes is reused by a later run with the same key: successes, and
# failures that the same inputs give again (a failed build only with a reason of REUSABLE_FAILURES).
REUSABLE_STATUSES = frozenset({"succeeded", "failed", "no_binaries"})
# Deterministic failure classes (builds/engine.py classify_failure; the limits are part of the key). Not
# reused: internal_error (Assemblage crashed), build_environment (the worker could not prepare the build),
# sandbox_unavailable (this worker cannot sandbox), crashed (a signal from outside), cancelled, and
# timed_out (a status of its own): they say more about the worker at the time than about the source.
# A reason not listed here is not reused.
REUSABLE_FAILURES = frozenset(
    {
        "compile_error",
        "link_error",
        "configure_failed",
        "missing_dependency",
        "missing_tool",
        "no_build_system",
        "build_failed",
        "out_of_memory",
        "disk_limit",
    }
)
# an export job: pending (queued), running, finished (archive in the store) or failed (error says why)
EXPORT_STATUSES = ("pending", "running", "finished", "failed")

Id = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}

    if TYPE_CHECKING:  # every model maps one declared table (SQLAlchemy types __table__ as any FromClause)
        __table__: ClassVar[Table]


class Recipe(Base):
    __tablename__ = "recipes"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text)  # the recipe as submitted
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    recipe_id: Mapped[int] = mapped_column(ForeignKey("recipes.id"), index=True)
    # pending, running, finished, failed; cancelled (POST /runs/{id}/cancel), interrupted (Ctrl-C, embedded)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    notes: Mapped[list[Any]] = mapped_column(JSON, default=list)  # dropped configurations, warnings
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # build/outputs options in force
    # the API token (api_tokens.id) that submitted the run; NULL for runs of the CLI. Only that token, or an
    # admin token, may cancel the run
    submitted_by: Mapped[int | None] = mapped_column(Integer)
    expanded: Mapped[bool] = mapped_column(Boolean, default=False)  # sources, builds and crawls were added
    # a run made by `assemblage rebuild`: the lock's sha256, the run it locked, the drift allowed
    lock_origin: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    recipe: Mapped[Recipe] = relationship()
    builds: Mapped[list[Build]] = relationship(back_populates="run")


class Source(Base):
    """One source of one run, as the recipe names it, and what fetching pinned."""

    __tablename__ = "sources"
    __table_args__ = (UniqueConstraint("run_id", "position"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # the recipe entry
    pinned_spec: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the entry with commit/sha256/version filled in
    label: Mapped[str] = mapped_column(String(1000))  # "debian:zlib", a git URL, a path
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending, fetched, failed
    error: Mapped[str | None] = mapped_column(Text)
    pin: Mapped[str | None] = mapped_column(String(200))  # commit SHA, archive sha256, tree hash, Debian version
    commit: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[str | None] = mapped_column(String(200))
    sha256: Mapped[str | None] = mapped_column(String(64))
    license: Mapped[str | None] = mapped_column(String(200))
    url: Mapped[str | None] = mapped_column(String(1000))
    last_update: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    checkout: Mapped[str | None] = mapped_column(String(4000))  # where the fetched tree is (embedded)
    worker: Mapped[str | None] = mapped_column(String(200))  # the process fetching it now (its heartbeat row)
    source_date_epoch: Mapped[int | None] = mapped_column(BigInteger)  # what its builds get (builds.reproducible)


class Configuration(Base):
    __tablename__ = "configurations"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    identifier: Mapped[str] = mapped_column(String(100), unique=True)
    platform: Mapped[str] = mapped_column(String(20))
    arch: Mapped[str] = mapped_column(String(20))
    toolchain: Mapped[str] = mapped_column(String(40))
    opt: Mapped[str] = mapped_column(String(10))


class Build(Base):
    """One source under one configuration in one run."""

    __tablename__ = "builds"
    __table_args__ = (
        UniqueConstraint("run_id", "source_id", "configuration_id"),
        Index("ix_builds_key_status", "key", "status"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    configuration_id: Mapped[int] = mapped_column(ForeignKey("configurations.id"))
    # sha256(source pin, config, flags, outputs, build options, SOURCE_DATE_EPOCH): the reuse key (steps.build_key)
    key: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    reason: Mapped[str | None] = mapped_column(String(40))  # failure reason class
    message: Mapped[str | None] = mapped_column(Text)  # one line saying what went wrong
    build_system: Mapped[str | None] = mapped_column(String(20))
    flags_requested: Mapped[list[Any]] = mapped_column(JSON, default=list)
    sandboxed: Mapped[bool | None] = mapped_column(Boolean)
    runner: Mapped[str | None] = mapped_column(String(20))
    worker: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    duration: Mapped[float | None] = mapped_column(Float)  # seconds spent compiling
    analysis_duration: Mapped[float | None] = mapped_column(Float)
    log_key: Mapped[str | None] = mapped_column(String(200))  # object store key of the full log
    reused_from_id: Mapped[int | None] = mapped_column(ForeignKey("builds.id"))
    opt_mismatches: Mapped[int] = mapped_column(Integer, default=0)
    # what reached the build: toolchain versions, image digest, flags, variables, limits
    # (assemblage.builds.reproducible.BuildEnvironment); part of the run's lock
    environment: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Debian packages installed for this build beyond the toolchain environment (Build-Depends,
    # and what a failed attempt's log asked for), and the derived docker image that has them:
    # its tag (assemblage-deps:<hash>) and its image id (a content digest, for the run's lock)
    dependencies: Mapped[list[Any] | None] = mapped_column(JSON, default=list)
    dependency_image: Mapped[str | None] = mapped_column(String(200))
    dependency_image_digest: Mapped[str | None] = mapped_column(String(80))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    run: Mapped[Run] = relationship(back_populates="builds")
    source: Mapped[Source] = relationship()
    configuration: Mapped[Configuration] = relationship()


class Binary(Base):
    """A binary a build produced. Assemblage columns first, then ours."""

    __tablename__ = "binaries"
    __table_args__ = (
        UniqueConstraint("build_id", "relpath"),
        # the API's filtered listing: equality filters, then keyset order by id
        Index("ix_binaries_filter", "platform", "arch", "toolchain", "optimization", "id"),
        Index("ix_binaries_run_id", "run_id", "id"),
        # one filter alone still pages in id order
        Index("ix_binaries_arch", "arch", "id"),
        Index("ix_binaries_toolchain", "toolchain", "id"),
        Index("ix_binaries_optimization", "optimization", "id"),
        Index("ix_binaries_format", "format", "id"),
        Index("ix_binaries_license", "license", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    file_name: Mapped[str] = mapped_column(String(500))
    path: Mapped[str] = mapped_column(String(500))  # object key, relative to the dataset folder when local
    platform: Mapped[str] = mapped_column(String(20))
    build_mode: Mapped[str] = mapped_column(String(20))  # Debug (O0/Od) or Release
    toolset_version: Mapped[str | None] = mapped_column(String(100))
    github_url: Mapped[str | None] = mapped_column(String(1000))
    optimization: Mapped[str] = mapped_column(String(10))
    hash: Mapped[str] = mapped_column(String(64), index=True)  # sha256 of the file
    size: Mapped[int] = mapped_column(BigInteger)
    license: Mapped[str | None] = mapped_column(String(200))
    repo_commit_hash: Mapped[str | None] = mapped_column(String(64))
    # the published type: Unix time in seconds (UTC); the same instant as a timestamp is ours, below
    repo_last_update: Mapped[int | None] = mapped_column(BigInteger)
    # ours
    repo_last_update_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    build_id: Mapped[int] = mapped_column(ForeignKey("builds.id"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))  # indexed with id, above
    source: Mapped[str] = mapped_column(String(1000))
    source_kind: Mapped[str] = mapped_column(String(20))
    source_version: Mapped[str | None] = mapped_column(String(200))
    arch: Mapped[str] = mapped_column(String(20))
    format: Mapped[str] = mapped_column(String(10))
    bits: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str | None] = mapped_column(String(20))
    toolchain: Mapped[str] = mapped_column(String(40))
    config: Mapped[str] = mapped_column(String(100), index=True)
    relpath: Mapped[str] = mapped_column(String(2000))  # where the build left it
    flags_requested: Mapped[list[Any]] = mapped_column(JSON, default=list)
    flags_observed: Mapped[list[Any] | None] = mapped_column(JSON)
    opt_observed: Mapped[str | None] = mapped_column(String(10))
    opt_mismatch: Mapped[bool] = mapped_column(Boolean, default=False)
    producer: Mapped[str | None] = mapped_column(Text)
    elf_build_id: Mapped[str | None] = mapped_column(String(80))
    text_sha256: Mapped[str | None] = mapped_column(String(64))
    stripped_hash: Mapped[str | None] = mapped_column(String(64))
    stripped_path: Mapped[str | None] = mapped_column(String(500))
    function_count: Mapped[int] = mapped_column(Integer, default=0)
    analysis_error: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # disagreements, sections, imports

    functions: Mapped[list[Function]] = relationship(back_populates="binary")


class Function(Base):
    __tablename__ = "functions"
    __table_args__ = (
        Index("ix_functions_binary_id", "binary_id", "id"),
        Index("ix_functions_name", "name", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    binary_id: Mapped[int] = mapped_column(ForeignKey("binaries.id"))  # indexed with id, above
    name: Mapped[str] = mapped_column(Text)  # indexed with id, above
    hash: Mapped[str | None] = mapped_column(String(64))  # sha256 of the function's bytes
    source_file: Mapped[str | None] = mapped_column(Text)
    prototype: Mapped[str | None] = mapped_column(Text)
    top_comments: Mapped[str | None] = mapped_column(Text)  # the comment right above the declaration
    source_codes: Mapped[str | None] = mapped_column(Text)  # the function's text (assemblage.sources.text)
    # ours
    linkage_name: Mapped[str | None] = mapped_column(Text)
    demangled: Mapped[str | None] = mapped_column(Text)
    start: Mapped[int] = mapped_column(BigInteger)
    end: Mapped[int] = mapped_column(BigInteger)
    size: Mapped[int] = mapped_column(BigInteger)
    decl_line: Mapped[int | None] = mapped_column(Integer)
    compilation_unit: Mapped[str | None] = mapped_column(Text)
    is_static: Mapped[bool | None] = mapped_column(Boolean)
    label_source: Mapped[str] = mapped_column(String(10))
    pic_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    # the symbol had size 0 (crt start-up code): the extent was inferred up to the next function, padding trimmed
    size_inferred: Mapped[bool] = mapped_column(Boolean, default=False)

    binary: Mapped[Binary] = relationship(back_populates="functions")


class Rva(Base):
    __tablename__ = "rvas"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    function_id: Mapped[int] = mapped_column(ForeignKey("functions.id"), index=True)
    start: Mapped[int] = mapped_column(BigInteger)
    end: Mapped[int] = mapped_column(BigInteger)


class Line(Base):
    __tablename__ = "lines"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    function_id: Mapped[int] = mapped_column(ForeignKey("functions.id"), index=True)
    line_number: Mapped[int] = mapped_column(Integer)
    rva: Mapped[int] = mapped_column(BigInteger)
    length: Mapped[int] = mapped_column(BigInteger)
    source_file: Mapped[str | None] = mapped_column(Text)
    source_code: Mapped[str | None] = mapped_column(Text)  # the text of that line (None outside the checkout)


class Pdb(Base):
    __tablename__ = "pdbs"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    binary_id: Mapped[int] = mapped_column(ForeignKey("binaries.id"), index=True)
    pdb_path: Mapped[str] = mapped_column(String(500))  # object key of the PDB
    # ours
    hash: Mapped[str | None] = mapped_column(String(64))
    guid: Mapped[str | None] = mapped_column(String(64))
    age: Mapped[int | None] = mapped_column(Integer)
    codeview_path: Mapped[str | None] = mapped_column(Text)


class Inline(Base):
    """An inlined copy of a function inside another (not a function of its own)."""

    __tablename__ = "inlines"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    binary_id: Mapped[int] = mapped_column(ForeignKey("binaries.id"), index=True)
    callee: Mapped[str] = mapped_column(Text)
    caller: Mapped[str | None] = mapped_column(Text)
    start: Mapped[int] = mapped_column(BigInteger)
    end: Mapped[int] = mapped_column(BigInteger)
    call_file: Mapped[str | None] = mapped_column(Text)
    call_line: Mapped[int | None] = mapped_column(Integer)


class Verification(Base):
    """One ``assemblage verify``: a sample of a run's builds rebuilt from its lock and compared."""

    __tablename__ = "verifications"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    lock_sha256: Mapped[str] = mapped_column(String(64))
    sample: Mapped[int | None] = mapped_column(Integer)  # builds asked for (None: all)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    builds: Mapped[int] = mapped_column(Integer, default=0)  # builds rebuilt
    compared: Mapped[int] = mapped_column(Integer, default=0)  # binaries compared
    identical: Mapped[int] = mapped_column(Integer, default=0)
    drift: Mapped[list[Any]] = mapped_column(JSON, default=list)  # differences allowed with --allow-drift
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    differences: Mapped[list[VerificationDifference]] = relationship(back_populates="verification")


class VerificationDifference(Base):
    """A binary (or PDB) that the rebuild did not reproduce bit for bit, with what differs and why."""

    __tablename__ = "verification_differences"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    verification_id: Mapped[int] = mapped_column(ForeignKey("verifications.id"), index=True)
    build_id: Mapped[int] = mapped_column(ForeignKey("builds.id"))
    binary_id: Mapped[int | None] = mapped_column(ForeignKey("binaries.id"))
    source: Mapped[str] = mapped_column(String(1000))
    config: Mapped[str] = mapped_column(String(100))
    relpath: Mapped[str] = mapped_column(String(2000))
    kind: Mapped[str] = mapped_column(String(10))  # binary | pdb
    status: Mapped[str] = mapped_column(String(10))  # differs | missing | extra
    original_sha256: Mapped[str | None] = mapped_column(String(64))
    rebuilt_sha256: Mapped[str | None] = mapped_column(String(64))
    causes: Mapped[list[Any]] = mapped_column(JSON, default=list)  # likely causes, most telling first
    sections: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [{name, cause, detail}]
    message: Mapped[str | None] = mapped_column(Text)

    verification: Mapped[Verification] = relationship(back_populates="differences")


class Worker(Base):
    """A heartbeat: one row per worker node (``kind = node``) and per process running a task (``process``).

    A build whose ``Build.worker`` has no fresh heartbeat is orphaned: the
    coordinator puts it back to pending and sends it again.
    """

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # "node/<uuid>" or "node/<uuid>/<pid>"
    kind: Mapped[str] = mapped_column(String(10), default="node")
    node: Mapped[str] = mapped_column(String(200), index=True)  # the Celery node name
    hostname: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[list[Any]] = mapped_column(JSON, default=list)
    build_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    instance_id: Mapped[str | None] = mapped_column(String(40))  # the EC2 instance, when the worker runs on one
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class Crawl(Base):
    """A GitHub search of one run (or of ``assemblage crawl``), done step by step and resumable.

    Everything a crawl learnt is in its rows (windows with their cursors, the
    repositories found with their verdicts), committed after every request, so
    a crawl killed midway resumes where it stopped, repeating nothing and
    skipping nothing. No token is ever stored.
    """

    __tablename__ = "crawls"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)  # the github entry's place in the recipe
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # the recipe entry (query, licences, created, limit)
    # pending, running, finished, failed; cancelled (POST /runs/{id}/cancel), interrupted (Ctrl-C, embedded)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    not_modified: Mapped[int] = mapped_column(Integer, default=0)  # answered 304 from the cache
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200))  # the process crawling it now (its heartbeat row)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CrawlWindow(Base):
    """One search query of a crawl: a licence and a ``created`` range, split in halves when it has over 1000 results."""

    __tablename__ = "crawl_windows"
    __table_args__ = (Index("ix_crawl_windows_crawl", "crawl_id", "status", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    crawl_id: Mapped[int] = mapped_column(ForeignKey("crawls.id"))
    query: Mapped[str] = mapped_column(Text)  # the full search query
    base: Mapped[str] = mapped_column(Text)  # the query without its created: qualifier
    created: Mapped[str | None] = mapped_column(String(30))  # YYYY-MM-DD..YYYY-MM-DD
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending, done, split
    next_url: Mapped[str | None] = mapped_column(Text)  # the page to fetch next (None: the first)
    pages: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int | None] = mapped_column(Integer)


class CrawlRepo(Base):
    """A repository a crawl found, and what it decided (accepted, or skipped with a reason)."""

    __tablename__ = "crawl_repos"
    __table_args__ = (
        UniqueConstraint("crawl_id", "full_name"),
        Index("ix_crawl_repos_todo", "crawl_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    crawl_id: Mapped[int] = mapped_column(ForeignKey("crawls.id"))
    full_name: Mapped[str] = mapped_column(String(300))
    clone_url: Mapped[str] = mapped_column(String(1000))
    default_branch: Mapped[str] = mapped_column(String(300))
    license: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="candidate")  # candidate, accepted, skipped
    reason: Mapped[str | None] = mapped_column(String(40))  # fork, mirror, licence, duplicate, gone, no_build_system
    commit: Mapped[str | None] = mapped_column(String(40))
    tree: Mapped[str | None] = mapped_column(String(40))
    build_system: Mapped[str | None] = mapped_column(String(20))
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id"))


class HttpCache(Base):
    """Answers kept for conditional requests (ETag / If-None-Match): an unchanged page costs nothing."""

    __tablename__ = "http_cache"

    url: Mapped[str] = mapped_column(String(2000), primary_key=True)
    etag: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    fetched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Export(Base):
    """An export job of the service (``POST /api/v1/exports``): its request, progress and result.

    ``request`` and ``result`` hold :class:`assemblage.corpus.request.ExportRequest` and
    :class:`~assemblage.corpus.request.ExportSummary` as JSON and are read back as those models.
    """

    __tablename__ = "exports"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    phase: Mapped[str | None] = mapped_column(String(40))  # what the job is doing: select, functions, objects, ...
    done: Mapped[int] = mapped_column(BigInteger, default=0)  # rows or objects done in this phase
    total: Mapped[int | None] = mapped_column(BigInteger)  # ... out of this many, when known
    phases_done: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200))  # the process running it (Build.worker's form)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    key: Mapped[str | None] = mapped_column(String(500))  # object key of the archive
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    token_id: Mapped[int | None] = mapped_column(Integer)  # the API token that asked for it
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
